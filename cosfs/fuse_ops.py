"""The pyfuse3 adapter: the only module (with `mount`) where pyfuse3 types appear.

Every handler passes through `fuse_boundary`, which turns cosfs errors into errnos through the
one table in `cosfs.errors`, logs unexpected exceptions with a traceback as EIO, and lets
trio's cancellation pass.
"""

from __future__ import annotations

import errno
import functools
import logging
import os

import pyfuse3
import trio

from cosfs.errors import CosfsError, InvalidName, errno_for, first_error
from cosfs.filesystem import Caller, CosFilesystem
from cosfs.inodes import Attr

log = logging.getLogger(__name__)

BLKSIZE = 128 * 1024


def fuse_boundary(op):
    @functools.wraps(op)
    async def wrapper(self, *args):
        try:
            try:
                return await op(self, *args)
            except BaseExceptionGroup as group:  # from a nursery inside the operation
                leaf = first_error(group)
                if leaf is None:
                    raise
                raise leaf from group
        except pyfuse3.FUSEError:
            raise
        except CosfsError as exc:
            code = errno_for(exc)
            log.log(exc.log_level, "%s failed (%s): %s", op.__name__, errno.errorcode.get(code, code), exc)
            raise pyfuse3.FUSEError(code) from None
        except OSError as exc:
            log.warning("%s failed on local disk: %s", op.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("%s crashed", op.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def decode_name(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidName("file names must be UTF-8 to become object keys") from None


class KernelNotices:
    """The kernel's caches, told to forget (cosfs.kernel_cache.KernelCache) through libfuse's
    notifications. Entries go through a queue that one task drains in a worker thread (the
    kernel takes the directory's lock, which a process waiting on a request of ours may
    hold); attributes are forgotten at once (no lock without write-back caching)."""

    QUEUE = 10_000  # entries waiting: past it, the kernel keeps one until its entry_timeout

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[tuple[int, str]](self.QUEUE)

    def forget_attributes(self, ino: int) -> None:
        try:
            pyfuse3.invalidate_inode(ino, attr_only=True)
        except OSError as exc:  # ENOENT: the kernel does not hold it
            if exc.errno != errno.ENOENT:
                log.warning("the kernel kept the attributes of inode %d: %s", ino, exc)

    def forget_entry(self, parent_ino: int, name: str) -> None:
        try:
            self._send.send_nowait((parent_ino, name))
        except trio.WouldBlock:
            log.debug("kernel notices queue full: %r stays until entry_timeout", name)

    async def run(self) -> None:
        """Send the queued entry notices, one at a time, for the mount's lifetime."""
        async for parent_ino, name in self._receive:
            try:
                await trio.to_thread.run_sync(self._forget_entry_now, parent_ino, name, abandon_on_cancel=True)
            except Exception:  # the mount goes on; the kernel keeps the entry until its timeout
                log.exception("the kernel could not be told to forget %r", name)

    @staticmethod
    def _forget_entry_now(parent_ino: int, name: str) -> None:
        try:
            pyfuse3.invalidate_entry(parent_ino, name.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTCONN, errno.EBADF):  # not known, or unmounted
                raise


class CosOperations(pyfuse3.Operations):
    """Translates kernel requests to CosFilesystem calls."""

    def __init__(self, fs: CosFilesystem, timeout_s: float) -> None:
        super().__init__()
        self.fs = fs
        self.timeout_s = timeout_s

    def entry(self, attr: Attr) -> pyfuse3.EntryAttributes:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = attr.ino
        entry.generation = 0
        entry.entry_timeout = self.timeout_s
        entry.attr_timeout = self.timeout_s
        entry.st_mode = attr.mode
        entry.st_nlink = attr.nlink
        entry.st_uid = attr.uid
        entry.st_gid = attr.gid
        entry.st_rdev = attr.rdev
        entry.st_size = attr.size_bytes
        entry.st_blksize = BLKSIZE
        entry.st_blocks = (attr.size_bytes + 511) // 512
        entry.st_atime_ns = attr.shown_atime_ns
        entry.st_mtime_ns = attr.mtime_ns
        entry.st_ctime_ns = attr.shown_ctime_ns
        return entry

    @fuse_boundary
    async def lookup(self, parent_inode, name, ctx=None):
        return self.entry(await self.fs.lookup(parent_inode, decode_name(name)))

    async def forget(self, inode_list):
        try:
            self.fs.forget(list(inode_list))
        except Exception:
            log.exception("forget crashed")

    @fuse_boundary
    async def getattr(self, inode, ctx=None):
        return self.entry(await self.fs.getattr(inode))

    @fuse_boundary
    async def readlink(self, inode, ctx):
        return os.fsencode(await self.fs.readlink(inode))

    @fuse_boundary
    async def opendir(self, inode, ctx):
        return self.fs.opendir(inode)

    @fuse_boundary
    async def readdir(self, fh, start_id, token):
        def reply(name: str, attr: Attr, next_id: int) -> bool:
            return pyfuse3.readdir_reply(token, name.encode("utf-8"), self.entry(attr), next_id)

        await self.fs.readdir(fh, start_id, reply)

    @fuse_boundary
    async def releasedir(self, fh):
        self.fs.releasedir(fh)

    @fuse_boundary
    async def open(self, inode, flags, ctx):
        write = (flags & os.O_ACCMODE) != os.O_RDONLY
        result = await self.fs.open(inode, write, truncate=bool(flags & os.O_TRUNC))
        return pyfuse3.FileInfo(fh=result.fh, keep_cache=result.keep_cache, direct_io=result.direct_io)

    @fuse_boundary
    async def read(self, fh, off, size):
        return await self.fs.read(fh, off, size)

    @fuse_boundary
    async def write(self, fh, off, buf):
        return await self.fs.write(fh, off, buf)

    @fuse_boundary
    async def flush(self, fh):
        await self.fs.flush(fh)

    @fuse_boundary
    async def fsync(self, fh, datasync):
        await self.fs.fsync(fh)

    @fuse_boundary
    async def fsyncdir(self, fh, datasync):
        return None

    @fuse_boundary
    async def release(self, fh):
        self.fs.release(fh)

    @fuse_boundary
    async def statfs(self, ctx):
        stats = self.fs.statfs()
        data = pyfuse3.StatvfsData()
        data.f_bsize = stats.block_size_bytes
        data.f_frsize = stats.block_size_bytes
        data.f_blocks = stats.total_blocks
        data.f_bfree = stats.free_blocks
        data.f_bavail = stats.free_blocks
        data.f_files = stats.total_inodes
        data.f_ffree = stats.free_inodes
        data.f_favail = stats.free_inodes
        data.f_namemax = stats.max_name_bytes
        return data

    @fuse_boundary
    async def create(self, parent_inode, name, mode, flags, ctx):
        result, attr = await self.fs.create(parent_inode, decode_name(name), mode, caller(ctx))
        return (pyfuse3.FileInfo(fh=result.fh, keep_cache=result.keep_cache, direct_io=result.direct_io),
                self.entry(attr))

    @fuse_boundary
    async def setattr(self, inode, attr, fields, fh, ctx):
        result = await self.fs.setattr(
            inode,
            size=attr.st_size if fields.update_size else None,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            fh=fh,
        )
        return self.entry(result)

    @fuse_boundary
    async def mkdir(self, parent_inode, name, mode, ctx):
        return self.entry(await self.fs.mkdir(parent_inode, decode_name(name), mode, caller(ctx)))

    @fuse_boundary
    async def rmdir(self, parent_inode, name, ctx):
        await self.fs.rmdir(parent_inode, decode_name(name))

    @fuse_boundary
    async def unlink(self, parent_inode, name, ctx):
        await self.fs.unlink(parent_inode, decode_name(name))

    @fuse_boundary
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        await self.fs.rename(parent_inode_old, decode_name(name_old), parent_inode_new, decode_name(name_new), flags)

    @fuse_boundary
    async def symlink(self, parent_inode, name, target, ctx):
        return self.entry(await self.fs.symlink(parent_inode, decode_name(name), os.fsdecode(target), caller(ctx)))

    @fuse_boundary
    async def link(self, inode, new_parent_inode, new_name, ctx):
        self.fs.link()

    @fuse_boundary
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        return self.entry(await self.fs.mknod(parent_inode, decode_name(name), mode, rdev, caller(ctx)))

    def _xattrs_enabled(self) -> None:
        # ENOSYS makes the kernel stop asking for xattrs on this mount (-o noxattr).
        if not self.fs.config.xattrs:
            raise pyfuse3.FUSEError(errno.ENOSYS)

    @fuse_boundary
    async def getxattr(self, inode, name, ctx):
        self._xattrs_enabled()
        return await self.fs.getxattr(inode, decode_name(name), ctx.uid)

    @fuse_boundary
    async def listxattr(self, inode, ctx):
        self._xattrs_enabled()
        return [n.encode() for n in await self.fs.listxattr(inode)]

    @fuse_boundary
    async def setxattr(self, inode, name, value, ctx):
        self._xattrs_enabled()
        await self.fs.setxattr(inode, decode_name(name), value, ctx.uid)

    @fuse_boundary
    async def removexattr(self, inode, name, ctx):
        self._xattrs_enabled()
        await self.fs.removexattr(inode, decode_name(name))


def caller(ctx) -> Caller:
    return Caller(ctx.uid, ctx.gid, getattr(ctx, "umask", 0o022))
