"""Sequential-read detection, a read-ahead window that grows while reads stay sequential,
and the background fetches it asks for."""

from __future__ import annotations

import logging

import trio

from cosfs.blocks import BlockCache, ObjectRef
from cosfs.errors import CosfsError

log = logging.getLogger(__name__)


class ReadAhead:
    """Per open file. After each read, `advise` names the blocks worth fetching ahead.

    A read is sequential when it starts at or just past the furthest byte read so far (the
    high-water mark), or, once a window is open, anywhere within that window ahead of the
    mark or behind it: the kernel's own read-ahead sends its reads concurrently, and they
    arrive out of order by up to its read-ahead size (with read_ahead_kb at 16 MiB, a stream
    seen as seeks would restart its window and its admission count every few MiB). The window
    starts at `initial_blocks`, doubles each time the reader moves into a new block, and
    closes on a seek, so a random reader costs only what it reads (pieces of blocks, see
    cosfs.blocks)."""

    def __init__(self, block_size_bytes: int, max_window_bytes: int, initial_blocks: int = 2) -> None:
        self._block = block_size_bytes
        self._initial = initial_blocks
        self._max_blocks = max(1, max_window_bytes // block_size_bytes)
        self._window = 0
        self._high = 0
        self._start = 0  # where the current sequential stream began
        self._last_block = -1
        self.seeking = False  # the last read was a seek: the reader is random, for now

    @property
    def window_blocks(self) -> int:
        return self._window

    @property
    def high_water_bytes(self) -> int:
        """The furthest byte read so far."""
        return self._high

    @property
    def streamed_bytes(self) -> int:
        """How far the current sequential stream has read."""
        return self._high - self._start

    def advise(self, offset: int, size: int, file_size: int) -> tuple[int, int] | None:
        """(first, last) block indexes to prefetch, or None."""
        end = offset + size
        behind = self._window * self._block
        forward = self._high <= offset <= self._high + self._block * max(1, self._window)
        inside = self._window > 0 and self._high - behind <= offset < self._high
        self.seeking = not (forward or inside)
        if self.seeking:
            self._window = 0
            self._start = offset
            self._high = end
            self._last_block = offset // self._block
            return None
        block = offset // self._block
        if self._window == 0:
            self._window = self._initial
        elif forward and block != self._last_block:
            self._window = min(self._window * 2, self._max_blocks)
        if forward:
            self._last_block = block
        self._high = max(self._high, end)
        last_block_of_file = max(0, (file_size - 1) // self._block)
        first = self._high // self._block
        if first > last_block_of_file:
            return None
        return first, min(first + self._window - 1, last_block_of_file)


# A sequential stream counts as active (sharing the memory tier) this long after its last read.
STREAM_ACTIVE_S = 1.0


class Prefetcher:
    """Fetches advised blocks in the background. Fetches are aligned chunks of
    `fetch_size_bytes` (one ranged GET each, of the chunk's missing blocks): a window that
    slides one block at a time would otherwise cost one request per block. Past
    `stream_disk_bytes` of one sequential stream the blocks stay in memory only (admission:
    see BlockCache), and the window of each is capped so that the streams read in the last
    STREAM_ACTIVE_S share half the memory tier: unread blocks are never evicted to make room
    for other unread blocks. A failed read-ahead is only logged (the read that needs the
    block fetches it again and reports the error)."""

    def __init__(self, blocks: BlockCache, fetch_size_bytes: int, stream_disk_bytes: int) -> None:
        self._blocks = blocks
        self._per_fetch = max(1, fetch_size_bytes // blocks.block_size_bytes)
        self._stream_disk_bytes = stream_disk_bytes
        self._streams: dict[str, float] = {}  # version hash -> when its last read-ahead was advised
        self._nursery: trio.Nursery | None = None

    def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    async def read(self, ref: ObjectRef, readahead: ReadAhead, offset: int, size: int) -> bytes | memoryview:
        """One read of an open file: advise its read-ahead, schedule what it names, and read
        (a sequential reader's own fetches follow the same admission rule)."""
        advice = readahead.advise(offset, size, ref.size_bytes)
        if advice is None:
            piece = self._blocks.cached(ref, offset, size)
            if piece is not None:
                return piece
            return await self._blocks.read(ref, offset, size, sparse=readahead.seeking)
        keep_on_disk = readahead.streamed_bytes < self._stream_disk_bytes
        now = trio.current_time()
        self._streams[ref.version_hash] = now
        if len(self._streams) > 1:
            self._streams = {v: t for v, t in self._streams.items() if t > now - STREAM_ACTIVE_S}
        self.schedule(ref, *advice, keep_on_disk=keep_on_disk, reader=readahead)
        return await self._blocks.read(ref, offset, size, drop_behind=True, keep_on_disk=keep_on_disk)

    def schedule(self, ref: ObjectRef, first: int, last: int, *, keep_on_disk: bool = True,
                 reader: ReadAhead | None = None) -> None:
        if self._nursery is None:
            return
        per_fetch, capped = self._per_fetch, False
        if not keep_on_disk:
            # Blocks in memory only must not push out the unread ones ahead of any reader:
            # the window stays within the stream's share, and its chunks are at most half of
            # it, so that a whole chunk always fits ahead of the reader (8 streams in 64 MiB
            # fetch 4 MiB chunks, not what is left of 8 MiB ones, block by block). The share
            # is also cut in as many chunks as the stream's part of the parallel fetches: over
            # a link that caps each connection (a WAN), a lone stream's window comes in on all
            # of them (32 MiB in 8 GETs of 4 MiB, not 4 of 8 MiB).
            streams = max(1, len(self._streams))
            share = max(1, self._blocks.memory_bytes // (2 * self._blocks.block_size_bytes * streams))
            last = min(last, first + share - 1)
            lanes = max(1, int(self._blocks.limiter.total_tokens) // streams)
            per_fetch, capped = max(1, min(per_fetch, share // 2, -(-share // lanes))), True
        # A window narrower than a chunk (a stream just begun) is fetched as advised.
        whole_chunks = last - first + 1 >= per_fetch
        last_of_object = max(0, (ref.size_bytes - 1) // self._blocks.block_size_bytes)
        chunk = first // per_fetch
        while chunk * per_fetch <= last:
            lo = max(chunk * per_fetch, first)
            end = chunk * per_fetch + per_fetch - 1
            if capped and whole_chunks and lo > first and end > last and end <= last_of_object:
                break  # a chunk past the share waits until it fits whole
            hi = min(end, last_of_object if whole_chunks else last)
            missing = self._blocks.missing(ref, lo, hi)
            runs: list[list[int]] = []
            for index in missing:
                if runs and index == runs[-1][-1] + 1:
                    runs[-1].append(index)
                else:
                    runs.append([index])
            for run in runs:
                self._nursery.start_soon(self._fetch, ref, run[0], run[-1], keep_on_disk, reader)
            chunk += 1

    async def _fetch(self, ref: ObjectRef, first: int, last: int, keep_on_disk: bool,
                     reader: ReadAhead | None) -> None:
        if reader is not None:
            # A task that starts late (a loaded machine) skips the blocks its reader has
            # fetched and read meanwhile: they may be gone from memory already (drop-behind).
            first = max(first, reader.high_water_bytes // self._blocks.block_size_bytes)
            if first > last:
                return
        try:
            await self._blocks.fetch_run(ref, first, last, keep_on_disk=keep_on_disk)
        except CosfsError as exc:
            log.debug("read-ahead of %s blocks %d-%d failed: %s", ref.key, first, last, exc)
        except OSError as exc:
            log.warning("read-ahead of %s failed on local disk: %s", ref.key, exc)
        except Exception:  # a bug: the reader fetches what it needs itself, the mount stays up
            log.exception("read-ahead of %s blocks %d-%d crashed", ref.key, first, last)
