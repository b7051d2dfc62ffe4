"""`cosfs status` and `cosfs sync`: talk to a running mount through extended attributes of
its mount point (`user.cosfs.status` reads a JSON snapshot, setting `user.cosfs.sync` starts
every pending upload), so no socket or extra permission is needed."""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from pathlib import Path

from cosfs.errors import ConfigError
from cosfs.xattrs import MOUNT_STATUS, MOUNT_SYNC


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


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def format_status(status: dict) -> str:
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
    for item in status["pending"]:
        progress = f"{_mib(item['uploaded_bytes'])}/{_mib(item['size_bytes'])}"
        error = f"  last error: {item['error']}" if item["error"] else ""
        lines.append(f"  {item['state']:<9} {progress:>22}  {item['key']}{error}")
    if status["requests"]:
        lines.append("requests     operation              count  retries  errors")
        for op, counts in status["requests"].items():
            lines.append(f"             {op:<22}{counts['requests']:>6}{counts['retries']:>9}{counts['errors']:>8}")
    return "\n".join(lines)


def status_command(mountpoint: Path, as_json: bool) -> int:
    status = read_status(mountpoint)
    print(json.dumps(status, indent=2) if as_json else format_status(status))
    return 0


def sync_command(mountpoint: Path, timeout_s: float | None) -> int:
    """Start every pending upload and wait until none is left; non-zero if any failed."""
    before = read_status(mountpoint)
    try:
        os.setxattr(mountpoint, MOUNT_SYNC, b"1")
    except OSError as exc:
        raise ConfigError(f"cannot start the uploads on {mountpoint}: {exc.strerror}") from None
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    tty = sys.stderr.isatty()
    while True:
        status = read_status(mountpoint)
        pending = status["pending"]
        total = sum(p["size_bytes"] for p in pending)
        done = sum(min(p["uploaded_bytes"], p["size_bytes"]) for p in pending)
        if status["dirty_files"] == 0:
            if tty:
                print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
            print(f"cosfs sync: every change on {mountpoint} is committed", file=sys.stderr)
            return 0
        if status["uploads_failed"] > before["uploads_failed"]:
            failed = [p for p in pending if p["error"]]
            for item in failed:
                print(f"cosfs sync: {item['key']}: {item['error']}", file=sys.stderr)
            print(f"cosfs sync: {len(failed) or 'some'} upload(s) failed; the data stays staged and "
                  "is retried in the background", file=sys.stderr)
            return 1
        if deadline is not None and time.monotonic() > deadline:
            print(f"cosfs sync: timed out with {status['dirty_files']} file(s) pending", file=sys.stderr)
            return 2
        if tty:
            width = 30
            filled = int(width * done / total) if total else 0
            print(f"\r[{'#' * filled}{'.' * (width - filled)}] {status['dirty_files']} file(s), "
                  f"{_mib(done)}/{_mib(total)}", end="", file=sys.stderr)
        time.sleep(0.2)
