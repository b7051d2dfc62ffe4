"""BlockCache over MemoryStore with real files: versions without ETags, block files removed
under a running cache, private modes of everything the cache and the journals create, and
the descriptors it keeps open."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import resource
import stat

import pytest

from cosfs import blocks, mount
from cosfs.blocks import BlockCache, ObjectRef, version_problem
from cosfs.cos.memory import MemoryStore
from cosfs.cos.store import ObjectMeta
from cosfs.durable import write_json_durably
from cosfs.errors import Stale

BLOCK = 1024


@pytest.fixture
async def store() -> MemoryStore:
    store = MemoryStore(clock=lambda: 1_700_000_000.0)
    await store.put_object("k", bytes(range(256)) * 16)  # 4 blocks
    return store


def cache_over(store, tmp_path) -> BlockCache:
    # memory_bytes is raised to two blocks: reading four sends the first two to disk only.
    cache = BlockCache(store, tmp_path, BLOCK, 1 << 20, 2, memory_bytes=0)
    cache.load()
    return cache


def block_files(tmp_path, index: int) -> list:
    return list((tmp_path / "blocks").glob(f"*/*.{index}"))


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- 7. block files removed under a running cache -----------------------------------------

@pytest.mark.parametrize("damage", ["unlink", "truncate"])
async def test_block_file_removed_under_the_cache_is_fetched_again(store, tmp_path, damage):
    data = (await store.get_object("k"))[1]
    ref = ObjectRef("k", hashlib.md5(data).hexdigest(), len(data))
    cache = cache_over(store, tmp_path)
    assert await cache.read(ref, 0, len(data)) == data
    assert cache.misses == 4 and store.counts["open_object"] == 1
    (path,) = block_files(tmp_path, 0)
    if damage == "unlink":
        path.unlink()  # a cleaner, another process
        # The descriptor kept open still reads the block's bytes (they never change) ...
        assert await cache.read(ref, 5, 100) == data[5:105]
        assert cache.hits == 1 and store.counts["open_object"] == 1
        cache.close()  # ... until it is closed (the budget of open block files); then:
        cache.hits = 0
    else:
        os.truncate(path, 10)
    assert await cache.read(ref, 5, 100) == data[5:105]
    assert cache.misses == 5 and cache.hits == 0
    assert store.counts["open_object"] == 2
    assert await cache.read(ref, 5, 100) == data[5:105]  # now a hit again
    assert cache.hits == 1 and store.counts["open_object"] == 2
    cache.check_invariants()
    assert cache.used_bytes == sum(p.stat().st_size for p in (tmp_path / "blocks").glob("*/*"))


async def test_block_file_removed_before_a_remount_is_not_indexed(store, tmp_path):
    data = (await store.get_object("k"))[1]
    ref = ObjectRef("k", hashlib.md5(data).hexdigest(), len(data))
    await cache_over(store, tmp_path).read(ref, 0, len(data))
    block_files(tmp_path, 1)[0].unlink()
    cache = cache_over(store, tmp_path)
    assert cache.used_bytes == 3 * BLOCK and cache.missing(ref, 0, 3) == [1]


# --- 8. private files and directories whatever the umask -----------------------------------

async def test_cache_files_are_private_whatever_the_umask(store, tmp_path):
    data = (await store.get_object("k"))[1]
    ref = ObjectRef("k", hashlib.md5(data).hexdigest(), len(data))
    with umask(0):
        cache = cache_over(store, tmp_path / "cache")
        await cache.read(ref, 0, len(data))
        write_json_durably(tmp_path / "journal.json", {"key": "k"})
    blocks = tmp_path / "cache" / "blocks"
    assert mode(tmp_path / "cache") == 0o700 and mode(blocks) == 0o700
    files = list(blocks.glob("*/*"))
    assert len(files) == 4 and {mode(p) for p in files} == {0o600}
    assert {mode(p.parent) for p in files} == {0o700}
    assert mode(tmp_path / "journal.json") == 0o600
    assert json.loads((tmp_path / "journal.json").read_text()) == {"key": "k"}


async def test_cache_left_readable_by_an_earlier_version_is_made_private(store, tmp_path):
    sub = tmp_path / "blocks" / "ab"
    sub.mkdir(parents=True)
    (sub / ("ab" + "0" * 38 + ".0")).write_bytes(b"x" * BLOCK)
    (tmp_path / "blocks").chmod(0o755)
    sub.chmod(0o777)
    (sub / ("ab" + "0" * 38 + ".0")).chmod(0o644)
    (tmp_path / "old.json.tmp").write_text("{}")
    (tmp_path / "old.json.tmp").chmod(0o666)
    with umask(0):
        cache = cache_over(store, tmp_path)
        write_json_durably(tmp_path / "old.json", {})  # over a leftover temp file
    assert cache.used_bytes == BLOCK
    assert mode(tmp_path / "blocks") == 0o700 and mode(sub) == 0o700
    assert mode(sub / ("ab" + "0" * 38 + ".0")) == 0o600
    assert mode(tmp_path / "old.json") == 0o600


# --- 6. versions without ETags --------------------------------------------------------------

class EtaglessStore:
    """A server without ETags (and so without If-Match): meta carries size and Last-Modified."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.if_match: list = []

    @contextlib.asynccontextmanager
    async def open_object(self, key, *, byte_range=None, if_match=None):
        self.if_match.append(if_match)
        async with self.store.open_object(key, byte_range=byte_range) as (meta, chunks):
            yield dataclasses.replace(meta, etag=""), chunks


