#!/usr/bin/env python3
"""The floor of a pyfuse3 filesystem: one file whose reads answer at once from memory.

    python bench/null_fs.py MOUNTPOINT SIZE_BYTES

Mounts (in the foreground, until unmounted) a directory holding `big.bin` of SIZE_BYTES, whose
every read is answered with a slice of one constant buffer: no lookup, no cache, no I/O. What a
random 4 KiB read costs here is what pyfuse3, libfuse and the kernel cost; bench.py measures it
in the same run as cosfs, which is the same stack plus its own work. The mount options and the
open flags are cosfs's defaults (pyfuse3.default_options; keep_cache off, no direct_io), so the
kernel treats both alike.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

import pyfuse3
import trio

NAME = b"big.bin"
FILE_INO = pyfuse3.ROOT_INODE + 1
PATTERN = bytes(range(256)) * (1024 * 1024 // 256)  # 1 MiB, reads are served from views of it


class NullFS(pyfuse3.Operations):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.view = memoryview(PATTERN)

    def attributes(self, ino: int) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = ino
        if ino == pyfuse3.ROOT_INODE:
            attr.st_mode, attr.st_nlink, attr.st_size = stat.S_IFDIR | 0o755, 2, 0
        else:
            attr.st_mode, attr.st_nlink, attr.st_size = stat.S_IFREG | 0o444, 1, self.size
        attr.st_uid, attr.st_gid = os.getuid(), os.getgid()
        attr.st_blksize = 1024 * 1024
        attr.st_blocks = -(-attr.st_size // 512)
        attr.attr_timeout = attr.entry_timeout = 3600
        return attr

    async def getattr(self, inode, ctx=None):
        if inode not in (pyfuse3.ROOT_INODE, FILE_INO):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self.attributes(inode)

    async def lookup(self, parent_inode, name, ctx=None):
        if parent_inode != pyfuse3.ROOT_INODE or name != NAME:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self.attributes(FILE_INO)

    async def opendir(self, inode, ctx):
        return inode

    async def readdir(self, fh, start_id, token):
        if start_id == 0:
            pyfuse3.readdir_reply(token, NAME, self.attributes(FILE_INO), 1)

    async def open(self, inode, flags, ctx):
        if inode != FILE_INO:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise pyfuse3.FUSEError(errno.EACCES)
        return pyfuse3.FileInfo(fh=inode)

    async def read(self, fh, off, size):
        end = min(off + size, self.size)
        if off >= end:
            return b""
        start = off % len(PATTERN)
        if start + (end - off) <= len(PATTERN):
            return self.view[start:start + (end - off)]
        return bytes(self.view[start:]) + PATTERN[:end - off - (len(PATTERN) - start)]


def main() -> int:
    mountpoint, size = sys.argv[1], int(sys.argv[2])
    options = set(pyfuse3.default_options)
    options.update({"fsname=nullfs", "subtype=nullfs", "ro"})
    pyfuse3.init(NullFS(size), mountpoint, options)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
