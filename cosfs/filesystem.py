"""CosFilesystem: the filesystem core, free of FUSE. Plain Python types in and out.

Orchestration only: each rule lives in its owner, and this class decides which owner to call.
- `Namespace` owns the tree as COS shows it, every tree change and its caches;
- `WriteBack` owns commits, the key locks and directory-rename barriers, the journals'
  acknowledgement points, conflicts and recovery;
- `BlockCache` owns clean data; `FileHandles` owns which version an open file reads.

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
import mimetypes
import stat
import time
from collections.abc import Callable
from pathlib import Path

import trio

from cosfs import xattrs
from cosfs.blocks import BlockCache, ObjectRef
from cosfs.config import FsConfig
from cosfs.cos.store import PutResult, WriteOptions
from cosfs.errors import (
    AlreadyExists,
    CacheFull,
    InvalidName,
    IsADirectory,
    NotADirectory,
    NotFound,
    NotPermitted,
    ReadOnly,
    Stale,
    Unsupported,
)
from cosfs.handles import DirHandle, FileHandle, FileHandles, HandleTable
from cosfs.inodes import ROOT_INO, Attr, Inode, InodeTable, Kind
from cosfs.namespace import MAX_NAME_BYTES, Gone, Namespace, check_name, root_attr
from cosfs.posix import Caller, check_size, new_meta, posix_meta
from cosfs.prefetch import Prefetcher, ReadAhead
from cosfs.status import MountStatus, PendingFile
from cosfs.write import Origin, Snapshot, StagingArea, WriteBack

# readdir reply: (name, attr, next offset) -> whether the kernel took the entry
ReaddirReply = Callable[[str, Attr, int], bool]

RENAME_EXCHANGE = 2
RENAME_NOREPLACE = 1


@dataclasses.dataclass(frozen=True)
class OpenResult:
    fh: int
    keep_cache: bool
    direct_io: bool = False


@dataclasses.dataclass(frozen=True)
class FsStats:
    block_size_bytes: int
    total_blocks: int
    free_blocks: int
    total_inodes: int
    free_inodes: int
    max_name_bytes: int = MAX_NAME_BYTES


def upload_parallelism(config: FsConfig) -> int:
    """Parts in flight at once: each holds its part in memory while it is sent (the body
    read from staging is the buffer the socket sends: no copy), so the count is bounded by
    half the memory budget as well as by parallel_count. (Over a link that caps each
    connection, the parts in flight are the write's throughput: 8 by default, not 4.)"""
    by_memory = (config.memory_budget_bytes // 2) // config.part_size_bytes
    return max(2, min(config.parallel_fetches, by_memory))


def content_type_for(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class InodeTarget:
    """An inode as the write side sees a file (cosfs.write.Target): its key now, and the
    committed object it starts from."""

    __slots__ = ("_inode", "_namespace")

    def __init__(self, inode: Inode, namespace: Namespace) -> None:
        self._inode = inode
        self._namespace = namespace

    @property
    def key(self) -> str:
        return self._inode.key

    @property
    def ino(self) -> int:
        return self._inode.ino

    def committed(self) -> ObjectRef | None:
        inode = self._inode
        return None if inode.etag is None else ObjectRef(inode.key, inode.etag, inode.attr.size_bytes)

    async def origin(self) -> Origin:
        inode = self._inode
        if inode.etag is None and inode.attr.size_bytes:
            inode = await self._namespace.refresh(inode)
        size = inode.attr.size_bytes
        base = ObjectRef(inode.key, inode.etag or "", size) if size else None
        return Origin(base, size, WriteOptions(content_type=inode.content_type, user_meta=dict(inode.user_meta),
                                               storage_class=None))


class CosFilesystem:
    """The mount's core: it orchestrates the namespace, block cache, write-back and handles."""

    def __init__(self, store, config: FsConfig, cache_dir: Path, *,
                 clock: Callable[[], float] = time.monotonic, owner: dict[str, str] | None = None) -> None:
        self.store = store
        self.config = config
        self.inodes = InodeTable(config.prefix, root_attr(config))
        self.blocks = BlockCache(store, cache_dir, config.block_size_bytes, config.cache_size_bytes,
                                 config.parallel_fetches, memory_bytes=config.memory_budget_bytes // 2,
                                 keep_free_bytes=config.ensure_diskfree_bytes)
        self.writeback = WriteBack(
            store, cache_dir, labels=owner, read_base=self.blocks.read, make_room=self._make_room,
            part_bytes=config.part_size_bytes, multipart_threshold_bytes=config.multipart_threshold_bytes,
            parallel_parts=upload_parallelism(config), write_back_delay_s=config.write_back_delay_s,
            parallel=config.parallel_fetches, on_committed=self._committed, on_conflict=self._forget_version)
        self.namespace = Namespace(store, self.inodes, config, self.writeback.staging, clock)
        self.prefetcher = Prefetcher(self.blocks, config.fetch_size_bytes, config.stream_disk_bytes)
        self.files = FileHandles()
        self.dirs: HandleTable[DirHandle] = HandleTable()
        # Set by the mount lifecycle for status reports: bucket, endpoint, mount point.
        self.labels: dict[str, str] = {}
        self._started_s = time.time()

    @property
    def staging(self) -> StagingArea:
        return self.writeback.staging

    async def start(self, nursery: trio.Nursery) -> None:
        """Attach the nursery, load the block cache, and finish what a crash interrupted."""
        self.prefetcher.start(nursery)
        self.namespace.start(nursery)
        self.blocks.load()
        await self.writeback.start(nursery)

    async def drain(self) -> int:
        return await self.writeback.drain()

    def close(self) -> None:
        """After the mount has ended: release what the caches and staging hold open."""
        self.blocks.close()
        self.writeback.staging.close()

    def _target(self, inode: Inode) -> InodeTarget:
        return InodeTarget(inode, self.namespace)

    def _make_room(self, size: int) -> bool:
        if self.blocks.make_room(size):
            return True
        raise CacheFull(f"the cache disk would keep less than ensure_diskfree "
                        f"({self.config.ensure_diskfree_bytes} bytes) free: the write was not staged")

    def _check_writable(self) -> None:
        if self.config.read_only:
            raise ReadOnly("the mount is read-only")

    def _committed(self, key: str, state: Snapshot, result: PutResult) -> None:
        """WriteBack's news: `key` now holds `state`."""
        inodes = self.namespace.committed(key, state.size, result.etag, result.crc64, state.options)
        self.files.pin({inode.ino for inode in inodes}, ObjectRef(key, result.etag, state.size))

    def _forget_version(self, key: str) -> None:
        self.namespace.forget_version(key)

    # --- metadata ------------------------------------------------------------------------

    async def lookup(self, parent_ino: int, name: str) -> Attr:
        inode = await self.namespace.lookup(self.inodes.get(parent_ino), name)
        self.inodes.remember(inode.ino)
        return self._shown(inode)

    def forget(self, items: list[tuple[int, int]]) -> None:
        for ino, count in items:
            self.inodes.forget(ino, count)

    async def getattr(self, ino: int) -> Attr:
        inode = self.inodes.get(ino)
        if inode.key in self.staging or inode.expires_at_s <= self.namespace.now():
            inode = await self.namespace.refresh(inode)
        return self._shown(inode)

    def _shown(self, inode: Inode) -> Attr:
        """What stat() shows: a directory's link count follows its subdirectories."""
        if inode.kind == Kind.DIR:
            inode.attr = dataclasses.replace(inode.attr, nlink=self.namespace.dir_links(inode))
        return inode.attr

    def _entries_changed(self, *directories: Inode) -> None:
        """An entry was created, removed or renamed in these directories: their mtime and
        ctime are now (kept by this mount: directories' times are not stored in COS)."""
        now = time.time_ns()
        for directory in directories:
            directory.attr = directory.attr.touched(now, modified=True)
    async def readlink(self, ino: int) -> str:
        inode = self.inodes.get(ino)
        if inode.kind != Kind.SYMLINK:
            raise InvalidName(f"{inode.key} is not a symbolic link")
        return await self.namespace.readlink(inode)

    def statfs(self) -> FsStats:
        """Object storage has no capacity limit: a large, stable figure as s3fs reports, or
        s3fs's `bucket_size`."""
        size = self.config.bucket_size_bytes
        blocks = 1 << 40 if size is None else max(1, size // self.blocks.block_size_bytes)
        return FsStats(self.blocks.block_size_bytes, blocks, blocks, 1 << 32, 1 << 32)

    # --- directories ---------------------------------------------------------------------

    def opendir(self, ino: int) -> int:
        self._directory(ino)
        return self.dirs.add(DirHandle(ino))

    async def readdir(self, fh: int, start_id: int, reply: ReaddirReply) -> None:
        """Entries from `start_id` on, each with the attributes its stored metadata gives:
        what the listing does not say is fetched ahead (the handle's describer), never
        guessed."""
        handle = self.dirs.get(fh)
        directory = self.inodes.get(handle.ino)
        if start_id == 0 or handle.entries is None or handle.describer is None:
            if handle.describer is not None:
                handle.describer.close()
            handle.entries = await self.namespace.list_dir(directory)
            handle.describer = self.namespace.describer(handle.entries)
        for index in range(start_id, len(handle.entries)):
            entry = handle.entries[index]
            dirty = self.staging.get(entry.key) if entry.kind == Kind.FILE else None
            if dirty is not None:
                inode = self.namespace.inode_for_dirty(directory, entry.name, dirty)
            else:
                meta = await handle.describer.get(index)
                if isinstance(meta, Gone):
                    continue
                inode = self.namespace.inode_for_entry(directory, entry, meta)
            if not reply(entry.name, inode.attr, index + 1):
                self.inodes.drop_if_unused(inode.ino)
                return
            self.inodes.remember(inode.ino)

    def releasedir(self, fh: int) -> None:
        handle = self.dirs.pop(fh)
        if handle.describer is not None:
            handle.describer.close()

    async def mkdir(self, parent_ino: int, name: str, mode: int, caller: Caller) -> Attr:
        self._check_writable()
        parent = self._directory(parent_ino)
        check_name(name, parent.key)
        meta = new_meta(stat.S_IFDIR | (mode & 0o7777 & ~caller.umask), caller, parent.attr)

        async def make() -> Inode:
            await self._refuse_existing(parent, name)
            return await self.namespace.make_dir(parent, name, meta)

        inode = await self.writeback.tree_change([parent.key + name + "/", parent.key + name], make)
        self._entries_changed(parent)
        self.inodes.remember(inode.ino)
        return self._shown(inode)

    async def rmdir(self, parent_ino: int, name: str) -> None:
        self._check_writable()
        parent = self._directory(parent_ino)
        inode = await self.namespace.lookup(parent, name)
        if inode.kind != Kind.DIR:
            raise NotADirectory(inode.key)
        await self.writeback.tree_change([inode.key], lambda: self.namespace.remove_dir(parent, inode))
        self._entries_changed(parent)

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
        check_name(name, parent.key)
        meta = new_meta(stat.S_IFREG | (mode & 0o7777 & ~caller.umask), caller, parent.attr)
        # (a rename of the parent while the key is awaited: the file is created under its new name)
        dirty = await self.writeback.create(lambda: parent.key + name,
                                            WriteOptions(content_type=content_type_for(name), user_meta=meta))
        self.namespace.forget_negative(parent.key, name)
        inode = self.namespace.inode_for_dirty(parent, name, dirty)
        self._entries_changed(parent)
        self.inodes.remember(inode.ino)
        return self._open_handle(inode, None, writable=True, keep_cache=False), inode.attr

    def _open_handle(self, inode: Inode, ref: ObjectRef | None, *, writable: bool, keep_cache: bool) -> OpenResult:
        self.inodes.opened(inode.ino)
        readahead = ReadAhead(self.config.block_size_bytes, self.config.max_readahead_bytes)
        return OpenResult(self.files.add(FileHandle(inode.ino, ref, readahead, writable=writable)),
                          keep_cache and not self.config.direct_io, self.config.direct_io)

    async def open(self, ino: int, write: bool, truncate: bool = False) -> OpenResult:
        inode = self.inodes.get(ino)
        if inode.kind == Kind.DIR:
            raise IsADirectory(inode.key)
        if write or truncate:
            self._check_writable()
        dirty = self.staging.get(inode.key)
        if dirty is None and self.config.close_to_open and not truncate:
            inode = await self.namespace.revalidate(inode)  # (O_TRUNC replaces whatever is there)
        elif dirty is None and inode.expires_at_s <= self.namespace.now():
            try:
                inode = await self.namespace.refresh(inode)
            except NotFound:
                if not truncate:
                    raise
                # Gone from COS: O_TRUNC makes it again, with the metadata it had.
                inode.etag = None
                inode.attr = dataclasses.replace(inode.attr, size_bytes=0)
        if truncate:
            dirty = await self.writeback.open_truncate(self._target(inode))
            # O_TRUNC marks mtime and ctime, even of an empty file (POSIX open()).
            inode.attr = dataclasses.replace(inode.attr, size_bytes=0, mtime_ns=dirty.mtime_ns,
                                             ctime_ns=dirty.mtime_ns)
        if dirty is None and inode.etag is not None:
            keep_cache = inode.page_cache_etag == inode.etag
            inode.page_cache_etag = inode.etag
            return self._open_handle(inode, ObjectRef(inode.key, inode.etag, inode.attr.size_bytes),
                                     writable=write, keep_cache=keep_cache)
        inode.page_cache_etag = None
        return self._open_handle(inode, None, writable=write, keep_cache=False)

    async def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        handle = self.files.get(fh)
        inode = self.inodes.get(handle.ino)
        if inode.key in self.writeback.staging:  # (a dict lookup: reads of clean files stay cheap)
            staged = await self.writeback.read(inode.key, offset, offset + size)
            if staged is not None:
                return staged
        ref = handle.ref
        if ref is None or ref.key != inode.key:
            # Opened while dirty (or renamed since): read the committed version now.
            if inode.etag is None:
                inode = await self.namespace.refresh(inode)
            ref = handle.ref = ObjectRef(inode.key, inode.etag or "", inode.attr.size_bytes)
        try:
            return await self.prefetcher.read(ref, handle.readahead, offset, size)
        except Stale:
            # The version this handle was reading is gone: refresh the inode for later opens.
            inode.expires_at_s = 0.0
            raise

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        self._check_writable()
        check_size(offset + len(data))
        handle = self.files.get(fh)
        inode = self.inodes.get(handle.ino)
        dirty = await self.writeback.write(self._target(inode), offset, data)
        now_ns = dirty.mtime_ns
        inode.attr = dataclasses.replace(inode.attr, size_bytes=dirty.size, mtime_ns=now_ns, ctime_ns=now_ns)
        return len(data)

    async def flush(self, fh: int) -> None:
        """close(): commit now (default) or journal and commit after write_back_delay_s."""
        handle = self.files.get(fh)
        if handle.writable:
            inode = self.inodes.get(handle.ino)
            await self.writeback.flush(lambda: inode.key)

    async def fsync(self, fh: int) -> None:
        inode = self.inodes.get(self.files.get(fh).ino)
        await self.writeback.fsync(lambda: inode.key)

    def release(self, fh: int) -> None:
        handle = self.files.pop(fh)
        inode = self.inodes.get(handle.ino)
        self.inodes.closed(handle.ino)
        self.writeback.released(inode.key, writable=handle.writable, last_open=not inode.open_count)

    async def setattr(self, ino: int, *, size: int | None = None, mode: int | None = None, uid: int | None = None,
                      gid: int | None = None, mtime_ns: int | None = None, atime_ns: int | None = None,
                      fh: int | None = None) -> Attr:
        inode = self.inodes.get(ino)
        if size is not None:
            self._check_writable()
            if inode.kind == Kind.DIR:
                raise IsADirectory(inode.key)
            check_size(size)
            # truncate(2) by path: nothing will flush it later, it is committed as a close is
            dirty = await self.writeback.truncate(self._target(inode), size, by_path=fh is None)
            now_ns = dirty.mtime_ns
            inode.attr = dataclasses.replace(inode.attr, size_bytes=size, mtime_ns=now_ns, ctime_ns=now_ns)
        if mode is not None or uid is not None or gid is not None or mtime_ns is not None or atime_ns is not None:
            self._check_writable()
            await self._change_meta(inode, mode=mode, uid=uid, gid=gid, mtime_ns=mtime_ns, atime_ns=atime_ns)
        return self._shown(self.inodes.get(ino))

    # --- metadata in place ---------------------------------------------------------------

    async def _change_meta(self, inode: Inode, *, mode: int | None = None, uid: int | None = None,
                           gid: int | None = None, mtime_ns: int | None = None, atime_ns: int | None = None,
                           xattr_edit: Callable[[dict[str, str]], None] | None = None) -> None:
        """chmod/chown/utimens/xattrs: COSFS's headers rewritten in place, or in the staged
        options of a dirty file (uploaded with it). Every such change sets ctime."""
        attr = inode.attr
        now_ns = time.time_ns()
        changed = dataclasses.replace(
            attr,
            mode=attr.mode if mode is None else (stat.S_IFMT(attr.mode) | stat.S_IMODE(mode)),
            uid=attr.uid if uid is None or uid == -1 else uid,
            gid=attr.gid if gid is None or gid == -1 else gid,
            mtime_ns=attr.mtime_ns if mtime_ns is None else mtime_ns,
            atime_ns=attr.shown_atime_ns if atime_ns is None else atime_ns,
            ctime_ns=now_ns,
        )
        if inode.ino == ROOT_INO:
            if xattr_edit is not None:
                raise Unsupported("the mount point has no object to hold extended attributes")
            # The mount point's attributes come from the mount's options: kept in memory.
            inode.attr = changed
            return
        meta = posix_meta(changed.mode, changed.uid, changed.gid, changed.mtime_ns, inode.user_meta,
                          atime_ns=changed.shown_atime_ns, ctime_ns=now_ns)
        if xattr_edit is not None:
            xattr_edit(meta)
        staged = await self.writeback.change_meta(self._target(inode), meta, changed.mtime_ns,
                                                  lambda meta: self.namespace.rewrite_meta(inode, meta))
        if staged:
            inode.user_meta = meta
        inode.attr = changed
        if staged and not self.inodes.get(inode.ino).open_count:
            await self.writeback.flush(lambda: inode.key)

    # --- status ----------------------------------------------------------------------------

    def status(self) -> MountStatus:
        """What `cosfs status` shows: the mount's state as a typed value."""
        return MountStatus.collect(self.labels, self._started_s, getattr(self.store, "stats", None), self.blocks,
                                   self.config.cache_size_bytes, self.writeback,
                                   [PendingFile.of(d, xattrs.status_value("user.cosfs.state", None, d).decode())
                                    for d in self.staging.files()[:100]])

    def sync_now(self, *, retry_refused: bool = False) -> None:
        """Start uploading every pending change at once (`cosfs sync`), refused ones too
        with `retry_refused` (`cosfs sync --retry-failed`)."""
        self.writeback.reschedule_all(retry_refused=retry_refused)

    def pending_count(self) -> int:
        return len(self.staging)

    def refused_count(self) -> int:
        return sum(1 for dirty in self.staging.files() if dirty.refused_now)

    def progress(self) -> tuple[int, int, int]:
        """Changes while uploads progress (how long a drain may wait): files pending,
        bytes uploaded of the commits in flight, commits done."""
        return (len(self.staging), sum(d.uploaded for d in self.staging.files()), self.writeback.committed_uploads)

    async def getxattr(self, ino: int, name: str, caller_uid: int | None = None) -> bytes:
        inode = self.inodes.get(ino)
        if ino == ROOT_INO and name == xattrs.MOUNT_STATUS:
            self._owner_only(caller_uid, name)
            return json.dumps(self.status().to_json(), separators=(",", ":")).encode()
        if name.startswith(xattrs.STATUS_PREFIX):
            return xattrs.status_value(name, inode, self.staging.get(inode.key))
        if not name.startswith("user."):
            # security.*, system.posix_acl_* (asked by ls -l for every entry): never stored.
            raise xattrs.NoSuchAttribute(name)
        return xattrs.get(inode.user_meta, name)

    def _owner_only(self, caller_uid: int | None, what: str) -> None:
        """The mount's status names pending keys: only its owner and root may read it."""
        if caller_uid is not None and caller_uid not in (0, self.config.owner_uid):
            raise NotPermitted(f"{what} is readable by the mount's owner and root only")

    async def listxattr(self, ino: int) -> list[str]:
        inode = self.inodes.get(ino)
        return xattrs.names(inode.user_meta) + list(xattrs.STATUS_NAMES)

    async def setxattr(self, ino: int, name: str, value: bytes, caller_uid: int | None = None) -> None:
        if ino == ROOT_INO and name == xattrs.MOUNT_SYNC:
            self._owner_only(caller_uid, name)
            self.sync_now(retry_refused=value == b"retry-failed")
            return
        if ino == ROOT_INO and name == xattrs.MOUNT_DISCARD:
            self._owner_only(caller_uid, name)
            key = self.config.prefix + value.decode("utf-8", "surrogateescape").strip("/")
            await self.writeback.discard_refused(key)
            return
        self._check_writable()
        xattrs.check_settable(name, value)
        await self._change_meta(self.inodes.get(ino), xattr_edit=lambda meta: xattrs.set_(meta, name, value))

    async def removexattr(self, ino: int, name: str) -> None:
        self._check_writable()
        inode = self.inodes.get(ino)
        xattrs.get(inode.user_meta, name)  # NoSuchAttribute when absent
        await self._change_meta(inode, xattr_edit=lambda meta: xattrs.remove(meta, name))

    # --- namespace changes ---------------------------------------------------------------

    async def unlink(self, parent_ino: int, name: str) -> None:
        self._check_writable()
        parent = self._directory(parent_ino)
        inode = await self.namespace.lookup(parent, name)
        if inode.kind == Kind.DIR:
            raise IsADirectory(inode.key)
        await self.writeback.unlink(self._target(inode), lambda: self.namespace.remove_file(parent, name, inode.key),
                                    keep_open_copy=bool(inode.open_count),
                                    detached=lambda orphan: self._detach(inode, orphan))
        self._entries_changed(parent)

    def _detach(self, inode: Inode, orphan_key: str | None) -> None:
        """The inode's name is gone: its open descriptors now use the private copy."""
        if orphan_key is None:
            return
        self.inodes.rekey(inode.ino, orphan_key)
        inode.etag = None
        inode.attr = dataclasses.replace(inode.attr, nlink=0)
        self.files.pin({inode.ino}, None)

    async def symlink(self, parent_ino: int, name: str, target: str, caller: Caller) -> Attr:
        self._check_writable()
        parent = self._directory(parent_ino)
        check_name(name, parent.key)
        meta = new_meta(stat.S_IFLNK | 0o777, caller, parent.attr)

        async def make() -> Inode:
            await self._refuse_existing(parent, name)
            return await self.namespace.put_symlink(parent, name, target, meta)

        inode = await self.writeback.tree_change([parent.key + name, parent.key + name + "/"], make)
        self._entries_changed(parent)
        self.inodes.remember(inode.ino)
        return inode.attr

    def link(self) -> None:
        """ENOTSUP, as COSFS and s3fs answer (EPERM would read as "hard links exist here, not
        for you" to the suites and scripts written for them)."""
        raise Unsupported("hard links cannot be stored in COS")

    async def mknod(self, parent_ino: int, name: str, mode: int, rdev: int, caller: Caller) -> Attr:
        """A regular file (created and committed empty), or a FIFO, socket or device node
        stored as COSFS stores them (type in the mode header, device number in rdev)."""
        if stat.S_ISREG(mode) or not stat.S_IFMT(mode):
            opened, attr = await self.create(parent_ino, name, stat.S_IFREG | stat.S_IMODE(mode), caller)
            await self.flush(opened.fh)
            self.release(opened.fh)
            return attr
        self._check_writable()
        parent = self._directory(parent_ino)
        check_name(name, parent.key)
        meta = new_meta(stat.S_IFMT(mode) | (mode & 0o7777 & ~caller.umask), caller, parent.attr)
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            meta["rdev"] = str(rdev)
        async def make() -> Inode:
            await self._refuse_existing(parent, name)
            return await self.namespace.put_special(parent, name, meta)

        inode = await self.writeback.tree_change([parent.key + name, parent.key + name + "/"], make)
        self._entries_changed(parent)
        self.inodes.remember(inode.ino)
        return inode.attr

    async def rename(self, old_parent_ino: int, old_name: str, new_parent_ino: int, new_name: str,
                     flags: int = 0) -> None:
        self._check_writable()
        if flags & RENAME_EXCHANGE:
            raise Unsupported("RENAME_EXCHANGE cannot be done on object storage")
        old_parent = self._directory(old_parent_ino)
        new_parent = self._directory(new_parent_ino)
        check_name(new_name, new_parent.key)
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
        source.attr = source.attr.touched(time.time_ns(), modified=False)
        self._entries_changed(old_parent, new_parent)

    async def _rename_file(self, source: Inode, old_parent: Inode, new_parent: Inode, new_name: str,
                           target: Inode | None) -> None:
        """copy + delete (a never-committed file moves locally). Until the copy succeeded
        nothing of either name changes; then the target's pending data is discarded."""
        if target is not None and target.kind == Kind.DIR:
            raise IsADirectory(target.key)
        new_key = new_parent.key + new_name

        def moved(orphan: str | None, etag: str | None) -> None:  # the keys are still held: no one sees it half done
            old_key = source.key
            if target is not None:
                self._detach(target, orphan)
            if etag is not None:  # the copy's version (a copy of a multipart object has a new ETag)
                source.etag = etag
                source.page_cache_etag = None
            source.content_type = content_type_for(new_name)
            self.namespace.moved(source, old_parent, new_parent, new_name, new_key)
            self.files.moved(old_key, new_key, prefix=False)

        await self.writeback.rename_file(self._target(source), new_key, content_type=content_type_for(new_name),
                                         open_replaced=self._target(target) if target is not None and
                                         target.open_count else None, moved=moved)
        if not source.open_count:
            await self.writeback.flush(lambda: source.key)

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
            await self.writeback.tree_change([target.key], lambda: self.namespace.remove_dir(new_parent, target))
        old_prefix = source.key

        def moved() -> None:  # inside the rename's barrier: no one sees the tree half moved
            self.namespace.moved(source, old_parent, new_parent, new_name, new_prefix)
            self.files.moved(old_prefix, new_prefix, prefix=True)

        await self.writeback.rename_prefix(old_prefix, new_prefix, moved)

    def check_invariants(self) -> None:
        self.inodes.check_invariants()
        self.blocks.check_invariants()
        assert self.inodes.get(ROOT_INO).kind == Kind.DIR
        for dirty in self.staging.files():
            assert dirty.data_path.exists(), f"dirty file {dirty.key} lost its staging data"
