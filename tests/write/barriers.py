"""Barriers for write tests: wait for a condition the daemon reports, never for elapsed time.

The mount point answers getxattr `user.cosfs.status` with a JSON snapshot (`pending`: the
dirty files with their key, state and upload progress; `dirty_files`: how many there are), and
setxattr `user.cosfs.sync` starts every pending upload at once (cosfs/control.py).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Only ever reached when something is wrong: the success path returns as soon as it can.
DEADLINE_S = 30.0


def status(mountpoint: Path) -> dict:
    return json.loads(os.getxattr(mountpoint, "user.cosfs.status"))


def pending_keys(mountpoint: Path) -> dict[str, str]:
    """{key: state} of every dirty file of the mount (state: dirty | uploading)."""
    return {item["key"]: item["state"] for item in status(mountpoint)["pending"]}


def wait_until(condition: Callable[[], T], what: str, timeout_s: float = DEADLINE_S, interval_s: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy, which is returned; fail after
    `timeout_s` saying `what` never happened (with the last value seen)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s (last: {value!r})")
        time.sleep(interval_s)


def wait_settled(mountpoint: Path, timeout_s: float = DEADLINE_S) -> dict:
    """Wait until the mount has no dirty file left (uploaded, or dropped with the last descriptor
    of a nameless file); returns that status. Does not start uploads: see `sync`."""
    last: dict = {}

    def settled():
        nonlocal last
        last = status(mountpoint)
        return last["dirty_files"] == 0

    try:
        wait_until(settled, f"{mountpoint} still has dirty files", timeout_s)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last.get('pending')}") from None
    return last


def sync(mountpoint: Path, timeout_s: float = DEADLINE_S) -> dict:
    """`cosfs sync`: start every pending upload now and wait until none is left."""
    os.setxattr(mountpoint, "user.cosfs.sync", b"1")
    return wait_settled(mountpoint, timeout_s)
