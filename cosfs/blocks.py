"""BlockCache: clean object data in fixed-size blocks keyed by (key, ETag, index).

Two tiers. Recently fetched blocks stay in memory (bounded by `memory_bytes`) so a sequential
reader is served without touching the disk; every block is also written to local disk under
`<cache_dir>/blocks/<hh>/<version-hash>.<index>` by a worker thread, and the disk tier is
bounded by `capacity_bytes` (least recently used evicted first). The version hash is SHA-256 of
key and ETag (of key, size and Last-Modified for a server that sends no ETag), so a replaced
object can never be served from old blocks, and the disk tier survives remounts: a block is
valid exactly when the object still has that ETag. Block files are written under a temporary
name and renamed, so a crash never leaves a torn block; they are private to the mount's user
(files 0600, directories 0700, whatever the umask). A block file that vanishes or shrinks
under a running mount (a cleaner, another process) is dropped from the index and fetched
again when next opened or read short (one already open reads on: its bytes never change).

Fetches are single-flight: concurrent readers of a missing block wait for one GET. A run of
missing blocks is fetched by one ranged GET with If-Match and split into blocks as it streams.

Admission: a fetch may keep its blocks in memory only (`keep_on_disk=False`): the read-ahead
of a long sequential stream, read once, would otherwise cost a disk write per byte and evict
the blocks random readers come back to. Drop-behind: a sequential reader that has finished a
block moves it to the cold end of the memory tier, so the blocks read ahead of it stay.

Pieces: a random reader (one that seeks, `sparse=True`) of an absent block gets the aligned
PIECE_BYTES around its read, not the whole block: 2,000 random 4 KiB reads of an 8 GiB object
would otherwise fetch 2 GiB. Pieces are kept in memory only, in a pool of their own. A block
whose pieces were fetched PIECE_FETCHES_BEFORE_BLOCK times is fetched whole at its next miss,
and so is every block of an object once a quarter of its random misses (of DENSE_MIN_MISSES
or more) came back to a block it had pieces of: a random reader that keeps coming back (a
database, an object read all over) ends with whole blocks on disk as before, after a few
hundred pieces at most.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import functools
import hashlib
import logging
import os
import resource
from pathlib import Path

import cachetools
import trio

from cosfs.cos.store import ObjectMeta, ObjectStore
from cosfs.durable import private_dir, private_file
from cosfs.errors import IntegrityError, ProtocolError, Stale

log = logging.getLogger(__name__)

Ident = tuple[str, int]  # (version hash, block index)

# Open block files kept for reads from the disk tier (an open per 4 KiB random read costs
# more than the read): a quarter of the process's descriptor limit, within these bounds.
MIN_OPEN_BLOCK_FILES = 64
MAX_OPEN_BLOCK_FILES = 4096

PIECE_BYTES = 16 * 1024
PIECE_FETCHES_BEFORE_BLOCK = 2
DENSE_MIN_MISSES = 32
DENSE_RETURN_SHARE = 0.25
# Blocks whose piece fetches are counted (the least recently counted are forgotten).
COUNTED_BLOCKS = 1 << 16


def open_block_files_budget() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_OPEN_BLOCK_FILES
    return max(MIN_OPEN_BLOCK_FILES, min(MAX_OPEN_BLOCK_FILES, soft // 4))


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """One version of an object: the unit the cache keys on. The ETag names the version; a
    server that sends none leaves size and Last-Modified (`last_modified_s`, 0 if unknown) as
    the best name there is, since an empty ETag alone would name every version alike."""

    key: str
    etag: str
    size_bytes: int
    last_modified_s: float = 0.0

    @functools.cached_property
    def version_hash(self) -> str:
        # Cached: every read of every block names its version by this hash.
        version = self.etag or f"\0{self.size_bytes}\0{self.last_modified_s!r}"
        return hashlib.sha256(f"{self.key}\0{version}".encode("utf-8", "surrogateescape")).hexdigest()[:40]


def version_problem(ref: ObjectRef, meta: ObjectMeta) -> str | None:
    """Why the answer `meta` to a read of `ref` is of another version, or None. An ETag other
    than the one asked for (a server that ignored If-Match) is one; without an ETag to ask
    for, another size or Last-Modified is."""
    if ref.etag:
        if meta.etag and meta.etag != ref.etag:
            return f"ETag {meta.etag!r} instead of {ref.etag!r}"
        return None
    if meta.size_bytes != ref.size_bytes:
        return f"size {meta.size_bytes} instead of {ref.size_bytes}"
    if ref.last_modified_s and meta.last_modified_s and meta.last_modified_s != ref.last_modified_s:
        return f"Last-Modified {meta.last_modified_s} instead of {ref.last_modified_s}"
    return None


def check_version(ref: ObjectRef, meta: ObjectMeta) -> None:
    """Raise Stale when the answer to a read of `ref` is of another version."""
    problem = version_problem(ref, meta)
    if problem:
        raise Stale(f"{ref.key!r} changed while open: the server answered {problem}")


class BlockCache:
    """Owner of cached blocks, in memory and on disk, and of their LRU orders.

    Invariants:
    - `_disk` maps ident -> size for exactly the block files written (one removed by someone
      else is dropped when a read finds it gone); `_disk_bytes` is their sum and stays <=
      capacity after every insertion.
    - `_hot` maps ident -> block bytes; `_hot_bytes` is their sum and stays <= memory_bytes.
    - `_open` holds at most `_open_limit` descriptors (open_block_files_budget), each of a
      block in `_disk`.
    - A block is readable when it is in `_hot` or `_disk`. `_fetching` maps blocks being
      downloaded to the Event set when they land or the fetch fails (then `_failures` holds
      the error for the waiters).
    - `_pieces` maps (version hash, piece index) -> bytes of absent-or-present blocks' pieces
      (PIECE_BYTES each, the last one of an object shorter); `_pieces_bytes` is their sum and
      stays <= `_pieces_limit`. A piece is never served when its block is present (the block
      is read first), and is fetched by at most one GET at a time (`_piece_fetching`).
    - Disk and memory are written only from the trio thread; worker threads only write and
      rename the temporary block file they were given.
    """

    def __init__(self, store: ObjectStore, cache_dir: Path, block_size_bytes: int, capacity_bytes: int,
                 parallel_fetches: int, memory_bytes: int = 64 * 1024 * 1024, keep_free_bytes: int = 0) -> None:
        self._store = store
        self._dir = cache_dir / "blocks"
        self._block = block_size_bytes
        self._capacity = capacity_bytes
        # ensure_diskfree: free bytes the disk tier leaves on its filesystem; blocks are
        # evicted first, and a block that still does not fit is kept in memory only.
        self._keep_free = keep_free_bytes
        self._short_of_space = False  # logged once per shortage, not per block
        self._memory = max(memory_bytes, 2 * block_size_bytes)
        self._disk: collections.OrderedDict[Ident, int] = collections.OrderedDict()
        self._disk_bytes = 0
        self._reserved_bytes = 0  # blocks being written to the disk tier (counted against the capacity)
        self._hot: collections.OrderedDict[Ident, bytearray] = collections.OrderedDict()
        self._hot_bytes = 0
        self._open: collections.OrderedDict[Ident, int] = collections.OrderedDict()  # ident -> fd
        self._open_limit = open_block_files_budget()
        self._fetching: dict[Ident, trio.Event] = {}
        self._failures: dict[Ident, BaseException] = {}
        self._pieces: collections.OrderedDict[Ident, bytes] = collections.OrderedDict()
        self._pieces_bytes = 0
        self._pieces_limit = max(self._memory // 8, 4 * PIECE_BYTES)
        self._piece_fetching: dict[Ident, trio.Event] = {}
        self._piece_fetches: cachetools.LRUCache[Ident, int] = cachetools.LRUCache(COUNTED_BLOCKS)
        # version hash -> [random misses, of them misses of a block with pieces fetched]
        self._random_misses: cachetools.LRUCache[str, list[int]] = cachetools.LRUCache(1024)
        self.limiter = trio.CapacityLimiter(parallel_fetches)
        self.hits = 0
        self.misses = 0
        self.fetched_bytes = 0

    @property
    def block_size_bytes(self) -> int:
        return self._block

    @property
    def memory_bytes(self) -> int:
        return self._memory

    @property
    def used_bytes(self) -> int:
        return self._disk_bytes

    def load(self) -> None:
        """Index the blocks left by an earlier mount (oldest first), drop temp files, and make
        every block file and directory private (whatever modes they were left with)."""
        self._dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_dir(self._dir)
        found: list[tuple[float, Ident, int]] = []
        for sub in self._dir.iterdir():
            if not sub.is_dir():
                continue
            private_dir(sub)
            for path in sub.iterdir():
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
                    continue
                version, _, index = path.name.partition(".")
                if not index.isdigit():
                    continue
                try:
                    st = path.stat()
                    if st.st_mode & 0o077:
                        path.chmod(0o600)
                except FileNotFoundError:  # removed meanwhile by someone else
                    continue
                found.append((st.st_atime, (version, int(index)), st.st_size))
        found.sort()
        for _, ident, size in found:
            self._disk[ident] = size
            self._disk_bytes += size
        self._evict_disk(0)
        if found:
            log.info("block cache: %d blocks, %d bytes from an earlier mount", len(self._disk), self._disk_bytes)

    def close(self) -> None:
        """Close the block files kept open (the index and the files stay)."""
        while self._open:
            os.close(self._open.popitem()[1])

    def _path(self, ident: Ident) -> Path:
        return Path(self._file(ident))

    def _file(self, ident: Ident) -> str:
        return f"{self._dir}/{ident[0][:2]}/{ident[0]}.{ident[1]}"

    def block_range(self, ref: ObjectRef, index: int) -> tuple[int, int]:
        start = index * self._block
        return start, min(start + self._block, ref.size_bytes)

    def _present(self, ident: Ident) -> bool:
        return ident in self._hot or ident in self._disk

    def missing(self, ref: ObjectRef, first: int, last: int) -> list[int]:
        """Indexes in [first, last] neither cached nor being fetched."""
        version = ref.version_hash
        return [i for i in range(first, last + 1)
                if not self._present((version, i)) and (version, i) not in self._fetching]

    async def read(self, ref: ObjectRef, offset: int, size: int, *, drop_behind: bool = False,
                   keep_on_disk: bool = True, sparse: bool = False) -> bytes | memoryview:
        """Bytes [offset, offset+size) of the object version, fetching missing blocks
        (a read-only view when one cached block holds them all). `drop_behind`: the reader
        is sequential, so a block it has read to its end goes to the cold end of memory;
        `keep_on_disk`: blocks it fetches go to the disk tier too; `sparse`: the reader
        seeks, so an absent block is read from pieces (see the module's docstring)."""
        piece = self.cached(ref, offset, size, drop_behind)
        if piece is not None:
            return piece
        end = min(offset + size, ref.size_bytes)
        first, last = offset // self._block, (end - 1) // self._block
        version = ref.version_hash
        if (sparse and first == last and not self._present((version, first))
                and (version, first) not in self._fetching and self._pieces_for((version, first))):
            from_pieces = await self._read_pieces(ref, offset, end)
            if from_pieces is not None:
                return from_pieces
        absent = self.missing(ref, first, last)
        if absent:
            self.misses += len(absent)
            await self.fetch_run(ref, absent[0], absent[-1], keep_on_disk=keep_on_disk)
        missed = set(absent)
        pieces = []
        for index in range(first, last + 1):
            ident = (version, index)
            await self._wait_for(ref, ident, keep_on_disk)
            while (piece := self._hit(ref, ident, offset, end, drop_behind)) is None:
                self.misses += 1  # its file vanished: no longer present, so fetched again
                missed.add(index)
                await self._wait_for(ref, ident, keep_on_disk)
            pieces.append(piece)
        self.hits += (last - first + 1) - len(missed)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def cached(self, ref: ObjectRef, offset: int, size: int, drop_behind: bool = False) -> bytes | memoryview | None:
        """The common hit, at once: [offset, offset+size) when one present block holds it
        (b"" past the end), else None (a block file that vanished is dropped, and `read`
        fetches it again)."""
        end = min(offset + size, ref.size_bytes)
        if offset >= end:
            return b""
        index = offset // self._block
        ident = (ref.version_hash, index)
        if (end - 1) // self._block != index or not (ident in self._hot or ident in self._disk):
            return None
        piece = self._hit(ref, ident, offset, end, drop_behind)
        if piece is not None:
            self.hits += 1
        return piece

    def _pieces_for(self, ident: Ident) -> bool:
        """A seeking reader missed block `ident`: whether to read it from pieces (else whole).
        Counts the miss for the object's density."""
        fetched = self._piece_fetches.get(ident, 0)
        counts = self._random_misses.get(ident[0])
        if counts is None:
            counts = self._random_misses[ident[0]] = [0, 0]
        counts[0] += 1
        counts[1] += fetched > 0
        dense = counts[0] >= DENSE_MIN_MISSES and counts[1] >= DENSE_RETURN_SHARE * counts[0]
        return not dense and fetched < PIECE_FETCHES_BEFORE_BLOCK

    async def _read_pieces(self, ref: ObjectRef, offset: int, end: int) -> bytes | None:
        """[offset, end) of one absent block from its pieces, fetching the missing ones with one
        ranged GET; None when they went meanwhile (the caller then reads the block)."""
        version = ref.version_hash
        lo, hi = offset // PIECE_BYTES, (end - 1) // PIECE_BYTES
        idents = [(version, i) for i in range(lo, hi + 1)]
        while pending := [self._piece_fetching[i] for i in idents if i in self._piece_fetching]:
            await pending[0].wait()
        absent = [i for i in idents if i not in self._pieces]
        if absent:
            self.misses += 1
            block = (version, offset // self._block)
            self._piece_fetches[block] = self._piece_fetches.get(block, 0) + 1
            await self._fetch_pieces(ref, absent[0][1], absent[-1][1])
        else:
            self.hits += 1
        pieces = []
        for ident in idents:
            piece = self._pieces.get(ident)
            if piece is None:
                return None
            self._pieces.move_to_end(ident)
            pieces.append(piece)
        start = lo * PIECE_BYTES
        return b"".join(pieces)[offset - start:end - start]

    async def _fetch_pieces(self, ref: ObjectRef, first: int, last: int) -> None:
        """Fetch pieces [first, last] with one ranged GET into the pieces pool."""
        version = ref.version_hash
        start, end = first * PIECE_BYTES, min((last + 1) * PIECE_BYTES, ref.size_bytes)
        events = {}
        for i in range(first, last + 1):
            events[i] = self._piece_fetching[(version, i)] = trio.Event()
        try:
            async with self.limiter:
                async with self._store.open_object(ref.key, byte_range=(start, end - 1),
                                                  if_match=ref.etag or None) as (meta, chunks):
                    check_version(ref, meta)
                    body = bytearray()
                    async for chunk in chunks:
                        body += chunk
                        if len(body) > end - start:
                            raise ProtocolError(f"long body for {ref.key}: more than bytes {start}..{end - 1}")
            if len(body) != end - start:
                raise ProtocolError(f"short body for {ref.key}: {len(body)} of bytes {start}..{end - 1}")
            self.fetched_bytes += len(body)
            for i in range(first, last + 1):
                piece = bytes(body[(i - first) * PIECE_BYTES:(i - first + 1) * PIECE_BYTES])
                old = self._pieces.pop((version, i), None)
                self._pieces_bytes += len(piece) - (len(old) if old is not None else 0)
                self._pieces[(version, i)] = piece
            while self._pieces_bytes > self._pieces_limit:
                self._pieces_bytes -= len(self._pieces.popitem(last=False)[1])
        finally:
            for i in range(first, last + 1):
                self._piece_fetching.pop((version, i), None)
                events[i].set()

    def _hit(self, ref: ObjectRef, ident: Ident, offset: int, end: int, drop_behind: bool) -> bytes | memoryview | None:
        """The part of [offset, end) in a present block (None: its file vanished)."""
        start, stop = self.block_range(ref, ident[1])
        lo, hi = max(offset, start) - start, min(end, stop) - start
        piece = self._read_block(ident, lo, hi)
        if drop_behind and piece is not None and hi == stop - start and ident in self._hot:
            self._hot.move_to_end(ident, last=False)
        return piece

    async def _wait_for(self, ref: ObjectRef, ident: Ident, keep_on_disk: bool = True) -> None:
        while not self._present(ident):
            pending = self._fetching.get(ident)
            if pending is None:
                failure = self._failures.pop(ident, None)
                if failure is not None:
                    raise failure
                # Evicted between landing and this read, or never fetched: fetch it alone.
                await self.fetch_run(ref, ident[1], ident[1], keep_on_disk=keep_on_disk)
                continue
            await pending.wait()

    def _read_block(self, ident: Ident, lo: int, hi: int) -> bytes | memoryview | None:
        """Bytes [lo, hi) of a present block, or None when its file has vanished or shrunk
        (then it is no longer present, and the caller fetches it again)."""
        data = self._hot.get(ident)
        if data is not None:
            self._hot.move_to_end(ident)
            if ident in self._disk:
                self._disk.move_to_end(ident)
            # A read-only view: no copy, and it keeps the block alive if it is evicted meanwhile.
            return memoryview(data).toreadonly()[lo:hi]
        self._disk.move_to_end(ident)
        # Block files are small and usually in the page cache: a pread costs less than a
        # thread hand-off, so it is done inline, on a descriptor kept open. A file removed by
        # someone else while open still reads right (its bytes never change); it is found
        # gone when next opened.
        fd = self._open.get(ident)
        if fd is None:
            try:
                fd = os.open(self._file(ident), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                log.warning("block cache: block file %s vanished; fetching it again", self._path(ident))
                self._forget_disk(ident)
                return None
            self._open[ident] = fd
            if len(self._open) > self._open_limit:
                os.close(self._open.popitem(last=False)[1])
        else:
            self._open.move_to_end(ident)
        piece = os.pread(fd, hi - lo, lo)
        if len(piece) != hi - lo:
            log.warning("block cache: block file %s is shorter than it was written; fetching it again",
                        self._path(ident))
            self._forget_disk(ident)
            return None
        return piece

    def _drop(self, ident: Ident) -> None:
        """Drop a block from both tiers."""
        data = self._hot.pop(ident, None)
        if data is not None:
            self._hot_bytes -= len(data)
        self._forget_disk(ident)

    def _forget_disk(self, ident: Ident) -> None:
        """Drop a block from the disk tier, index and file (a missing file is fine)."""
        size = self._disk.pop(ident, None)
        if size is not None:
            self._disk_bytes -= size
        fd = self._open.pop(ident, None)
        if fd is not None:
            os.close(fd)
        self._path(ident).unlink(missing_ok=True)

    async def fetch_run(self, ref: ObjectRef, first: int, last: int, *, keep_on_disk: bool = True) -> None:
        """Fetch the contiguous run of absent blocks starting at the first absent one in
        [first, last] with one ranged GET (kept in memory only unless `keep_on_disk`).
        Failures are raised here and handed to readers waiting on the same blocks."""
        wanted = self.missing(ref, first, last)
        if not wanted:
            return
        run = [wanted[0]]
        for i in wanted[1:]:
            if i != run[-1] + 1:
                break
            run.append(i)
        version = ref.version_hash
        events = {}
        for i in run:
            self._failures.pop((version, i), None)
            events[i] = self._fetching[(version, i)] = trio.Event()
        try:
            async with self.limiter:
                await self._download(ref, run, events, keep_on_disk)
        except BaseException as exc:
            if isinstance(exc, (ProtocolError, IntegrityError)):
                # The body broke the store's contract: blocks it gave already are not trusted.
                for i in run:
                    self._drop((version, i))
            for i in run:
                if not self._present((version, i)) and isinstance(exc, Exception):
                    self._failures[(version, i)] = exc
            raise
        finally:
            for i in run:
                self._fetching.pop((version, i), None)
                events[i].set()

    async def _download(self, ref: ObjectRef, run: list[int], events: dict[int, trio.Event],
                        keep_on_disk: bool) -> None:
        """Stream the run into block buffers; each complete block is served from memory at
        once and written to disk by a worker thread while the next one arrives."""
        start, _ = self.block_range(ref, run[0])
        _, end = self.block_range(ref, run[-1])
        version = ref.version_hash
        index = run[0]
        block: bytearray | None = None
        filled = 0
        async with self._store.open_object(ref.key, byte_range=(start, end - 1),
                                          if_match=ref.etag or None) as (meta, chunks):
            check_version(ref, meta)
            async for chunk in chunks:
                view = memoryview(chunk)
                while view and index <= run[-1]:
                    if block is None:
                        lo, hi = self.block_range(ref, index)
                        if isinstance(chunk, bytearray) and len(view) == len(chunk) == hi - lo:
                            # A whole block in a buffer the store handed over: kept, not copied.
                            block, filled, view = chunk, hi - lo, view[len(view):]
                        else:
                            block = bytearray(hi - lo)
                            filled = 0
                    take = min(len(view), len(block) - filled)
                    block[filled:filled + take] = view[:take]
                    filled += take
                    view = view[take:]
                    if filled == len(block):
                        # The buffer is never written again: memory and disk tiers share it.
                        data, block = block, None
                        self._land_hot((version, index), data)
                        events[index].set()
                        if keep_on_disk:
                            await self._write_disk((version, index), data)
                        index += 1
                if view:
                    raise ProtocolError(f"long body for {ref.key}: more than blocks {run[0]}..{run[-1]}")
        if index <= run[-1]:
            raise ProtocolError(f"short body for {ref.key}: blocks {index}..{run[-1]} missing")

    def _land_hot(self, ident: Ident, data: bytearray) -> None:
        self.fetched_bytes += len(data)
        self._hot[ident] = data
        self._hot_bytes += len(data)
        while self._hot_bytes > self._memory and len(self._hot) > 1:
            _, old = self._hot.popitem(last=False)
            self._hot_bytes -= len(old)

    async def _write_disk(self, ident: Ident, data: bytearray) -> None:
        """Persist a block; a full disk only costs the disk copy (the block stays readable
        from memory until evicted), other local errors are logged the same way."""
        if not self._evict_disk(len(data)):
            if not self._short_of_space:
                log.warning("cache disk under %s has less than ensure_diskfree (%d MiB) free; serving new blocks "
                            "from memory only", self._dir, self._keep_free >> 20)
            self._short_of_space = True
            return
        self._short_of_space = False
        # Room is taken before the write is awaited: concurrent writes cannot all evict for
        # themselves and then all land past the capacity.
        self._reserved_bytes += len(data)
        try:
            await trio.to_thread.run_sync(_write_block_file, self._path(ident), data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                log.warning("block cache disk full under %s; serving from memory only", self._dir)
            else:
                log.warning("block cache write failed: %s", exc)
            return
        finally:
            self._reserved_bytes -= len(data)
        self._disk[ident] = len(data)
        self._disk_bytes += len(data)

    def make_room(self, incoming_bytes: int) -> bool:
        """For staged writes (ensure_diskfree): evict cached blocks until `incoming_bytes` more
        leave ensure_diskfree free on the cache disk; False when even an empty cache cannot."""
        return self._evict_disk(incoming_bytes, cached=False)

    def _evict_disk(self, incoming: int, *, cached: bool = True) -> bool:
        """Make room for `incoming` bytes, least recently used first: within the capacity
        when they are a cached block (`cached`), and above ensure_diskfree; False when that
        cannot be done."""
        counted = incoming if cached else 0
        while self._disk and self._disk_bytes + self._reserved_bytes + counted > self._capacity:
            self._forget_disk(next(iter(self._disk)))
        if self._disk_bytes + self._reserved_bytes + counted > self._capacity:
            return False
        if not self._keep_free:
            return True
        free = self._free_bytes()
        while self._disk and free - incoming < self._keep_free:
            free += self._disk[next(iter(self._disk))]
            self._forget_disk(next(iter(self._disk)))
        return free - incoming >= self._keep_free

    def _free_bytes(self) -> int:
        stats = os.statvfs(self._dir)
        return stats.f_bavail * stats.f_frsize

    def check_invariants(self) -> None:
        assert self._disk_bytes == sum(self._disk.values())
        assert self._disk_bytes + self._reserved_bytes <= self._capacity
        assert self._hot_bytes == sum(len(b) for b in self._hot.values())
        assert self._hot_bytes <= self._memory or len(self._hot) <= 1
        assert len(self._open) <= self._open_limit and all(ident in self._disk for ident in self._open)
        assert self._pieces_bytes == sum(len(b) for b in self._pieces.values()) <= self._pieces_limit


def _write_block_file(path: Path, data: bytearray) -> None:
    """Worker thread: write a block under a temporary name and rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        if not path.parent.is_dir():
            private_dir(path.parent)
        with open(private_file(tmp), "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

