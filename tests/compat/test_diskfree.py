"""ensure_diskfree, block-cache side: blocks are evicted (oldest first) to keep that much free
on the cache disk, and a block that still does not fit stays in memory only, with one warning."""

from __future__ import annotations

import hashlib
import logging

from cosfs.blocks import BlockCache, ObjectRef
from cosfs.cos.memory import MemoryStore

BLOCK = 1024


async def test_blocks_are_evicted_to_keep_the_disk_free(tmp_path, caplog):
    store = MemoryStore(clock=lambda: 1_700_000_000.0)
    data = bytes(range(256)) * 32  # 8 blocks
    await store.put_object("k", data)
    ref = ObjectRef("k", hashlib.md5(data).hexdigest(), len(data))
    cache = BlockCache(store, tmp_path, BLOCK, 1 << 20, 2, memory_bytes=0, keep_free_bytes=3 * BLOCK)
    cache.load()
    disk = {"size": 10 * BLOCK, "others": 0}  # a small disk shared with other files
    cache._free_bytes = lambda: disk["size"] - disk["others"] - cache.used_bytes

    assert await cache.read(ref, 0, 6 * BLOCK) == data[:6 * BLOCK]
    assert cache.used_bytes == 6 * BLOCK  # 4 blocks free: room for all six

    disk["others"] = 3 * BLOCK  # something else fills the disk: only 1 block free now
    assert await cache.read(ref, 6 * BLOCK, BLOCK) == data[6 * BLOCK:7 * BLOCK]
    assert cache.used_bytes == 4 * BLOCK  # the three oldest went to make room for the new one
    assert cache.missing(ref, 0, 6) == [0, 1, 2]
    cache.check_invariants()

    disk["others"] = 8 * BLOCK  # not even an empty cache leaves 3 blocks free
    with caplog.at_level(logging.WARNING, logger="cosfs.blocks"):
        assert await cache.read(ref, 0, 2 * BLOCK) == data[:2 * BLOCK]  # served all the same
    assert cache.used_bytes == 0 and not list((tmp_path / "blocks").glob("*/*"))
    warnings = [r for r in caplog.records if "ensure_diskfree" in r.getMessage()]
    assert len(warnings) == 1  # once per shortage, not once per block

    disk["others"] = 5 * BLOCK
    assert await cache.read(ref, 3 * BLOCK, 2 * BLOCK) == data[3 * BLOCK:5 * BLOCK]  # on disk again
    assert cache.make_room(0) and cache.used_bytes == 2 * BLOCK  # staging asks: room enough
    assert cache.make_room(2 * BLOCK) and cache.used_bytes == 0  # evicted to make it
    assert not cache.make_room(3 * BLOCK)  # no cache left to give


def test_ensure_diskfree_option_units():
    """MB as in COSFS; never below multipart_size (COSFS raises it, with a warning); the
    larger of ensure_diskfree and s3fs's free_space_ratio applies."""
    from tests.compat.helpers import settings_for

    assert settings_for("ensure_diskfree=100").fs.ensure_diskfree_bytes == 100 << 20
    assert settings_for().fs.ensure_diskfree_bytes == 8 << 20  # default: multipart_size
    low = settings_for("ensure_diskfree=1")
    assert low.fs.ensure_diskfree_bytes == 8 << 20
    assert any("ensure_diskfree" in text for level, text in low.notes if level == logging.WARNING)
    ratio = settings_for("free_space_ratio=100")
    assert ratio.fs.ensure_diskfree_bytes > 100 << 20  # the whole disk of the cache directory
