"""cosfs/control.py without a daemon: `read_status` and the xattr calls are replaced, time is
a fake clock advanced by sleeps."""

from __future__ import annotations

import errno
import io
import json
import os

import pytest

from cosfs import control
from cosfs.errors import ConfigError

MIB = 1048576


class FakeTime:
    """control's `time`: sleeps advance the clock; after `stop_after` sleeps, Ctrl-C."""

    def __init__(self, stop_after: int = 1000) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.stop_after = stop_after

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) >= self.stop_after:
            raise KeyboardInterrupt
        self.now += seconds


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def item(key: str, size: int, uploaded: int = 0, state: str = "dirty", error: str = "", **extra) -> dict:
    return {"key": key, "size_bytes": size, "uploaded_bytes": uploaded, "state": state, "error": error, **extra}


def snapshot(pending: list[dict], *, bytes_out: int = 0, dirty_files: int | None = None, failed: int = 0) -> dict:
    return {
        "bucket": "b-1250000000", "endpoint": "https://cos.example", "mountpoint": "/mnt/cos", "pid": 7,
        "uptime_s": 60.0, "requests": {"put_object": {"requests": 3, "retries": 0, "errors": 0}},
        "bytes_in": 0, "bytes_out": bytes_out,
        "cache": {"disk_bytes": 0, "disk_capacity_bytes": MIB, "hits": 0, "misses": 0, "hit_ratio": None},
        "dirty_files": len(pending) if dirty_files is None else dirty_files,
        "uploads_committed": 0, "uploads_failed": failed, "conflicts": 0, "pending": pending,
    }