def test_version_hash_without_etag_names_size_and_time():
    assert ObjectRef("k", "e", 10).version_hash == hashlib.sha256(b"k\0e").hexdigest()[:40]  # as before
    assert ObjectRef("k", "e", 10, 5.0).version_hash == ObjectRef("k", "e", 10).version_hash
    hashes = {ObjectRef("k", "", 10, 5.0).version_hash, ObjectRef("k", "", 11, 5.0).version_hash,
              ObjectRef("k", "", 10, 6.0).version_hash, ObjectRef("k", "", 10).version_hash,
              ObjectRef("j", "", 10, 5.0).version_hash}
    assert len(hashes) == 5


def test_version_problem():
    meta = ObjectMeta("k", 10, "e", 5.0)
    assert version_problem(ObjectRef("k", "e", 10), meta) is None
    assert "ETag" in version_problem(ObjectRef("k", "f", 10), meta)
    assert version_problem(ObjectRef("k", "e", 10), dataclasses.replace(meta, etag="")) is None
    blank = dataclasses.replace(meta, etag="")
    assert version_problem(ObjectRef("k", "", 10, 5.0), blank) is None
    assert version_problem(ObjectRef("k", "", 10), blank) is None  # time unknown: size decides
    assert "size" in version_problem(ObjectRef("k", "", 11, 5.0), blank)
    assert "Last-Modified" in version_problem(ObjectRef("k", "", 10, 4.0), blank)


async def test_etagless_object_replaced_is_never_served_from_old_blocks(store, tmp_path):
    clock = [1_700_000_000.0]
    store._clock = lambda: clock[0]
    await store.put_object("f", b"a" * 3000)
    etagless = EtaglessStore(store)
    cache = cache_over(etagless, tmp_path)
    v1 = ObjectRef("f", "", 3000, clock[0])
    assert await cache.read(v1, 0, 3000) == b"a" * 3000
    assert etagless.if_match == [None]
    clock[0] += 60
    await store.put_object("f", b"b" * 3000)  # same size, same (empty) ETag
    v2 = ObjectRef("f", "", 3000, clock[0])
    assert await cache.read(v2, 0, 3000) == b"b" * 3000
    cache.check_invariants()
    # A reader still holding v1 gets its cached blocks, and ESTALE for what must be fetched.
    assert await cache.read(v1, 0, 10) == b"a" * 10
    fresh = cache_over(etagless, tmp_path / "other")
    with pytest.raises(Stale, match="Last-Modified"):
        await fresh.read(v1, 1024, 10)
    with pytest.raises(Stale, match="size"):
        await fresh.read(ObjectRef("f", "", 2500), 0, 10)
    assert fresh.missing(v1, 0, 2) == [0, 1, 2]


# --- 9. descriptors kept open for the disk tier ----------------------------------------------

@pytest.mark.parametrize("soft, budget", [(256, 64), (1024, 256), (20000, 4096), (resource.RLIM_INFINITY, 4096)])
def test_block_files_kept_open_are_a_quarter_of_the_descriptor_limit(monkeypatch, soft, budget):
    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, resource.RLIM_INFINITY))
    assert blocks.open_block_files_budget() == budget


async def test_random_reads_keep_at_most_the_budget_of_block_files_open(store, tmp_path, monkeypatch):
    monkeypatch.setattr(blocks, "open_block_files_budget", lambda: 1)
    data = (await store.get_object("k"))[1]
    ref = ObjectRef("k", hashlib.md5(data).hexdigest(), len(data))
    cache = cache_over(store, tmp_path)
    await cache.read(ref, 0, len(data))
    for offset in (5, 3000, 1500, 10, 2100, 3900):  # disk-tier hits, block by block
        assert await cache.read(ref, offset, 50) == data[offset:offset + 50]
        cache.check_invariants()
    assert store.counts["open_object"] == 1 and cache.misses == 4
    cache.close()


@pytest.mark.parametrize("soft, hard, raised", [
    (1024, 524288, mount.OPEN_FILES_WANTED),  # systemd's default for services
    (1024, 4096, 4096),  # never above the hard limit
    (100000, resource.RLIM_INFINITY, 100000),  # never lowered
])
def test_the_daemon_raises_its_open_files_limit_within_the_hard_one(monkeypatch, soft, hard, raised):
    limits = {"now": (soft, hard)}
    monkeypatch.setattr(resource, "getrlimit", lambda which: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda which, value: limits.__setitem__("now", value))
    assert mount.raise_open_files_limit() == raised
    assert limits["now"] == (raised, hard)


async def test_concurrent_disk_writes_never_take_the_disk_tier_past_its_capacity(tmp_path):
    """Issue 19 item 7: each block's room is taken before its write is awaited, so blocks
    written at once cannot each evict for themselves and all land (capacity 4 blocks, 12
    blocks fetched by 6 concurrent runs)."""
    import trio

    store = MemoryStore(clock=lambda: 1_700_000_000.0)
    await store.put_object("big", bytes(range(256)) * 48)  # 12 blocks
    meta = await store.head_object("big")
    cache = BlockCache(store, tmp_path, BLOCK, 4 * BLOCK, 6, memory_bytes=0)
    cache.load()
    ref = ObjectRef("big", meta.etag, meta.size_bytes)
    async with trio.open_nursery() as nursery:
        for first in range(0, 12, 2):
            nursery.start_soon(lambda first=first: cache.fetch_run(ref, first, first + 1, keep_on_disk=True))
    cache.check_invariants()
    assert cache.used_bytes <= 4 * BLOCK
    assert bytes(await cache.read(ref, 0, 12 * BLOCK)) == bytes(range(256)) * 48
    cache.close()
