"""Read-ahead in aligned chunks, the disk admission of long streams, and drop-behind."""

from __future__ import annotations

import hashlib
import random

import trio

from cosfs.blocks import BlockCache, ObjectRef
from cosfs.cos.memory import MemoryStore
from cosfs.prefetch import Prefetcher, ReadAhead

BLOCK = 64 * 1024
CHUNK = 8 * BLOCK


async def setup(tmp_path, blocks: int, memory_blocks: int = 64):
    store = MemoryStore(clock=lambda: 1_700_000_000.0)
    data = bytes(range(256)) * (blocks * BLOCK // 256)
    await store.put_object("big", data)
    cache = BlockCache(store, tmp_path, BLOCK, 1 << 30, 8, memory_bytes=memory_blocks * BLOCK)
    cache.load()
    return store, cache, ObjectRef("big", hashlib.md5(data).hexdigest(), len(data)), data


def disk_blocks(tmp_path) -> int:
    return sum(1 for p in (tmp_path / "blocks").glob("*/*") if p.is_file())


async def stream(cache: BlockCache, ref: ObjectRef, prefetcher: Prefetcher, read_size: int) -> bytes:
    ahead = ReadAhead(BLOCK, 16 * BLOCK)
    out = bytearray()
    for offset in range(0, ref.size_bytes, read_size):
        out += await prefetcher.read(ref, ahead, offset, read_size)
    return bytes(out)


async def test_a_sequential_stream_is_fetched_in_whole_chunks(tmp_path):
    store, cache, ref, data = await setup(tmp_path, blocks=128)
    prefetcher = Prefetcher(cache, CHUNK, stream_disk_bytes=1 << 40)
    async with trio.open_nursery() as nursery:
        prefetcher.start(nursery)
        assert await stream(cache, ref, prefetcher, 16 * 1024) == data
    # One GET per block would be 128. The window's growth, and the reader's own fetch when it
    # overtakes a read-ahead task not yet started, cost a few small ones; the rest are whole
    # aligned chunks of 8 blocks (16 of them).
    assert store.counts["open_object"] <= 128 // 4, store.counts["open_object"]
    assert cache.fetched_bytes == len(data)
    assert disk_blocks(tmp_path) == 128


async def test_a_long_stream_stays_in_memory_past_the_admission_limit(tmp_path):
    store, cache, ref, data = await setup(tmp_path, blocks=128, memory_blocks=32)
    prefetcher = Prefetcher(cache, CHUNK, stream_disk_bytes=16 * BLOCK)
    async with trio.open_nursery() as nursery:
        prefetcher.start(nursery)
        assert await stream(cache, ref, prefetcher, 16 * 1024) == data
    # Only the first 16 blocks (and the read-ahead chunk they reached into) went to disk;
    # nothing was fetched twice although the memory tier holds a quarter of the object.
    assert 16 <= disk_blocks(tmp_path) <= 16 + 8 + 8, disk_blocks(tmp_path)
    assert cache.fetched_bytes == len(data)
    cache.check_invariants()


async def test_a_first_small_read_fetches_only_the_start_of_the_window(tmp_path):
    store, cache, ref, data = await setup(tmp_path, blocks=128)
    prefetcher = Prefetcher(cache, CHUNK, stream_disk_bytes=1 << 40)
    async with trio.open_nursery() as nursery:
        prefetcher.start(nursery)
        assert await prefetcher.read(ref, ReadAhead(BLOCK, 16 * BLOCK), 0, 4096) == data[:4096]
    assert cache.fetched_bytes <= 2 * BLOCK  # the initial window, not a whole chunk


async def test_drop_behind_sends_a_finished_block_to_the_cold_end(tmp_path):
    store, cache, ref, data = await setup(tmp_path, blocks=4, memory_blocks=4)
    await cache.fetch_run(ref, 0, 3, keep_on_disk=False)
    await cache.read(ref, 0, BLOCK, drop_behind=True)  # block 0 finished: coldest
    await cache.read(ref, BLOCK, 10, drop_behind=True)  # block 1 not finished: stays warm
    await cache.read(ref, 2 * BLOCK, BLOCK)  # not a stream: most recent
    order = [index for (_, index) in cache._hot]
    assert order[0] == 0 and order[-1] == 2
    assert disk_blocks(tmp_path) == 0


async def test_parallel_streams_share_the_memory_tier_without_refetching(tmp_path):
    store = MemoryStore(clock=lambda: 1_700_000_000.0)
    refs, datas = [], []
    for name in ("a", "b", "c", "d"):
        data = bytes([ord(name)]) * (64 * BLOCK)
        await store.put_object(name, data)
        refs.append(ObjectRef(name, hashlib.md5(data).hexdigest(), len(data)))
        datas.append(data)
    cache = BlockCache(store, tmp_path, BLOCK, 1 << 30, 8, memory_bytes=16 * BLOCK)
    cache.load()
    prefetcher = Prefetcher(cache, CHUNK, stream_disk_bytes=2 * BLOCK)
    aheads = [ReadAhead(BLOCK, 16 * BLOCK) for _ in refs]
    outs = [bytearray() for _ in refs]
    async with trio.open_nursery() as nursery:
        prefetcher.start(nursery)
        for offset in range(0, 64 * BLOCK, 16 * 1024):  # four readers, interleaved
            for ref, ahead, out in zip(refs, aheads, outs):
                out += await prefetcher.read(ref, ahead, offset, 16 * 1024)
    assert [bytes(o) for o in outs] == datas
    # Four windows of up to 16 blocks ahead would not fit a 16-block memory tier; shared,
    # no unread block is pushed out, so nothing is fetched twice.
    assert cache.fetched_bytes == 4 * 64 * BLOCK, cache.fetched_bytes
    cache.check_invariants()


async def test_streams_sharing_the_memory_tier_fetch_whole_chunks_half_their_share(tmp_path):
    """8 streams in a 64-block tier (the mount's default: 64 MiB of 1 MiB blocks) have 4
    blocks each: they fetch aligned 2-block chunks (one GET each), not one block per GET as
    a window narrower than the 8-block fetch size used to."""
    store = MemoryStore(clock=lambda: 1_700_000_000.0)
    refs, datas = [], []
    for index in range(8):
        data = bytes([65 + index]) * (64 * BLOCK)
        await store.put_object(f"s{index}", data)
        refs.append(ObjectRef(f"s{index}", hashlib.md5(data).hexdigest(), len(data)))
        datas.append(data)
    cache = BlockCache(store, tmp_path, BLOCK, 1 << 30, 8, memory_bytes=64 * BLOCK)
    cache.load()
    prefetcher = Prefetcher(cache, CHUNK, stream_disk_bytes=0)
    aheads = [ReadAhead(BLOCK, 64 * BLOCK) for _ in refs]
    outs = [bytearray() for _ in refs]
    store.counts.clear()
    async with trio.open_nursery() as nursery:
        prefetcher.start(nursery)
        for offset in range(0, 64 * BLOCK, 16 * 1024):
            for ref, ahead, out in zip(refs, aheads, outs):
                out += await prefetcher.read(ref, ahead, offset, 16 * 1024)
    assert [bytes(o) for o in outs] == datas
    assert cache.fetched_bytes == 8 * 64 * BLOCK
    gets = store.counts["get_object"] + store.counts["open_object"]
    assert gets <= 8 * (64 // 2 + 3), gets  # 32 chunks of 2 blocks, and the window's first steps
    cache.check_invariants()


async def test_random_reads_fetch_pieces_until_a_block_proves_dense(tmp_path):
    """A seeking reader gets the aligned piece around each read, not the block; the block is
    fetched whole once its pieces were fetched PIECE_FETCHES_BEFORE_BLOCK times."""
    from cosfs.blocks import PIECE_BYTES, PIECE_FETCHES_BEFORE_BLOCK

    store, cache, ref, data = await setup(tmp_path, blocks=16)
    prefetcher = Prefetcher(cache, CHUNK, stream_disk_bytes=1 << 40)
    ahead = ReadAhead(BLOCK, 16 * BLOCK)
    async with trio.open_nursery() as nursery:
        prefetcher.start(nursery)
        # One read per block, far apart (every one a seek): a piece each.
        for block in (9, 3, 12, 6):
            offset = block * BLOCK + 5000
            assert await prefetcher.read(ref, ahead, offset, 4096) == data[offset:offset + 4096]
        assert cache.fetched_bytes == 4 * PIECE_BYTES and disk_blocks(tmp_path) == 0
        # A read across two pieces of block 9 fetches both with one GET; again of block 9:
        # now its pieces were fetched enough times, and the block comes whole.
        gets = store.counts["open_object"]
        offset = 9 * BLOCK + 2 * PIECE_BYTES - 100
        assert await prefetcher.read(ref, ahead, offset, 200) == data[offset:offset + 200]
        assert store.counts["open_object"] == gets + 1 and PIECE_FETCHES_BEFORE_BLOCK == 2
        offset = 9 * BLOCK + 100  # behind the last read: a seek
        assert await prefetcher.read(ref, ahead, offset, 4096) == data[offset:offset + 4096]
        assert disk_blocks(tmp_path) == 1
        # Reads of what is cached fetch nothing.
        fetched = cache.fetched_bytes
        for offset in (3 * BLOCK + 5000, 9 * BLOCK + 7, 12 * BLOCK + 6000):
            assert await prefetcher.read(ref, ahead, offset, 100) == data[offset:offset + 100]
        assert cache.fetched_bytes == fetched
    cache.check_invariants()


async def test_concurrent_random_readers_of_one_piece_share_one_get(tmp_path):
    store, cache, ref, data = await setup(tmp_path, blocks=4)
    results = []

    async def reader(offset: int) -> None:
        results.append(await cache.read(ref, offset, 512, sparse=True) == data[offset:offset + 512])

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(reader, 2 * BLOCK + 1000 + 512 * i)
    assert results == [True] * 8 and store.counts["open_object"] == 1


async def test_a_changed_object_is_never_served_from_old_pieces(tmp_path):
    store, cache, ref, data = await setup(tmp_path, blocks=4)
    assert await cache.read(ref, 100, 10, sparse=True) == data[100:110]
    await store.put_object("big", b"new" * 1000)
    from cosfs.errors import Stale

    try:
        await cache.read(ref, 3 * BLOCK, 10, sparse=True)
    except Stale:
        pass
    else:
        raise AssertionError("a piece of another version was served")


async def test_an_object_read_all_over_at_random_turns_to_whole_blocks(tmp_path):
    """Once a quarter of an object's random misses come back to blocks it has pieces of, its
    misses fetch whole blocks: 2,000 random reads of a 64-block object cost a few dozen piece
    GETs and then one GET per block, not two pieces per block first."""
    from cosfs.blocks import DENSE_MIN_MISSES

    store, cache, ref, data = await setup(tmp_path, blocks=64, memory_blocks=128)
    rng = random.Random(9)
    for _ in range(2000):
        offset = rng.randrange(0, len(data) - 4096)
        assert await cache.read(ref, offset, 4096, sparse=True) == data[offset:offset + 4096]
    gets = store.counts["open_object"]
    assert cache.missing(ref, 0, 63) == []  # every block came whole in the end
    assert gets <= 64 + 2 * DENSE_MIN_MISSES, gets
    cache.check_invariants()