@pytest.fixture
def clock(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(control, "time", fake)
    return fake


def feed(monkeypatch, snapshots: list[dict]) -> list[dict]:
    """read_status answers these in turn, then the last one forever."""
    left = list(snapshots)

    def read_status(mountpoint):
        return left.pop(0) if len(left) > 1 else left[0]

    monkeypatch.setattr(control, "read_status", read_status)
    return left


@pytest.fixture
def setxattrs(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(control.os, "setxattr", lambda path, name, value: calls.append((path, name, value)))
    return calls


def test_format_status_shows_refused_uploads_and_retry_times():
    status = snapshot([item("big.iso", 6 * MIB, state="refused", error="EntityTooLarge: too big"),
                       item("a.txt", MIB, state="dirty", error="503 SlowDown", retry_in_s=42)])
    text = control.format_status(status)
    assert "refused: EntityTooLarge: too big" in text
    assert "last error: 503 SlowDown (retry in 42s)" in text
    assert "1 refused for good: `cosfs sync --retry-failed` retries them" in text
    assert "upload rate" not in text  # no rate from a single snapshot


def test_status_watch_redraws_with_rate_and_eta_until_ctrl_c(monkeypatch, clock, capsys):
    feed(monkeypatch, [snapshot([item("f", 100 * MIB, uploaded=0)], bytes_out=0),
                       snapshot([item("f", 100 * MIB, uploaded=10 * MIB, state="uploading")], bytes_out=10 * MIB),
                       snapshot([item("f", 100 * MIB, uploaded=20 * MIB, state="uploading")], bytes_out=20 * MIB)])
    clock.stop_after = 3
    assert control.status_command("/mnt/cos", False, watch=2.0) == 0
    assert clock.sleeps == [2.0, 2.0, 2.0]
    frames = capsys.readouterr().out.split("\n\n")
    assert "upload rate" not in frames[0]
    assert "upload rate  5.0 MiB/s, ETA 18s" in frames[1]  # 90 MiB left at 5 MiB/s
    assert "upload rate  5.0 MiB/s, ETA 16s" in frames[2]  # 80 MiB left, 20 MiB in 4 s


def test_status_watch_json_prints_one_object_per_line(monkeypatch, clock, capsys):
    feed(monkeypatch, [snapshot([])])
    clock.stop_after = 2
    assert control.status_command("/mnt/cos", True, watch=1.0) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["pid"] for line in lines] == [7, 7]


def test_status_watch_needs_a_positive_interval():
    with pytest.raises(ConfigError, match="--watch 0"):
        control.status_command("/mnt/cos", False, watch=0)


def test_rate_is_averaged_over_a_window(monkeypatch, clock):
    meter = control.RateMeter()
    assert meter.add(snapshot([], bytes_out=0)) is None
    for second in range(1, 31):
        clock.now += 1
        # a part of 8 MiB goes out every 4 s: 2 MiB/s whatever the sampling
        rate = meter.add(snapshot([], bytes_out=(second // 4) * 8 * MIB))
    assert rate == pytest.approx(2 * MIB, rel=0.25)


def test_sync_with_retry_failed_asks_for_it(monkeypatch, clock, setxattrs):
    feed(monkeypatch, [snapshot([item("f", 10)]), snapshot([item("f", 10)]), snapshot([])])
    assert control.sync_command("/mnt/cos", None, retry_failed=True) == 0
    assert setxattrs == [("/mnt/cos", "user.cosfs.sync", b"retry-failed")]
    feed(monkeypatch, [snapshot([item("f", 10)]), snapshot([])])
    assert control.sync_command("/mnt/cos", None) == 0
    assert setxattrs[1] == ("/mnt/cos", "user.cosfs.sync", b"1")


def test_sync_does_not_wait_for_uploads_refused_for_good(monkeypatch, clock, setxattrs, capsys):
    refused = item("big.iso", 6 * MIB, state="refused", error="EntityTooLarge: too big")
    feed(monkeypatch, [snapshot([refused, item("a.txt", MIB)]),
                       snapshot([refused, item("a.txt", MIB, uploaded=MIB // 2, state="uploading")]),
                       snapshot([refused])])
    clock.stop_after = 10  # waiting for ever would end in KeyboardInterrupt
    assert control.sync_command("/mnt/cos", None) == 1
    err = capsys.readouterr().err
    assert "cosfs sync: big.iso: refused: EntityTooLarge: too big" in err
    assert "`cosfs sync --retry-failed` retries them, `cosfs discard MOUNTPOINT PATH` drops them" in err
    assert len(clock.sleeps) == 1  # it waited while a.txt was going up


def test_sync_waits_while_more_files_are_pending_than_listed(monkeypatch, clock, setxattrs):
    refused = item("big.iso", 6 * MIB, state="refused", error="EntityTooLarge")
    feed(monkeypatch, [snapshot([refused], dirty_files=101), snapshot([refused], dirty_files=101),
                       snapshot([refused], dirty_files=1)])
    assert control.sync_command("/mnt/cos", None) == 1
    assert len(clock.sleeps) == 1


def test_sync_progress_line_shows_rate_and_eta(monkeypatch, clock, setxattrs):
    terminal = Terminal()
    monkeypatch.setattr(control.sys, "stderr", terminal)
    feed(monkeypatch, [snapshot([item("f", 100 * MIB)]),
                       snapshot([item("f", 100 * MIB)], bytes_out=0),
                       snapshot([item("f", 100 * MIB, uploaded=8 * MIB, state="uploading")], bytes_out=8 * MIB),
                       snapshot([])])
    assert control.sync_command("/mnt/cos", None) == 0
    text = terminal.getvalue()
    assert "8.0 MiB/100.0 MiB, 40.0 MiB/s, ETA 2s" in text  # 8 MiB in 0.2 s, 92 MiB left
    assert text.endswith("cosfs sync: every change on /mnt/cos is committed\n")


def test_sync_times_out(monkeypatch, clock, setxattrs, capsys):
    feed(monkeypatch, [snapshot([item("f", 10)])])
    assert control.sync_command("/mnt/cos", 1.0) == 2
    assert "timed out with 1 file(s) pending" in capsys.readouterr().err


def test_discard_sends_paths_relative_to_the_mount_point(monkeypatch, tmp_path, capsys):
    mount = tmp_path / "mnt"
    (mount / "dir").mkdir(parents=True)
    feed(monkeypatch, [snapshot([])])
    calls = []

    def setxattr(path, name, value):
        calls.append((path, name, value))
        if value == b"dir/none":
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))

    monkeypatch.setattr(control.os, "setxattr", setxattr)
    monkeypatch.chdir(mount / "dir")
    code = control.discard_command(mount, ["big.iso", str(mount / "été.bin"), "none"])
    assert code == 1
    assert calls == [(mount, "user.cosfs.discard", b"dir/big.iso"),
                     (mount, "user.cosfs.discard", "été.bin".encode()),
                     (mount, "user.cosfs.discard", b"dir/none")]
    out, err = capsys.readouterr()
    assert out.splitlines() == ["cosfs discard: dropped the staged data of big.iso",
                                f"cosfs discard: dropped the staged data of {mount / 'été.bin'}"]
    assert err == "cosfs discard: none has no refused upload to discard\n"


def test_discard_refuses_paths_outside_the_mount_point(monkeypatch, tmp_path, setxattrs):
    feed(monkeypatch, [snapshot([])])
    for outside in (str(tmp_path), str(tmp_path / "mnt"), str(tmp_path / "mntx" / "f"), str(tmp_path / "mnt/../f")):
        with pytest.raises(ConfigError, match="is not inside the mount point"):
            control.discard_command(tmp_path / "mnt", [outside])
    assert setxattrs == []
    assert control.discard_command(tmp_path / "mnt", [str(tmp_path / "mnt" / "ok")]) == 0
