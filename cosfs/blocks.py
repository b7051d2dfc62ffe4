"""BlockCache: clean object data on local disk, in fixed-size blocks keyed by (key, ETag, index).

Blocks are files under `<cache_dir>/blocks/<hh>/<version-hash>.<index>`, where the version hash
is SHA-256 of key and ETag, so a replaced object can never be served from old blocks and the
cache survives remounts (a block is valid exactly when the object still has that ETag). Block
files are written to a temporary name and renamed, so a crash never leaves a torn block.

Fetches are single-flight: concurrent readers of a missing block wait for one GET. A run of
missing blocks is fetched by one ranged GET with If-Match, split into blocks as it streams in.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import trio

from cosfs.cos.store import ObjectStore
from cosfs.errors import CacheFull, IntegrityError, ProtocolError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """One version of an object: the unit the cache keys on."""

    key: str
    etag: str
    size_bytes: int

    @property
    def version_hash(self) -> str:
        return hashlib.sha256(f"{self.key}\0{self.etag}".encode("utf-8", "surrogateescape")).hexdigest()[:40]


class BlockCache:
    """Owner of the block files and their LRU order.

    Invariants: `_lru` maps (version hash, index) -> size for exactly the block files present
    under the blocks directory; `_bytes` is the sum of those sizes and is kept at or below the
    capacity after every insertion (least recently used evicted first); `_fetching` maps the
    blocks currently being downloaded to the Event set when they land (or the fetch failed).
    """

    def __init__(self, store: ObjectStore, cache_dir: Path, block_size_bytes: int, capacity_bytes: int,
                 parallel_fetches: int) -> None:
        self._store = store
        self._dir = cache_dir / "blocks"
        self._block = block_size_bytes
        self._capacity = capacity_bytes
        self._lru: collections.OrderedDict[tuple[str, int], int] = collections.OrderedDict()
        self._bytes = 0
        self._fetching: dict[tuple[str, int], trio.Event] = {}
        self._failures: dict[tuple[str, int], BaseException] = {}
        self.limiter = trio.CapacityLimiter(parallel_fetches)
        self.hits = 0
        self.misses = 0
        self.fetched_bytes = 0

    @property
    def block_size_bytes(self) -> int:
        return self._block

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def load(self) -> None:
        """Index the blocks left by an earlier mount (oldest first) and drop temp files."""
        self._dir.mkdir(parents=True, exist_ok=True)
        found: list[tuple[float, tuple[str, int], int, Path]] = []
        for sub in self._dir.iterdir():
            if not sub.is_dir():
                continue
            for path in sub.iterdir():
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
                    continue
                version, _, index = path.name.partition(".")
                if not index.isdigit():
                    continue
                st = path.stat()
                found.append((st.st_atime, (version, int(index)), st.st_size, path))
        found.sort()
        for _, ident, size, _ in found:
            self._lru[ident] = size
            self._bytes += size
        self._evict(0)
        if found:
            log.info("block cache: %d blocks, %d bytes from an earlier mount", len(self._lru), self._bytes)

    def _path(self, ident: tuple[str, int]) -> Path:
        return self._dir / ident[0][:2] / f"{ident[0]}.{ident[1]}"

    def block_range(self, ref: ObjectRef, index: int) -> tuple[int, int]:
        start = index * self._block
        return start, min(start + self._block, ref.size_bytes)

    def has(self, ref: ObjectRef, index: int) -> bool:
        return (ref.version_hash, index) in self._lru

    def missing(self, ref: ObjectRef, first: int, last: int) -> list[int]:
        """Indexes in [first, last] neither cached nor being fetched."""
        version = ref.version_hash
        return [i for i in range(first, last + 1)
                if (version, i) not in self._lru and (version, i) not in self._fetching]

    async def read(self, ref: ObjectRef, offset: int, size: int) -> bytes:
        """Bytes [offset, offset+size) of the object version, fetching missing blocks."""
        end = min(offset + size, ref.size_bytes)
        if offset >= end:
            return b""
        first, last = offset // self._block, (end - 1) // self._block
        version = ref.version_hash
        absent = self.missing(ref, first, last)
        if absent:
            self.misses += len(absent)
            await self.fetch_run(ref, absent[0], absent[-1])
        pieces = []
        for index in range(first, last + 1):
            ident = (version, index)
            await self._wait_for(ref, ident)
            start, _ = self.block_range(ref, index)
            lo = max(offset, start) - start
            hi = min(end, start + self._block) - start
            pieces.append(self._read_block(ident, lo, hi - lo))
        self.hits += (last - first + 1) - len(absent)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def _wait_for(self, ref: ObjectRef, ident: tuple[str, int]) -> None:
        while ident not in self._lru:
            pending = self._fetching.get(ident)
            if pending is None:
                failure = self._failures.pop(ident, None)
                if failure is not None:
                    raise failure
                # Evicted between landing and this read, or never fetched: fetch it alone.
                await self.fetch_run(ref, ident[1], ident[1])
                continue
            await pending.wait()
        self._lru.move_to_end(ident)

    def _read_block(self, ident: tuple[str, int], offset: int, size: int) -> bytes:
        # Block files are small and usually in the page cache: a pread costs less than a
        # thread hand-off, so it is done inline.
        fd = os.open(self._path(ident), os.O_RDONLY)
        try:
            data = os.pread(fd, size, offset)
        finally:
            os.close(fd)
        if len(data) != size:
            raise IntegrityError(f"cached block {ident} is shorter than expected")
        return data

    async def fetch_run(self, ref: ObjectRef, first: int, last: int) -> None:
        """Fetch blocks first..last (those not present or in flight) with one ranged GET,
        landing each block as soon as its bytes have arrived. Failures are raised here and
        handed to readers waiting on the same blocks."""
        version = ref.version_hash
        wanted = [i for i in range(first, last + 1)
                  if (version, i) not in self._lru and (version, i) not in self._fetching]
        if not wanted:
            return
        # Only fetch the contiguous run starting at the first wanted block.
        run = [wanted[0]]
        for i in wanted[1:]:
            if i != run[-1] + 1:
                break
            run.append(i)
        events = {}
        for i in run:
            self._failures.pop((version, i), None)
            events[i] = self._fetching[(version, i)] = trio.Event()
        try:
            async with self.limiter:
                await self._download(ref, run, events)
        except BaseException as exc:
            for i in run:
                if (version, i) not in self._lru and isinstance(exc, Exception):
                    self._failures[(version, i)] = exc
            raise
        finally:
            for i in run:
                self._fetching.pop((version, i), None)
                events[i].set()

    async def _download(self, ref: ObjectRef, run: list[int], events: dict[int, trio.Event]) -> None:
        start, _ = self.block_range(ref, run[0])
        _, end = self.block_range(ref, run[-1])
        version = ref.version_hash
        index = run[0]
        buffer = bytearray()
        async with self._store.open_object(ref.key, byte_range=(start, end - 1), if_match=ref.etag) as (_, chunks):
            async for chunk in chunks:
                buffer += chunk
                while index <= run[-1]:
                    lo, hi = self.block_range(ref, index)
                    if len(buffer) < hi - lo:
                        break
                    await self._store_block((version, index), bytes(buffer[: hi - lo]))
                    del buffer[: hi - lo]
                    self.fetched_bytes += hi - lo
                    events[index].set()
                    index += 1
        if index <= run[-1]:
            raise ProtocolError(f"short body for {ref.key}: blocks {index}..{run[-1]} missing")

    async def _store_block(self, ident: tuple[str, int], data: bytes) -> None:
        path = self._path(ident)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(exist_ok=True)
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == 28:  # ENOSPC
                raise CacheFull(f"cache disk full under {self._dir}") from exc
            raise
        self._evict(len(data))
        self._lru[ident] = len(data)
        self._bytes += len(data)

    def _evict(self, incoming: int) -> None:
        while self._lru and self._bytes + incoming > self._capacity:
            ident, size = self._lru.popitem(last=False)
            self._bytes -= size
            try:
                self._path(ident).unlink()
            except FileNotFoundError:
                pass

    def check_invariants(self) -> None:
        assert self._bytes == sum(self._lru.values())
        assert self._bytes <= self._capacity
