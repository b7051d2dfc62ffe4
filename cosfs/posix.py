"""POSIX rules for new entries and COSFS's metadata headers, as plain functions."""

from __future__ import annotations

import dataclasses
import stat
import time
from collections.abc import Mapping

from cosfs.cos.store import MAX_PART_BYTES, MAX_PARTS
from cosfs.errors import TooLarge
from cosfs.inodes import Attr

# COS stores objects of at most 10,000 parts of 5 GiB.
MAX_OBJECT_BYTES = MAX_PARTS * MAX_PART_BYTES
NS = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who asked: new files and directories belong to them."""

    uid: int
    gid: int
    umask: int = 0o022


def posix_meta(mode: int, uid: int, gid: int, mtime_ns: int, extra: Mapping[str, str] | None = None, *,
               atime_ns: int | None = None, ctime_ns: int | None = None) -> dict[str, str]:
    """COSFS's metadata headers (x-cos-meta-*: mode, uid, gid, mtime, decimal as COSFS writes
    them), plus atime and ctime, which COSFS does not keep and cosfs does (whole seconds)."""
    meta = dict(extra or {})
    meta.update({"mode": str(mode), "uid": str(uid), "gid": str(gid), "mtime": str(mtime_ns // NS)})
    if atime_ns is not None:
        meta["atime"] = str(atime_ns // NS)
    if ctime_ns is not None:
        meta["ctime"] = str(ctime_ns // NS)
    return meta


def new_meta(mode: int, caller: Caller, parent: Attr) -> dict[str, str]:
    """The headers of an entry created now by `caller` in a directory with attributes
    `parent`: every time is now; in a set-group-ID directory the entry takes the directory's
    group, and a new directory the set-group-ID bit too (inode(7))."""
    gid = caller.gid
    if parent.mode & stat.S_ISGID:
        gid = parent.gid
        if stat.S_ISDIR(mode):
            mode |= stat.S_ISGID
    now = time.time_ns()
    return posix_meta(mode, caller.uid, gid, now, atime_ns=now, ctime_ns=now)


def check_size(size: int) -> None:
    """A size no object can have is EFBIG."""
    if size > MAX_OBJECT_BYTES:
        raise TooLarge(f"{size} bytes is more than the largest object COS can store ({MAX_OBJECT_BYTES})")
