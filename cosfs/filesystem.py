"""CosFilesystem: the filesystem core, free of FUSE. Plain Python types in and out.

The adapter (`fuse_ops`) turns kernel requests into these calls and exceptions into errnos.
Background work (read-ahead, delayed uploads, recovery) runs in a nursery the mount lifecycle
owns and passes in.

Durability: by default close() (flush) and fsync() return only once the file's object is
committed in COS, and fail with EIO when the upload failed after retries; with
`write_back_delay_s` > 0, close() returns once the change is journaled on local disk and the
upload follows after the delay. Either way the journal lets the next mount finish uploads that
a crash interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import mimetypes
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import trio

from cosfs import xattrs
from cosfs.blocks import BlockCache, ObjectRef
from cosfs.config import FsConfig
from cosfs.cos.store import MAX_SINGLE_COPY_BYTES, ObjectMeta, ObjectStore, WriteOptions
from cosfs.errors import (
    AlreadyExists,
    CosfsError,
    InvalidName,
    IsADirectory,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotPermitted,
    ReadOnly,
    Stale,
    TransientError,
    Unsupported,
)
from cosfs.handles import DirHandle, FileHandle, HandleTable
from cosfs.inodes import ROOT_INO, Attr, Inode, InodeTable, Kind
from cosfs.namespace import DirEntry, Namespace, check_name, root_attr
from cosfs.prefetch import ReadAhead
from cosfs.renames import RenameJournal
from cosfs.staging import DirtyFile, StagingArea
from cosfs.uploader import Uploader, part_size_for, plan_parts

log = logging.getLogger(__name__)

# readdir reply: (name, attr, next offset) -> whether the kernel took the entry
ReaddirReply = Callable[[str, Attr, int], bool]

DIRECTORY_CONTENT_TYPE = "application/x-directory"
# Keys of files that lost their name while open (unlink, rename over them): NUL can never be
# in an object key, so these are never uploaded and never collide with a real name.
ORPHAN_PREFIX = "\0orphan/"
# Multipart copies (renames of objects over 5 GB) move 512 MiB per Upload Part - Copy.
COPY_PART_BYTES = 512 * 1024 * 1024
RENAME_EXCHANGE = 2
RENAME_NOREPLACE = 1


@dataclasses.dataclass(frozen=True)
class OpenResult:
    fh: int
    keep_cache: bool


@dataclasses.dataclass(frozen=True)
class FsStats:
    block_size_bytes: int
    total_blocks: int
    free_blocks: int
    total_inodes: int
    free_inodes: int
    max_name_bytes: int = 255


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who asked: new files and directories belong to them."""

    uid: int
    gid: int
    umask: int = 0o022


def posix_meta(mode: int, uid: int, gid: int, mtime_s: float, extra: dict[str, str] | None = None) -> dict[str, str]:
    """COSFS's metadata headers (x-cos-meta-*), decimal as COSFS writes them."""
    meta = dict(extra or {})
    meta.update({"mode": str(mode), "uid": str(uid), "gid": str(gid), "mtime": str(int(mtime_s))})
    return meta


