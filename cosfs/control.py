"""`cosfs status`, `cosfs sync` and `cosfs discard`: talk to a running mount through extended
attributes of its mount point (`user.cosfs.status` reads a JSON snapshot, setting
`user.cosfs.sync` starts every pending upload, setting `user.cosfs.discard` drops the staged
data of one refused upload), so no socket or extra permission is needed.

Runs in the CLI process: plain Python, no trio. Rates and ETAs come from successive
snapshots (`RateMeter`), since the daemon keeps totals only.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cosfs.errors import ConfigError
from cosfs.xattrs import MOUNT_DISCARD, MOUNT_STATUS, MOUNT_SYNC

# The upload rate is averaged over this many seconds of snapshots: bytes_out grows by a
# whole part when its request goes out, so the rate between two close snapshots jumps.
RATE_WINDOW_S = 10.0
SYNC_POLL_S = 0.2
REFUSED_HINT = "`cosfs sync --retry-failed` retries them, `cosfs discard MOUNTPOINT PATH` drops them"


def read_status(mountpoint: Path) -> dict:
    try:
        raw = os.getxattr(mountpoint, MOUNT_STATUS)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            raise ConfigError(f"{mountpoint} is not a cosfs mount point") from None
        if exc.errno in (errno.ENOTSUP, errno.ENOSYS):
            raise ConfigError(f"{mountpoint} is not a cosfs mount point, or it was mounted with -o noxattr "
                              "(which also turns off cosfs status and sync)") from None
        if exc.errno == errno.ENOTCONN:
            raise ConfigError(f"{mountpoint}: the cosfs daemon is gone (Transport endpoint is not connected); "
                              f"run fusermount3 -u {mountpoint}") from None
        raise ConfigError(f"cannot read the status of {mountpoint}: {exc.strerror}") from None
    return json.loads(raw)


def _mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class RateMeter:
    """The upload rate (bytes/s of `bytes_out`) over the last RATE_WINDOW_S of snapshots."""

    def __init__(self) -> None:
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, status: dict) -> float | None:
        """Record a snapshot; the rate so far (None until two snapshots apart in time)."""
        now = time.monotonic()
        self._samples.append((now, status["bytes_out"]))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        (first_s, first_bytes), (last_s, last_bytes) = self._samples[0], self._samples[-1]
        if last_s <= first_s:
            return None
        return max(0, last_bytes - first_bytes) / (last_s - first_s)


def bytes_left(status: dict) -> int:
    """Bytes still to upload for the pending files the status lists, refused ones aside
    (they wait for an operator, not for the network)."""
    return sum(max(0, p["size_bytes"] - p["uploaded_bytes"]) for p in status["pending"] if p["state"] != "refused")


def progress_text(status: dict, rate: float | None) -> str:
    """The upload rate, and the time left when uploads are pending and moving (such as
    "3.2 MiB/s, ETA 1m05s"); "" before a rate is known."""
    if rate is None:
        return ""
    text = f"{_mib(rate)}/s"
    left = bytes_left(status)
    if left and rate > 0:
        text += f", ETA {_duration(left / rate)}"
    return text


def _pending_line(item: dict) -> str:
    progress = f"{_mib(item['uploaded_bytes'])}/{_mib(item['size_bytes'])}"
    line = f"  {item['state']:<9} {progress:>22}  {item['key']}"
    if item["state"] == "refused":
        line += f"  refused: {item['error'] or 'no reason given'}"
    elif item["error"]:
        line += f"  last error: {item['error']}"
    if item.get("retry_in_s") is not None:
        line += f" (retry in {_duration(item['retry_in_s'])})"
    return line


def format_status(status: dict, rate: float | None = None) -> str:
    """The status for people; `rate` (bytes/s, from successive snapshots) adds the upload
    rate and ETA."""
    lines = [
        f"bucket       {status.get('bucket', '?')}",
        f"endpoint     {status.get('endpoint', '?')}",
        f"mount point  {status.get('mountpoint', '?')} (pid {status['pid']}, up {status['uptime_s']:.0f} s)",
        f"traffic      {_mib(status['bytes_in'])} in, {_mib(status['bytes_out'])} out",
    ]
    cache = status["cache"]
    ratio = "-" if cache["hit_ratio"] is None else f"{cache['hit_ratio'] * 100:.1f}%"
    lines.append(f"block cache  {_mib(cache['disk_bytes'])} of {_mib(cache['disk_capacity_bytes'])}, "
                 f"hit ratio {ratio} ({cache['hits']} hits, {cache['misses']} misses)")
    lines.append(f"uploads      {status['dirty_files']} pending, {status['uploads_committed']} committed, "
                 f"{status['uploads_failed']} failed")
    progress = progress_text(status, rate)
    if progress:
        lines.append(f"upload rate  {progress}")
    lines += [_pending_line(item) for item in status["pending"]]
    refused = sum(1 for item in status["pending"] if item["state"] == "refused")
    if refused:
        lines.append(f"             {refused} refused for good: {REFUSED_HINT}")
    if status["requests"]:
        lines.append("requests     operation              count  retries  errors")
        for op, counts in status["requests"].items():
            lines.append(f"             {op:<22}{counts['requests']:>6}{counts['retries']:>9}{counts['errors']:>8}")
    return "\n".join(lines)


def status_command(mountpoint: Path, as_json: bool, watch: float | None = None) -> int:
    """Print the status once, or with `watch` every `watch` seconds until Ctrl-C (the screen
    redrawn on a terminal; with `as_json`, one JSON object per line)."""
    if watch is not None and not watch > 0:
        raise ConfigError(f"--watch {watch}: expected a number of seconds above 0")
    if watch is None:
        status = read_status(mountpoint)
        print(json.dumps(status, indent=2) if as_json else format_status(status))
        return 0
    meter = RateMeter()
    redraw = sys.stdout.isatty() and not as_json
    try:
        while True:
            status = read_status(mountpoint)
            rate = meter.add(status)
            if as_json:
                print(json.dumps(status, separators=(",", ":")), flush=True)
            else:
                text = format_status(status, rate)
                print(("\x1b[H\x1b[2J" + text) if redraw else text + "\n", flush=True)
            time.sleep(watch)
    except KeyboardInterrupt:
        return 0


def _refused_for_good(status: dict) -> list[dict]:
    """The pending files, if every one left is refused (none of them will go up by waiting);
    [] otherwise."""
    pending = status["pending"]
    if pending and len(pending) == status["dirty_files"] and all(p["state"] == "refused" for p in pending):
        return pending
    return []


def sync_outcome(mountpoint: Path, before: dict, status: dict, *, retry_failed: bool,
                 timed_out: bool) -> tuple[int, list[str]] | None:
    """How a sync that started at `before` ends at `status`: (exit code, lines to print), or
    None while it goes on."""
    pending = status["pending"]
    if status["dirty_files"] == 0:
        return 0, [f"every change on {mountpoint} is committed"]
    refused = [] if retry_failed else _refused_for_good(status)
    if refused:
        lines = [f"{item['key']}: refused: {item['error'] or 'no reason given'}" for item in refused]
        return 1, lines + [f"COS refused {len(refused)} upload(s) for good; {REFUSED_HINT}"]
    if status["uploads_failed"] > before["uploads_failed"]:
        failed = [p for p in pending if p["error"]]
        lines = [f"{item['key']}: {'refused: ' if item['state'] == 'refused' else ''}{item['error']}"
                 for item in failed]
        lines.append(f"{len(failed) or 'some'} upload(s) failed; the data stays staged and is retried in the "
                     "background")
        if any(item["state"] == "refused" for item in failed):
            lines.append(f"uploads refused for good are not retried: {REFUSED_HINT}")
        return 1, lines
    if timed_out:
        return 2, [f"timed out with {status['dirty_files']} file(s) pending"]
    return None


def _progress_line(status: dict, rate: float | None) -> str:
    pending = status["pending"]
    total = sum(p["size_bytes"] for p in pending)
    done = sum(min(p["uploaded_bytes"], p["size_bytes"]) for p in pending)
    width = 30
    filled = int(width * done / total) if total else 0
    progress = progress_text(status, rate)
    return (f"[{'#' * filled}{'.' * (width - filled)}] {status['dirty_files']} file(s), "
            f"{_mib(done)}/{_mib(total)}{', ' + progress if progress else ''}")


def sync_command(mountpoint: Path, timeout_s: float | None, retry_failed: bool = False) -> int:
    """Start every pending upload and wait until none is left: 0 when all are committed,
    1 if any failed (or everything left was refused for good), 2 on timeout. On a terminal,
    a progress line shows the bytes done, the upload rate and an ETA.
    `retry_failed` also retries the uploads COS refused for good; without it they are
    listed and not waited for."""
    before = read_status(mountpoint)
    try:
        os.setxattr(mountpoint, MOUNT_SYNC, b"retry-failed" if retry_failed else b"1")
    except OSError as exc:
        raise ConfigError(f"cannot start the uploads on {mountpoint}: {exc.strerror}") from None
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    tty = sys.stderr.isatty()
    meter = RateMeter()
    while True:
        status = read_status(mountpoint)
        rate = meter.add(status)
        timed_out = deadline is not None and time.monotonic() > deadline
        outcome = sync_outcome(mountpoint, before, status, retry_failed=retry_failed, timed_out=timed_out)
        if outcome is not None:
            code, lines = outcome
            if tty:
                print("\r\x1b[K", end="", file=sys.stderr)
            for line in lines:
                print(f"cosfs sync: {line}", file=sys.stderr)
            return code
        if tty:
            print(f"\r{_progress_line(status, rate)}\x1b[K", end="", file=sys.stderr)
        time.sleep(SYNC_POLL_S)


def _inside(mountpoint: Path, path: str | Path) -> str | None:
    """`path` (absolute, or relative to the working directory) relative to `mountpoint`,
    by name alone (nothing under the mount point is looked up); None if it is not below it."""
    root = os.path.abspath(mountpoint)
    relative = os.path.relpath(os.path.abspath(path), root)
    if relative == "." or relative == ".." or relative.startswith("../"):
        return None
    return relative


def discard_command(mountpoint: Path, paths: Sequence[str | Path]) -> int:
    """Drop the staged data of uploads COS refused for good, one path at a time: 0 when every
    one was dropped, 1 if any path had none (or could not be dropped)."""
    relatives = []
    for path in paths:
        relative = _inside(mountpoint, path)
        if relative is None:
            raise ConfigError(f"{path} is not inside the mount point {mountpoint}")
        relatives.append(relative)
    # A clear error when this is no cosfs mount: on a plain directory the setxattr below
    # would store a user xattr and look like a success.
    read_status(mountpoint)
    code = 0
    for path, relative in zip(paths, relatives):
        try:
            os.setxattr(mountpoint, MOUNT_DISCARD, os.fsencode(relative))
        except OSError as exc:
            code = 1
            if exc.errno == errno.ENOENT:
                print(f"cosfs discard: {path} has no refused upload to discard", file=sys.stderr)
            else:
                print(f"cosfs discard: {path}: {exc.strerror}", file=sys.stderr)
            continue
        print(f"cosfs discard: dropped the staged data of {path}")
    return code
