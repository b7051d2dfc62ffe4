"""Files of the cache directory: journals (of staging and renames) that must survive a crash
whole, and the private modes every cache file and directory gets: cached data and journals
are as private as the credentials that fetched them."""

from __future__ import annotations

import json
import os
from pathlib import Path


def private_dir(path: Path) -> None:
    """Make `path` a directory only its owner can enter (0700 whatever the umask, also when
    it existed), creating it (and missing parents) if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    path.chmod(0o700)


def private_file(path: Path) -> int:
    """Create or truncate `path` for writing, mode 0600 whatever the umask (and whatever mode
    a leftover file had): a descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_json_durably(path: Path, record: dict) -> None:
    """Write `record` as JSON to `path` atomically: temp file, fsync, rename, fsync the
    directory. A crash leaves the old file or the new one, never a torn one (a leftover
    `<name>.tmp` may remain and is ignored by readers). The file is private (0600)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(private_file(tmp), "w", encoding="utf-8") as handle:
        json.dump(record, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