def upload_parallelism(config: FsConfig) -> int:
    """Parts in flight at once: each holds a part in memory (plus a transient copy), so the
    count is bounded by half the memory budget as well as by parallel_count."""
    by_memory = (config.memory_budget_bytes // 2) // (2 * config.part_size_bytes)
    return max(2, min(config.parallel_fetches, by_memory))


def content_type_for(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class CosFilesystem:
    """The mount's core: namespace, block cache, staging, uploads, handles."""

    def __init__(self, store: ObjectStore, config: FsConfig, cache_dir: Path, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.config = config
        self.inodes = InodeTable(config.prefix, root_attr(config))
        self.staging = StagingArea(cache_dir)
        self.namespace = Namespace(store, self.inodes, config, self.staging, clock)
        self.blocks = BlockCache(store, cache_dir, config.block_size_bytes, config.cache_size_bytes,
                                 config.parallel_fetches, memory_bytes=config.memory_budget_bytes // 2)
        self.uploader = Uploader(store, self._read_dirty_range, part_bytes=config.part_size_bytes,
                                 multipart_threshold_bytes=config.multipart_threshold_bytes,
                                 parallel_parts=upload_parallelism(config),
                                 on_upload_id=lambda dirty: self.staging.save(dirty, data=False))
        self.renames = RenameJournal(cache_dir, store, self._copy)
        self.files: HandleTable[FileHandle] = HandleTable()
        self.dirs: HandleTable[DirHandle] = HandleTable()
        self._nursery: trio.Nursery | None = None
        # One lock per key being changed: a commit never sees a half-applied write.
        self._key_locks: dict[str, trio.Lock] = {}
        self._scheduled: set[str] = set()
        self.failed_uploads = 0
        self.committed_uploads = 0
        # Set by the mount lifecycle for status reports: bucket, endpoint, mount point.
        self.labels: dict[str, str] = {}
        self._started_s = time.time()

    async def start(self, nursery: trio.Nursery) -> None:
        """Attach the nursery, load the block cache, and finish what a crash interrupted:
        journaled renames first, then journaled uploads."""
        self._nursery = nursery
        self.uploader.start(nursery)
        self.blocks.load()
        await self.renames.recover()
        for dirty in self.staging.recover():
            if dirty.key.startswith(ORPHAN_PREFIX):
                self.staging.drop(dirty.key)  # a nameless file's data dies with its descriptors
                continue
            # The commit resumes the newest interrupted multipart upload of ours and aborts
            # the older ones.
            log.warning("finishing the upload of %s journaled by an earlier mount", dirty.key)
            self._schedule_commit(dirty.key, delay_s=0)

    def _lock(self, key: str) -> trio.Lock:
        lock = self._key_locks.get(key)
        if lock is None:
            lock = self._key_locks[key] = trio.Lock()
        return lock

    def _discard(self, key: str) -> None:
        """Forget a key's staged changes (and any upload streaming them)."""
        dirty = self.staging.get(key)
        if dirty is not None:
            self.uploader.abandon(dirty)
            self.staging.drop(key)

    def _check_writable(self) -> None:
        if self.config.read_only:
            raise ReadOnly("the mount is read-only")

    # --- metadata ------------------------------------------------------------------------

    async def lookup(self, parent_ino: int, name: str) -> Attr:
        inode = await self.namespace.lookup(self.inodes.get(parent_ino), name)
        self.inodes.remember(inode.ino)
        return inode.attr

    def forget(self, items: list[tuple[int, int]]) -> None:
        for ino, count in items:
            self.inodes.forget(ino, count)

    async def getattr(self, ino: int) -> Attr:
        inode = self.inodes.get(ino)
        if inode.key in self.staging or inode.expires_at_s <= self.namespace.now():
            inode = await self.namespace.refresh(inode)
        return inode.attr

    async def readlink(self, ino: int) -> str:
        inode = self.inodes.get(ino)
        if inode.kind != Kind.SYMLINK:
            raise InvalidName(f"{inode.key} is not a symbolic link")
        return await self.namespace.readlink(inode)

    def statfs(self) -> FsStats:
        # Object storage has no capacity limit; report a large, stable figure as s3fs does.
        blocks = 1 << 40
        return FsStats(self.blocks.block_size_bytes, blocks, blocks, 1 << 32, 1 << 32)

    # --- directories ---------------------------------------------------------------------

    def opendir(self, ino: int) -> int:
        inode = self.inodes.get(ino)
        if inode.kind != Kind.DIR:
            raise NotADirectory(inode.key)
        return self.dirs.add(DirHandle(ino))

    async def readdir(self, fh: int, start_id: int, reply: ReaddirReply) -> None:
        handle = self.dirs.get(fh)
        directory = self.inodes.get(handle.ino)
        if start_id == 0 or handle.entries is None:
            handle.entries = await self.namespace.list_dir(directory)
            if self.config.listing_heads:
                await self.namespace.fill_metadata(handle.entries, 2 * self.config.parallel_fetches)
        for index in range(start_id, len(handle.entries)):
            entry = handle.entries[index]
            dirty = self.staging.get(entry.key) if entry.kind == Kind.FILE else None
            if dirty is not None:
                inode = self.namespace.inode_for_dirty(directory, entry.name, dirty)
            else:
                inode = self.namespace.inode_for_entry(directory, entry)
            if not reply(entry.name, inode.attr, index + 1):
                self.inodes.drop_if_unused(inode.ino)
                return
            self.inodes.remember(inode.ino)

    def releasedir(self, fh: int) -> None:
        self.dirs.pop(fh)

    async def mkdir(self, parent_ino: int, name: str, mode: int, caller: Caller) -> Attr:
        self._check_writable()
        parent = self._directory(parent_ino)
        check_name(name)
        await self._refuse_existing(parent, name)
        key = parent.key + name + "/"
        meta = posix_meta(stat.S_IFDIR | (mode & 0o7777 & ~caller.umask), caller.uid, caller.gid, time.time())
        await self.store.put_object(key, b"", WriteOptions(content_type=DIRECTORY_CONTENT_TYPE, user_meta=meta))
        entry = DirEntry(name, Kind.DIR, key)
        self.namespace.note_entry(parent.key, entry)
        attr = self.namespace.attr_from_entry(entry)
        attr = dataclasses.replace(attr, mode=stat.S_IFDIR | (mode & 0o7777 & ~caller.umask), uid=caller.uid,
                                   gid=caller.gid)
        inode = self.inodes.upsert(parent.ino, name, key, attr, etag=None, expires_at_s=self.namespace.expiry(),
                                   meta_complete=True)
        inode.user_meta = meta
        inode.content_type = DIRECTORY_CONTENT_TYPE
        self.inodes.remember(inode.ino)
        return inode.attr

    async def rmdir(self, parent_ino: int, name: str) -> None:
        self._check_writable()
        parent = self._directory(parent_ino)
        inode = await self.namespace.lookup(parent, name)
        if inode.kind != Kind.DIR:
            raise NotADirectory(inode.key)
        if not await self.namespace.is_empty(inode):
            raise NotEmpty(inode.key)
        await self.store.delete_object(inode.key)
        self.namespace.note_removed(parent.key, name)
        self.namespace.invalidate_listing(inode.key)
        self.inodes.unlink_name(parent.ino, name)

    def _directory(self, ino: int) -> Inode:
        inode = self.inodes.get(ino)
        if inode.kind != Kind.DIR:
            raise NotADirectory(inode.key)
        return inode

    async def _refuse_existing(self, parent: Inode, name: str) -> None:
        try:
            await self.namespace.lookup(parent, name)
        except NotFound:
            return
        raise AlreadyExists(parent.key + name)

    # --- files: open, read, write --------------------------------------------------------

    async def create(self, parent_ino: int, name: str, mode: int, caller: Caller) -> tuple[OpenResult, Attr]:
        self._check_writable()
        parent = self._directory(parent_ino)
        check_name(name)
        key = parent.key + name
        now = time.time()
        meta = posix_meta(stat.S_IFREG | (mode & 0o7777 & ~caller.umask), caller.uid, caller.gid, now)
        async with self._lock(key):
            self._discard(key)
            dirty = self.staging.start(key, None, 0, WriteOptions(content_type=content_type_for(name), user_meta=meta))
        self.namespace.forget_negative(parent.key, name)
        inode = self.namespace.inode_for_dirty(parent, name, dirty)
        self.inodes.remember(inode.ino)
        inode.page_cache_etag = None
        self.inodes.opened(inode.ino)
        readahead = ReadAhead(self.config.block_size_bytes, self.config.max_readahead_bytes)
        fh = self.files.add(FileHandle(inode.ino, None, readahead, writable=True))
        return OpenResult(fh, keep_cache=False), inode.attr

    async def open(self, ino: int, write: bool, truncate: bool = False) -> OpenResult:
        inode = self.inodes.get(ino)
        if inode.kind == Kind.DIR:
            raise IsADirectory(inode.key)
        if write or truncate:
            self._check_writable()
        dirty = self.staging.get(inode.key)
        if dirty is None and (not inode.meta_complete or inode.expires_at_s <= self.namespace.now()):
            inode = await self.namespace.refresh(inode)
        if truncate:
            async with self._lock(inode.key):
                dirty = self.staging.get(inode.key)
                if dirty is None:
                    dirty = self.staging.start(inode.key, None, 0, self._options_of(inode))
                else:
                    old_size = dirty.size
                    self.staging.truncate(dirty, 0)
                    self.uploader.after_write(dirty, 0, old_size)
            inode.attr = dataclasses.replace(inode.attr, size_bytes=0)
        ref = None
        keep_cache = False
        if dirty is None and inode.etag is not None:
            ref = ObjectRef(inode.key, inode.etag, inode.attr.size_bytes)
            keep_cache = inode.page_cache_etag == inode.etag
            inode.page_cache_etag = inode.etag
        else:
            inode.page_cache_etag = None
        self.inodes.opened(inode.ino)
        readahead = ReadAhead(self.config.block_size_bytes, self.config.max_readahead_bytes)
        return OpenResult(self.files.add(FileHandle(inode.ino, ref, readahead, writable=write)), keep_cache)

    def _options_of(self, inode: Inode) -> WriteOptions:
        return WriteOptions(content_type=inode.content_type, user_meta=dict(inode.user_meta),
                            storage_class=None)

    async def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        handle = self.files.get(fh)
        inode = self.inodes.get(handle.ino)
        dirty = self.staging.get(inode.key)
        if dirty is not None:
            end = min(offset + size, dirty.size)
            return await self._read_dirty_range(dirty, offset, end) if offset < end else b""
        ref = handle.ref
        if ref is None or ref.key != inode.key:
            # Opened while dirty (or renamed since): read the committed version now.
            if inode.etag is None:
                inode = await self.namespace.refresh(inode)
            ref = handle.ref = ObjectRef(inode.key, inode.etag or "", inode.attr.size_bytes)
        advice = handle.readahead.advise(offset, size, ref.size_bytes)
        if advice is not None:
            self._start_readahead(ref, *advice)
        try:
            return await self.blocks.read(ref, offset, size)
        except Stale:
            # The version this handle was reading is gone: refresh the inode for later opens.
            inode.expires_at_s = 0.0
            raise

    async def _read_dirty_range(self, dirty: DirtyFile, start: int, end: int) -> bytes:
        """Bytes [start, end) of a dirty file: staged writes over base data over zeros."""
        if dirty.written.covers(start, end):
            return self.staging.read_staged(dirty, start, end)  # the common case: one read, no join
        pieces = []
        for a, b, source in dirty.pieces(start, end):
            if source == "staged":
                pieces.append(self.staging.read_staged(dirty, a, b))
            elif source == "base":
                assert dirty.base is not None
                pieces.append(bytes(await self.blocks.read(dirty.base, a, b - a)))
            else:
                pieces.append(bytes(b - a))
        return b"".join(pieces)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        self._check_writable()
        handle = self.files.get(fh)
        inode = self.inodes.get(handle.ino)
        async with self._lock(inode.key):
            dirty = await self._dirty_for(inode)
            self.staging.write(dirty, offset, data)
            self.uploader.after_write(dirty, offset, offset + len(data))
        inode.attr = dataclasses.replace(inode.attr, size_bytes=dirty.size, mtime_ns=int(dirty.mtime_s * 1e9))
        return len(data)

    async def _dirty_for(self, inode: Inode) -> DirtyFile:
        """The inode's dirty file, started from its committed object when there is none."""
        dirty = self.staging.get(inode.key)
        if dirty is not None:
            return dirty
        if not inode.meta_complete or inode.etag is None:
            inode = await self.namespace.refresh(inode)
            dirty = self.staging.get(inode.key)
            if dirty is not None:
                return dirty
        base = ObjectRef(inode.key, inode.etag or "", inode.attr.size_bytes) if inode.attr.size_bytes else None
        return self.staging.start(inode.key, base, inode.attr.size_bytes, self._options_of(inode))

    async def flush(self, fh: int) -> None:
        """close(): commit now (default) or journal and commit after write_back_delay_s."""
        handle = self.files.get(fh)
        if not handle.writable:
            return
        inode = self.inodes.get(handle.ino)
        await self._settle(inode.key)

    async def fsync(self, fh: int) -> None:
        handle = self.files.get(fh)
        await self.commit(self.inodes.get(handle.ino).key)

    async def _settle(self, key: str) -> None:
        dirty = self.staging.get(key)
        if dirty is None or dirty.clean:
            return
        if self.config.write_back_delay_s > 0:
            async with self._lock(key):
                self.staging.save(dirty)
            self._schedule_commit(key, self.config.write_back_delay_s)
        else:
            await self.commit(key)

    def release(self, fh: int) -> None:
        handle = self.files.pop(fh)
        inode = self.inodes.get(handle.ino)
        self.inodes.closed(handle.ino)
        if inode.key.startswith(ORPHAN_PREFIX) and not inode.open_count:
            self._discard(inode.key)
            return
        dirty = self.staging.get(inode.key)
        if handle.writable and dirty is not None and not dirty.clean:
            # flush normally committed or scheduled it; make sure nothing is left behind.
            self._schedule_commit(inode.key, self.config.write_back_delay_s)

    async def setattr(self, ino: int, *, size: int | None = None, mode: int | None = None, uid: int | None = None,
                      gid: int | None = None, mtime_s: float | None = None, fh: int | None = None) -> Attr:
        inode = self.inodes.get(ino)
        if size is not None:
            self._check_writable()
            if inode.kind == Kind.DIR:
                raise IsADirectory(inode.key)
            async with self._lock(inode.key):
                if size == 0 and inode.key not in self.staging:
                    if not inode.meta_complete:
                        inode = await self.namespace.refresh(inode)
                    dirty = self.staging.start(inode.key, None, 0, self._options_of(inode))
                else:
                    dirty = await self._dirty_for(inode)
                    old_size = dirty.size
                    self.staging.truncate(dirty, size)
                    self.uploader.after_write(dirty, min(old_size, size), max(old_size, size))
                self.staging.save(dirty)
            inode.attr = dataclasses.replace(inode.attr, size_bytes=size, mtime_ns=int(dirty.mtime_s * 1e9))
            if fh is None:  # truncate(2) by path: nothing will flush it later
                await self._settle(inode.key)
        if mode is not None or uid is not None or gid is not None or mtime_s is not None:
            self._check_writable()
            await self._change_meta(inode, mode=mode, uid=uid, gid=gid, mtime_s=mtime_s)
        return self.inodes.get(ino).attr

    # --- metadata in place ---------------------------------------------------------------

    async def _change_meta(self, inode: Inode, *, mode: int | None = None, uid: int | None = None,
                           gid: int | None = None, mtime_s: float | None = None,
                           xattr_edit: Callable[[dict[str, str]], None] | None = None) -> None:
        """chmod/chown/utimens/xattrs: rewrite COSFS's headers in place (a self-copy with
        metadata directive Replaced), or in the staged options of a dirty file."""
        if inode.ino == ROOT_INO:
            raise Unsupported("the mount point's own attributes are the mount's options")
        if not inode.meta_complete:
            inode = await self.namespace.refresh(inode)
        attr = inode.attr
        new_mode = attr.mode if mode is None else (stat.S_IFMT(attr.mode) | stat.S_IMODE(mode))
        new_uid = attr.uid if uid is None or uid == -1 else uid
        new_gid = attr.gid if gid is None or gid == -1 else gid
        new_mtime = attr.mtime_ns / 1e9 if mtime_s is None else mtime_s
        meta = posix_meta(new_mode, new_uid, new_gid, new_mtime, inode.user_meta)
        if xattr_edit is not None:
            xattr_edit(meta)
        async with self._lock(inode.key):
            dirty = self.staging.get(inode.key)
            if dirty is not None:
                dirty.options = dataclasses.replace(dirty.options, user_meta=meta)
                dirty.mtime_s = new_mtime
                dirty.generation += 1
                self.staging.save(dirty)
            elif inode.kind == Kind.DIR:
                options = WriteOptions(content_type=DIRECTORY_CONTENT_TYPE, user_meta=meta)
                try:
                    await self.store.copy_object(inode.key, inode.key, replace_metadata=options)
                except NotFound:  # an implicit directory: give it a marker to hold the metadata
                    await self.store.put_object(inode.key, b"", options)
            else:
                options = WriteOptions(content_type=inode.content_type, user_meta=meta)
                result = await self.store.copy_object(inode.key, inode.key, replace_metadata=options,
                                                      source_if_match=inode.etag)
                # Same bytes: the kernel's cached pages stay valid under the new ETag.
                inode.page_cache_etag = result.etag if inode.page_cache_etag == inode.etag else None
                inode.etag = result.etag
                self.namespace.remember_meta(ObjectMeta(inode.key, attr.size_bytes, result.etag, time.time(),
                                                        inode.content_type, result.crc64, dict(meta)))
        inode.user_meta = meta
        inode.attr = dataclasses.replace(attr, mode=new_mode, uid=new_uid, gid=new_gid, mtime_ns=int(new_mtime * 1e9))
        if dirty is not None and not self.inodes.get(inode.ino).open_count:
            await self._settle(inode.key)

    # --- status ----------------------------------------------------------------------------

    def status(self) -> dict:
        """What `cosfs status` shows: a JSON-able snapshot of the mount's state."""
        stats = getattr(self.store, "stats", None)
        requests = {}
        if stats is not None:
            for op in sorted(stats.requests):
                requests[op] = {"requests": stats.requests[op], "retries": stats.retries[op],
                                "errors": stats.errors[op]}
        blocks = self.blocks
        lookups = blocks.hits + blocks.misses
        dirty = self.staging.files()
        return {
            **self.labels,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self._started_s, 1),
            "requests": requests,
            "bytes_in": stats.bytes_in if stats else 0,
            "bytes_out": stats.bytes_out if stats else 0,
            "cache": {"disk_bytes": blocks.used_bytes, "disk_capacity_bytes": self.config.cache_size_bytes,
                      "hits": blocks.hits, "misses": blocks.misses,
                      "hit_ratio": round(blocks.hits / lookups, 4) if lookups else None},
            "dirty_files": len(dirty),
            "uploads_committed": self.committed_uploads,
            "uploads_failed": self.failed_uploads,
            "pending": [
                {"key": d.key, "size_bytes": d.size, "uploaded_bytes": d.uploaded,
                 "state": xattrs.status_value("user.cosfs.state", None, d).decode(), "error": d.last_error}
                for d in dirty[:100]
            ],
        }

    def sync_now(self) -> None:
        """Start uploading every pending change at once (`cosfs sync`)."""
        for dirty in self.staging.files():
            self._scheduled.discard(dirty.key)
            self._schedule_commit(dirty.key, delay_s=0)

    async def getxattr(self, ino: int, name: str) -> bytes:
        inode = self.inodes.get(ino)
        if ino == ROOT_INO and name == xattrs.MOUNT_STATUS:
            return json.dumps(self.status(), separators=(",", ":")).encode()
        if name.startswith(xattrs.STATUS_PREFIX):
            return xattrs.status_value(name, inode, self.staging.get(inode.key))
        if not name.startswith("user."):
            # security.*, system.posix_acl_* (asked by ls -l for every entry): never stored.
            raise xattrs.NoSuchAttribute(name)
        if not inode.meta_complete and inode.ino != ROOT_INO:
            inode = await self.namespace.refresh(inode)
        return xattrs.get(inode.user_meta, name)

    async def listxattr(self, ino: int) -> list[str]:
        inode = self.inodes.get(ino)
        if not inode.meta_complete and inode.ino != ROOT_INO:
            inode = await self.namespace.refresh(inode)
        return xattrs.names(inode.user_meta) + list(xattrs.STATUS_NAMES)

    async def setxattr(self, ino: int, name: str, value: bytes) -> None:
        if ino == ROOT_INO and name == xattrs.MOUNT_SYNC:
            self.sync_now()
            return
        self._check_writable()
        xattrs.check_settable(name, value)
        await self._change_meta(self.inodes.get(ino), xattr_edit=lambda meta: xattrs.set_(meta, name, value))

    async def removexattr(self, ino: int, name: str) -> None:
        self._check_writable()
        inode = self.inodes.get(ino)
        if not inode.meta_complete:
            inode = await self.namespace.refresh(inode)
        xattrs.get(inode.user_meta, name)  # NoSuchAttribute when absent
        await self._change_meta(inode, xattr_edit=lambda meta: xattrs.remove(meta, name))

    # --- namespace changes ---------------------------------------------------------------

    async def unlink(self, parent_ino: int, name: str) -> None:
        self._check_writable()
        parent = self._directory(parent_ino)
        inode = await self.namespace.lookup(parent, name)
        if inode.kind == Kind.DIR:
            raise IsADirectory(inode.key)
        key = inode.key
        async with self._lock(key):
            await self._orphan(inode)
            self._discard(key)
            await self.store.delete_object(key)
        self.namespace.note_removed(parent.key, name)
        self.inodes.unlink_name(parent.ino, name)

    async def _orphan(self, inode: Inode) -> None:
        """An open file is losing its name: its descriptors keep working on a private copy
        (POSIX unlinked-but-open semantics), which is never uploaded and is dropped at the
        last close. The caller holds the key's lock."""
        if not inode.open_count:
            return
        orphan_key = f"{ORPHAN_PREFIX}{inode.ino}"
        dirty = self.staging.get(inode.key)
        if dirty is None:
            dirty = self.staging.start(inode.key, None, 0, self._options_of(inode))
            if inode.etag is not None and inode.attr.size_bytes:
                dirty.base = ObjectRef(inode.key, inode.etag, inode.attr.size_bytes)
                dirty.base_limit = dirty.size = inode.attr.size_bytes
        else:
            self.uploader.abandon(dirty)
        # Base bytes live in the object about to go away: copy them into staging now.
        for start, end, source in list(dirty.pieces(0, dirty.size)):
            if source == "base" and dirty.base is not None:
                for offset in range(start, end, 8 * 1024 * 1024):
                    chunk = bytes(await self.blocks.read(dirty.base, offset, min(end, offset + 8 * 1024 * 1024) - offset))
                    self.staging.write(dirty, offset, chunk)
        dirty.base, dirty.base_limit = None, 0
        self.staging.rekey(inode.key, orphan_key)
        inode.key = orphan_key
        inode.etag = None
        for handle in self.files.values():
            if handle.ino == inode.ino:
                handle.ref = None

    async def symlink(self, parent_ino: int, name: str, target: str, caller: Caller) -> Attr:
        self._check_writable()
        parent = self._directory(parent_ino)
        check_name(name)
        await self._refuse_existing(parent, name)
        key = parent.key + name
        meta = posix_meta(stat.S_IFLNK | 0o777, caller.uid, caller.gid, time.time())
        body = target.encode("utf-8", "surrogateescape")
        result = await self.store.put_object(key, body, WriteOptions(user_meta=meta))
        self.namespace.remember_meta(ObjectMeta(key, len(body), result.etag, time.time(), "application/octet-stream",
                                                result.crc64, dict(meta)))
        entry = DirEntry(name, Kind.SYMLINK, key, len(body), result.etag, time.time())
        self.namespace.note_entry(parent.key, entry)
        attr = Attr(0, stat.S_IFLNK | 0o777, len(body), caller.uid, caller.gid, time.time_ns())
        inode = self.inodes.upsert(parent.ino, name, key, attr, etag=result.etag,
                                   expires_at_s=self.namespace.expiry(), meta_complete=True)
        inode.user_meta = meta
        self.inodes.remember(inode.ino)
        return inode.attr

    def link(self) -> None:
        raise NotPermitted("hard links cannot be stored in COS")

    async def mknod(self, parent_ino: int, name: str, mode: int, caller: Caller) -> Attr:
        if not stat.S_ISREG(mode):
            raise NotPermitted("device nodes, FIFOs and sockets cannot be stored in COS")
        opened, attr = await self.create(parent_ino, name, mode, caller)
        await self.flush(opened.fh)
        self.release(opened.fh)
        return attr

    async def rename(self, old_parent_ino: int, old_name: str, new_parent_ino: int, new_name: str,
                     flags: int = 0) -> None:
        self._check_writable()
        if flags & RENAME_EXCHANGE:
            raise Unsupported("RENAME_EXCHANGE cannot be done on object storage")
        old_parent = self._directory(old_parent_ino)
        new_parent = self._directory(new_parent_ino)
        check_name(new_name)
        source = await self.namespace.lookup(old_parent, old_name)
        try:
            target: Inode | None = await self.namespace.lookup(new_parent, new_name)
        except NotFound:
            target = None
        if target is not None and target.ino == source.ino:
            return
        if target is not None and flags & RENAME_NOREPLACE:
            raise AlreadyExists(target.key)
        if source.kind == Kind.DIR:
            await self._rename_dir(source, old_parent, new_parent, new_name, target)
        else:
            await self._rename_file(source, old_parent, new_parent, new_name, target)

    async def _rename_file(self, source: Inode, old_parent: Inode, new_parent: Inode, new_name: str,
                           target: Inode | None) -> None:
        if target is not None and target.kind == Kind.DIR:
            raise IsADirectory(target.key)
        old_key, new_key = source.key, new_parent.key + new_name
        async with self._lock(old_key), self._lock(new_key):
            if target is not None:
                await self._orphan(target)  # its open descriptors must not write into new_key
            dirty = self.staging.get(old_key)
            self._discard(new_key)  # a pending write to the target is overwritten
            if dirty is not None and dirty.base is None:
                # Never committed under the old name: move the staged file, no server copy.
                self.uploader.abandon(dirty)
                self.staging.rekey(old_key, new_key)
                await self.store.delete_object(old_key)
            else:
                if dirty is not None:
                    await self._commit_locked(old_key)
                await self._copy(old_key, new_key, source.attr.size_bytes)
                await self.store.delete_object(old_key)
        self.namespace.note_removed(old_parent.key, source.name)
        self.inodes.move(source.ino, new_parent.ino, new_name, new_key)
        self.namespace.note_entry(new_parent.key, DirEntry(new_name, source.kind, new_key, source.attr.size_bytes,
                                                           source.etag, source.attr.mtime_ns / 1e9))
        for handle in self.files.values():
            if handle.ino == source.ino and handle.ref is not None:
                handle.ref = dataclasses.replace(handle.ref, key=new_key)
        if new_key in self.staging and not source.open_count:
            await self._settle(new_key)

    async def _copy(self, old_key: str, new_key: str, size: int) -> None:
        """Server-side copy; above the single-copy limit, a multipart copy of parts."""
        if size <= MAX_SINGLE_COPY_BYTES:
            await self.store.copy_object(old_key, new_key)
            return
        head = await self.store.head_object(old_key)
        options = WriteOptions(content_type=head.content_type, user_meta=dict(head.user_meta))
        upload_id = await self.store.create_multipart_upload(new_key, options)
        try:
            parts = []
            part_bytes = part_size_for(size, max(self.config.part_size_bytes, COPY_PART_BYTES))
            for plan in plan_parts(head.size_bytes, part_bytes, base_limit=head.size_bytes):
                parts.append(await self.store.upload_part_copy(new_key, upload_id, plan.number, old_key,
                                                               (plan.start, plan.end - 1), source_if_match=head.etag))
            await self.store.complete_multipart_upload(new_key, upload_id, parts)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.store.abort_multipart_upload(new_key, upload_id)
            raise

    async def _rename_dir(self, source: Inode, old_parent: Inode, new_parent: Inode, new_name: str,
                          target: Inode | None) -> None:
        if source.ino == ROOT_INO:
            raise InvalidName("cannot rename the mount point")
        new_prefix = new_parent.key + new_name + "/"
        if new_prefix.startswith(source.key):
            raise InvalidName("cannot move a directory into itself")
        if target is not None:
            if target.kind != Kind.DIR:
                raise NotADirectory(target.key)
            if not await self.namespace.is_empty(target):
                raise NotEmpty(target.key)
            await self.store.delete_object(target.key)
        # Uncommitted files below are committed first so the key walk sees every byte.
        for dirty in self.staging.under(source.key):
            await self.commit(dirty.key)
        await self.renames.rename_prefix(source.key, new_prefix, self.config.parallel_fetches)
        self.namespace.note_removed(old_parent.key, source.name)
        self.namespace.invalidate_listing(source.key)
        self.namespace.invalidate_listing(new_prefix)
        self.inodes.rekey_below(source.key, new_prefix)
        self.inodes.move(source.ino, new_parent.ino, new_name, new_prefix)
        self.namespace.note_entry(new_parent.key, DirEntry(new_name, Kind.DIR, new_prefix))
        for handle in self.files.values():
            if handle.ref is not None and handle.ref.key.startswith(source.key):
                handle.ref = dataclasses.replace(handle.ref, key=new_prefix + handle.ref.key[len(source.key):])

    # --- commits -------------------------------------------------------------------------

    async def commit(self, key: str) -> None:
        """Upload the key's dirty file now and wait (fsync, close, unmount)."""
        async with self._lock(key):
            await self._commit_locked(key)

    async def _commit_locked(self, key: str) -> None:
        dirty = self.staging.get(key)
        if dirty is None or dirty.clean:
            return
        if key.startswith(ORPHAN_PREFIX):
            dirty.committed_generation = dirty.generation  # nameless: nothing to upload
            return
        # COSFS's mtime header carries the file's mtime: the last write, or a later utimens.
        user_meta = dict(dirty.options.user_meta)
        user_meta["mtime"] = str(int(dirty.mtime_s))
        dirty.options = dataclasses.replace(dirty.options, user_meta=user_meta)
        self.staging.save(dirty)
        try:
            result = await self.uploader.commit(dirty)
        except CosfsError as exc:
            dirty.last_error = str(exc)
            self.failed_uploads += 1
            log.error("upload of %s failed; its data stays staged in the cache directory: %s", key, exc)
            raise TransientError(f"upload of {key} failed: {exc}") from exc
        size = dirty.size
        self.staging.drop(key)
        self.committed_uploads += 1
        prefix, _, name = key.rpartition("/")
        prefix = prefix + "/" if prefix else ""
        self.namespace.note_entry(prefix, DirEntry(name, Kind.FILE, key, size, result.etag, time.time()))
        self.namespace.remember_meta(ObjectMeta(key, size, result.etag, time.time(), dirty.options.content_type,
                                                result.crc64, dict(dirty.options.user_meta)))
        for inode in self.inodes.children_with_key(key):
            inode.etag = result.etag
            inode.page_cache_etag = result.etag if inode.open_count else None
            inode.expires_at_s = self.namespace.expiry()
            inode.attr = dataclasses.replace(inode.attr, size_bytes=size)
        for handle in self.files.values():
            if self.inodes.get(handle.ino).key == key:
                handle.ref = ObjectRef(key, result.etag, size)

    def _schedule_commit(self, key: str, delay_s: float) -> None:
        if key in self._scheduled or self._nursery is None:
            return
        self._scheduled.add(key)
        self._nursery.start_soon(self._delayed_commit, key, delay_s, name=f"upload {key}")

    async def _delayed_commit(self, key: str, delay_s: float) -> None:
        attempt = 0
        while True:
            await trio.sleep(delay_s)
            try:
                await self.commit(key)
                break
            except CosfsError:
                attempt += 1
                delay_s = min(300.0, 5.0 * 2**attempt)
                log.warning("will retry the upload of %s in %.0f s", key, delay_s)
        self._scheduled.discard(key)

    async def drain(self) -> int:
        """Commit every dirty file (unmount, SIGTERM). Returns how many failed."""
        failed = 0
        for dirty in self.staging.files():
            try:
                await self.commit(dirty.key)
            except CosfsError:
                failed += 1
        return failed

    # --- read-ahead ----------------------------------------------------------------------

    def _start_readahead(self, ref: ObjectRef, first: int, last: int) -> None:
        if self._nursery is None:
            return
        per_fetch = max(1, self.config.fetch_size_bytes // self.blocks.block_size_bytes)
        missing = self.blocks.missing(ref, first, last)
        runs: list[list[int]] = []
        for index in missing:
            if runs and index == runs[-1][-1] + 1 and len(runs[-1]) < per_fetch:
                runs[-1].append(index)
            else:
                runs.append([index])
        for run in runs:
            self._nursery.start_soon(self._prefetch, ref, run[0], run[-1])

    async def _prefetch(self, ref: ObjectRef, first: int, last: int) -> None:
        try:
            await self.blocks.fetch_run(ref, first, last)
        except CosfsError as exc:
            log.debug("read-ahead of %s blocks %d-%d failed: %s", ref.key, first, last, exc)
        except OSError as exc:
            log.warning("read-ahead of %s failed on local disk: %s", ref.key, exc)

    def check_invariants(self) -> None:
        self.inodes.check_invariants()
        self.blocks.check_invariants()
        assert self.inodes.get(ROOT_INO).kind == Kind.DIR
        for dirty in self.staging.files():
            assert dirty.data_path.exists(), f"dirty file {dirty.key} lost its staging data"

