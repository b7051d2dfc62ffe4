"""CosFilesystem: the filesystem core, free of FUSE. Plain Python types in and out.

The adapter (`fuse_ops`) turns kernel requests into these calls and exceptions into errnos.
Background work (read-ahead) runs in a nursery the mount lifecycle owns and passes in.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import trio

from cosfs.blocks import BlockCache, ObjectRef
from cosfs.config import FsConfig
from cosfs.cos.store import ObjectStore
from cosfs.errors import CosfsError, IsADirectory, NotADirectory, ReadOnly, Stale, Unsupported
from cosfs.handles import DirHandle, FileHandle, HandleTable
from cosfs.inodes import ROOT_INO, Attr, Inode, InodeTable, Kind
from cosfs.namespace import Namespace, root_attr
from cosfs.prefetch import ReadAhead

log = logging.getLogger(__name__)

# readdir reply: (name, attr, next offset) -> whether the kernel took the entry
ReaddirReply = Callable[[str, Attr, int], bool]


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


class CosFilesystem:
    """The mount's core: namespace, block cache, handles."""

    def __init__(self, store: ObjectStore, config: FsConfig, cache_dir: Path, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.config = config
        self.inodes = InodeTable(config.prefix, root_attr(config))
        self.namespace = Namespace(store, self.inodes, config, clock)
        self.blocks = BlockCache(store, cache_dir, config.block_size_bytes, config.cache_size_bytes,
                                 config.parallel_fetches, memory_bytes=config.memory_budget_bytes // 2)
        self.files: HandleTable[FileHandle] = HandleTable()
        self.dirs: HandleTable[DirHandle] = HandleTable()
        self._nursery: trio.Nursery | None = None

    def start(self, nursery: trio.Nursery) -> None:
        """Attach the nursery for background work and load the persistent block cache."""
        self._nursery = nursery
        self.blocks.load()

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
        if inode.expires_at_s <= self.namespace.now():
            inode = await self.namespace.refresh(inode)
        return inode.attr

    async def readlink(self, ino: int) -> str:
        inode = self.inodes.get(ino)
        if inode.kind != Kind.SYMLINK:
            raise Unsupported(f"{inode.key} is not a symbolic link")
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
        for index in range(start_id, len(handle.entries)):
            entry = handle.entries[index]
            inode = self.namespace.inode_for_entry(directory, entry)
            if not reply(entry.name, inode.attr, index + 1):
                self.inodes.drop_if_unused(inode.ino)
                return
            self.inodes.remember(inode.ino)

    def releasedir(self, fh: int) -> None:
        self.dirs.pop(fh)

    # --- files ---------------------------------------------------------------------------

    async def open(self, ino: int, write: bool) -> OpenResult:
        if write:
            raise ReadOnly("this mount does not write yet")
        inode = self.inodes.get(ino)
        if inode.kind == Kind.DIR:
            raise IsADirectory(inode.key)
        if not inode.meta_complete or inode.expires_at_s <= self.namespace.now():
            inode = await self.namespace.refresh(inode)
        assert inode.etag is not None
        ref = ObjectRef(inode.key, inode.etag, inode.attr.size_bytes)
        keep_cache = inode.page_cache_etag == inode.etag
        inode.page_cache_etag = inode.etag
        self.inodes.opened(inode.ino)
        readahead = ReadAhead(self.config.block_size_bytes, self.config.max_readahead_bytes)
        return OpenResult(self.files.add(FileHandle(inode.ino, ref, readahead)), keep_cache)

    async def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        handle = self.files.get(fh)
        ref = handle.ref
        advice = handle.readahead.advise(offset, size, ref.size_bytes)
        if advice is not None:
            self._start_readahead(ref, *advice)
        try:
            return await self.blocks.read(ref, offset, size)
        except Stale:
            # The version this handle was reading is gone: refresh the inode for later opens.
            inode = self.inodes.get(handle.ino)
            inode.expires_at_s = 0.0
            raise

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

    def release(self, fh: int) -> None:
        handle = self.files.pop(fh)
        self.inodes.closed(handle.ino)

    # --- changes: refused until the write path exists -------------------------------------

    def refuse_change(self, what: str) -> None:
        raise ReadOnly(f"{what}: this mount is read-only")

    def check_invariants(self) -> None:
        self.inodes.check_invariants()
        self.blocks.check_invariants()
        assert self.inodes.get(ROOT_INO).kind == Kind.DIR
