"""The FUSE-free core over MemoryStore: request counts, caches, single-flight, lookup counts."""

from __future__ import annotations

import errno
import stat

import pytest
import trio
import trio.testing

from cosfs.config import FsConfig
from cosfs.cos.memory import MemoryStore
from cosfs.cos.store import WriteOptions
from cosfs.errors import NotFound, Stale, errno_for
from cosfs.filesystem import Caller, CosFilesystem
from cosfs.inodes import ROOT_INO, Kind

MiB = 1024 * 1024
ME = Caller(1000, 1000, 0o022)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def env(tmp_path):
    store = MemoryStore()
    clock = Clock()
    fs = CosFilesystem(store, FsConfig(stat_ttl_s=60, negative_ttl_s=10), tmp_path / "cache", clock=clock)
    async with trio.open_nursery() as nursery:
        await fs.start(nursery)
        yield store, fs, clock
        fs.check_invariants()
        nursery.cancel_scope.cancel()


async def listdir(fs: CosFilesystem, ino: int, accept_all: bool = True) -> list[tuple[str, int]]:
    fh = fs.opendir(ino)
    got: list[tuple[str, int]] = []

    def reply(name, attr, next_id):
        got.append((name, attr.ino))
        return True

    await fs.readdir(fh, 0, reply)
    fs.releasedir(fh)
    return got


async def test_readdir_costs_list_pages_and_a_head_per_object_once_per_ttl(env):
    """A LIST says nothing of type, mode or owner: readdir HEADs each listed object before
    its attributes reach the kernel, once per version within the stat TTL."""
    store, fs, clock = env
    for i in range(2500):
        await store.put_object(f"d/f{i:05d}", b"x" * (i % 5))
    store.counts.clear()
    d = await fs.lookup(ROOT_INO, "d")
    assert store.counts == {"list_objects": 1}  # its LIST found children: a directory, no HEAD
    store.counts.clear()
    names = await listdir(fs, d.ino)
    assert len(names) == 2500
    assert store.counts == {"list_objects": 3, "head_object": 2500}
    store.counts.clear()
    await listdir(fs, d.ino)
    attr = await fs.lookup(d.ino, "f00003")
    assert attr.size_bytes == 3
    with pytest.raises(NotFound):
        await fs.lookup(d.ino, "absent")
    assert sum(store.counts.values()) == 0  # all from the fresh listing
    clock.now += 61
    await listdir(fs, d.ino)
    assert store.counts == {"list_objects": 3, "head_object": 2500}


async def test_a_directory_that_fits_the_lookup_list_is_listed_by_it(env):
    """`ls -l dir` of a cold directory of up to 1,000 entries: one request, the lookup's
    LIST, then readdir from that LIST. A directory the page cannot hold is listed by readdir,
    and its later lookups ask for one key."""
    store, fs, clock = env
    for i in range(998):
        await store.put_object(f"small/f{i:04d}", b"x" * (i % 7))
    await store.put_object("small/sub/inner", b"i")
    await store.put_object("small/sub", b"shadowed by the directory")
    for i in range(1001):
        await store.put_object(f"big/f{i:04d}", b"")
    asked: list[int] = []
    list_objects = store.list_objects

    async def recording_list(prefix="", **kwargs):
        asked.append(kwargs.get("max_keys", 1000))
        return await list_objects(prefix, **kwargs)

    store.list_objects = recording_list  # type: ignore[method-assign]
    await store.put_object("small/f0003", b"x", WriteOptions(user_meta={"mode": str(stat.S_IFREG | 0o600)}))
    store.counts.clear()
    small = await fs.lookup(ROOT_INO, "small")
    assert store.counts == {"list_objects": 1}
    # Before any readdir, a child's lookup HEADs: its stored mode, not the listing's default.
    # The page says it is a file, so nothing else is asked.
    assert stat.S_IMODE((await fs.lookup(small.ino, "f0003")).mode) == 0o600
    assert store.counts == {"head_object": 1, "list_objects": 1}
    store.counts.clear()
    names = await listdir(fs, small.ino)
    # The lookup's page; a HEAD of each file not known yet and of the subdirectory's marker.
    assert store.counts == {"head_object": 998}
    store.counts.clear()
    assert len(names) == 999 and dict(names)["sub"] and (await fs.lookup(small.ino, "f0005")).size_bytes == 5
    assert stat.S_ISDIR((await fs.lookup(small.ino, "sub")).mode)
    assert store.counts == {}  # both answered from the listing
    store.counts.clear()
    big = await fs.lookup(ROOT_INO, "big")
    assert len(await listdir(fs, big.ino)) == 1001
    assert store.counts == {"list_objects": 3, "head_object": 1001}  # the lookup's page, then 2 pages
    clock.now += 61
    asked.clear()
    await fs.lookup(ROOT_INO, "big")
    assert asked == [1]


async def test_a_lookup_asks_only_what_the_parent_listing_does_not_say(env):
    """What a cold lookup sends: in a directory whose page was fetched, nothing for a name it
    lacks, a HEAD for a file, a LIST for a subdirectory (and a HEAD of its marker); with no
    page, the LIST of `name/` and, only when it is empty, the HEAD of `name` (then of
    `name_$folder$`); in a directory
    too big for one page, both at once. Each finding still holds when the other is absent."""
    store, fs, clock = env
    await store.put_object("top.txt", b"top")
    await store.put_object("dir/file", b"f")
    await store.put_object("dir/sub/", b"", WriteOptions(user_meta={"mode": str(stat.S_IFDIR | 0o700)}))
    await store.put_object("dir/sub/x", b"x")
    for i in range(1001):
        await store.put_object(f"big/f{i:04d}", b"")
    store.counts.clear()
    top = await fs.lookup(ROOT_INO, "top.txt")  # the root's page is unknown: LIST, then HEAD
    assert top.size_bytes == 3 and store.counts == {"list_objects": 1, "head_object": 1}
    with pytest.raises(NotFound):
        await fs.lookup(ROOT_INO, "absent")
    assert store.counts == {"list_objects": 2, "head_object": 3}  # (and absent_$folder$)
    store.counts.clear()
    d = await fs.lookup(ROOT_INO, "dir")
    assert store.counts == {"list_objects": 1}
    with pytest.raises(NotFound):
        await fs.lookup(d.ino, "absent")
    assert store.counts == {"list_objects": 1}  # the page says so
    assert (await fs.lookup(d.ino, "file")).size_bytes == 1
    assert store.counts == {"list_objects": 1, "head_object": 1}
    sub = await fs.lookup(d.ino, "sub")
    assert stat.S_IMODE(sub.mode) == 0o700  # the marker's mode, before any readdir
    assert store.counts == {"list_objects": 2, "head_object": 2}
    store.counts.clear()
    big = await fs.lookup(ROOT_INO, "big")
    assert len(await listdir(fs, big.ino)) == 1001
    clock.now += 61
    store.counts.clear()
    assert (await fs.lookup(big.ino, "f0500")).size_bytes == 0
    assert store.counts == {"list_objects": 1, "head_object": 1}  # at once
    store.counts.clear()
    await store.put_object("dir/file/inner", b"a directory now shadows the file")
    await store.delete_object("dir/sub/x")
    await store.delete_object("dir/sub/")
    await store.put_object("dir/sub", b"a file where the directory was")
    d = await fs.lookup(ROOT_INO, "dir")
    assert stat.S_ISDIR((await fs.lookup(d.ino, "file")).mode)
    assert stat.S_ISREG((await fs.lookup(d.ino, "sub")).mode)


async def test_a_tree_walk_finds_the_next_sibling_directories_listed_ahead(env):
    """After two neighbouring directories were listed in a row (find, du, cp -r), the next 8
    siblings are listed in the background; one `ls` of a directory starts nothing."""
    store, fs, clock = env
    for d in range(12):
        for f in range(3):
            await store.put_object(f"tree/d{d:02d}/f{f}", b"x")
        await store.put_object(f"tree/file{d:02d}", b"files between the directories are skipped")
    tree = await fs.lookup(ROOT_INO, "tree")
    dirs = {name: ino for name, ino in await listdir(fs, tree.ino) if name.startswith("d")}
    store.counts.clear()
    await listdir(fs, dirs["d05"])
    await trio.testing.wait_all_tasks_blocked()
    assert store.counts["list_objects"] == 1  # one ls: nothing ahead
    await listdir(fs, dirs["d00"])
    await listdir(fs, dirs["d01"])
    await trio.testing.wait_all_tasks_blocked()
    assert store.counts["list_objects"] == 3 + 7  # d02..d09 ahead (d05 is listed already)
    store.counts.clear()
    for name in ("d02", "d03", "d04", "d06", "d07", "d08", "d09"):
        assert len(await listdir(fs, dirs[name])) == 3
    await trio.testing.wait_all_tasks_blocked()
    assert store.counts["list_objects"] == 2  # the window moved on: d10, d11


async def test_directory_link_count_follows_subdirectories_through_changes(env):
    """st_nlink = 2 + subdirectories, kept up to date by creates, mkdir and rmdir without
    recounting the listing (a create in a big directory must not cost O(entries))."""
    store, fs, clock = env
    await store.put_object("d/a/x", b"x")
    await store.put_object("d/b/y", b"y")
    await store.put_object("d/f", b"f")
    d = await fs.lookup(ROOT_INO, "d")
    await listdir(fs, d.ino)

    async def links() -> int:
        nlink = (await fs.getattr(d.ino)).nlink
        merged = fs.namespace._merge_dirty("d/", fs.namespace._listings["d/"])
        assert nlink == 2 + sum(1 for e in merged if e.kind == Kind.DIR)
        return nlink

    assert await links() == 4
    c = await fs.mkdir(d.ino, "c", 0o755, ME)
    assert await links() == 5
    opened, _ = await fs.create(d.ino, "g", 0o644, ME)
    assert await links() == 5
    await fs.write(opened.fh, 0, b"staged")
    await fs.flush(opened.fh)
    fs.release(opened.fh)
    counted = fs.namespace._dir_counts["d/"]
    assert await links() == 5
    assert fs.namespace._dir_counts["d/"] is counted  # the commit's listing edit kept the count
    await fs.rmdir(d.ino, "c")
    assert await links() == 4
    assert c.ino


async def test_negative_cache_and_shadowing(env):
    store, fs, clock = env
    await store.put_object("both", b"file")
    await store.put_object("both/child", b"c")
    await store.put_object("dirmarker/", b"")
    attr = await fs.lookup(ROOT_INO, "both")
    assert stat.S_ISDIR(attr.mode)  # a directory shadows a file of the same name
    assert stat.S_ISDIR((await fs.lookup(ROOT_INO, "dirmarker")).mode)
    store.counts.clear()
    for _ in range(3):
        with pytest.raises(NotFound):
            await fs.lookup(ROOT_INO, "ghost")
    assert store.counts["head_object"] == 2  # ghost, then ghost_$folder$ (an old s3fs empty directory)
    clock.now += 11
    with pytest.raises(NotFound):
        await fs.lookup(ROOT_INO, "ghost")
    assert store.counts["head_object"] == 4


async def test_an_empty_directory_of_old_s3fs_is_found_by_a_cold_lookup(env):
    """`name_$folder$` alone (old s3fs and COSFS made empty directories so): a readdir shows
    a directory, and so does a lookup that no listing answers."""
    store, fs, clock = env
    await store.put_object("old_$folder$", b"")
    assert stat.S_ISDIR((await fs.lookup(ROOT_INO, "old")).mode)
    clock.now += 61  # the entry expired: asked again
    assert stat.S_ISDIR((await fs.lookup(ROOT_INO, "old")).mode)
    assert "old" in [name for name, _ in await listdir(fs, ROOT_INO)]


async def test_posix_metadata_from_cosfs_headers(env):
    store, fs, _ = env
    meta = {"mode": str(stat.S_IFREG | 0o600), "uid": "1234", "gid": "55", "mtime": "1700000000"}
    await store.put_object("meta.txt", b"abc", WriteOptions(user_meta=meta))
    await store.put_object("link", b"meta.txt", WriteOptions(user_meta={"mode": str(stat.S_IFLNK | 0o777)}))
    attr = await fs.lookup(ROOT_INO, "meta.txt")
    assert (stat.S_IMODE(attr.mode), attr.uid, attr.gid, attr.mtime_ns) == (0o600, 1234, 55, 1700000000 * 10**9)
    link = await fs.lookup(ROOT_INO, "link")
    assert stat.S_ISLNK(link.mode)
    assert await fs.readlink(link.ino) == "meta.txt"


async def test_concurrent_readers_share_one_get_and_random_read_costs_one_block(env):
    store, fs, _ = env
    body = bytes(range(256)) * (16 * MiB // 256)
    await store.put_object("big", body)
    attr = await fs.lookup(ROOT_INO, "big")
    opened = await fs.open(attr.ino, write=False)
    store.counts.clear()
    results = []

    async def reader():
        results.append(bytes(await fs.read(opened.fh, 5 * MiB + 100, 4096)))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(reader)
    assert results == [body[5 * MiB + 100:5 * MiB + 100 + 4096]] * 10
    assert store.counts["open_object"] == 1  # single-flight, one block
    fs.release(opened.fh)


async def test_sequential_read_prefetches_and_warm_read_is_free(env):
    store, fs, _ = env
    body = bytes(i % 251 for i in range(12 * MiB))
    await store.put_object("seq", body)
    attr = await fs.lookup(ROOT_INO, "seq")
    opened = await fs.open(attr.ino, write=False)
    out = bytearray()
    for offset in range(0, len(body), 128 * 1024):
        out += await fs.read(opened.fh, offset, 128 * 1024)
        await trio.sleep(0)
    assert bytes(out) == body
    fs.release(opened.fh)
    gets = store.counts["open_object"]
    assert gets < 12  # read-ahead fetched runs of blocks, not one GET per block
    again = await fs.open(attr.ino, write=False)
    assert again.keep_cache  # same ETag: the kernel may keep its page cache
    assert bytes(await fs.read(again.fh, 0, MiB)) == body[:MiB]
    assert store.counts["open_object"] == gets
    fs.release(again.fh)


async def test_replaced_object_gives_stale_on_open_handle(env):
    store, fs, clock = env
    await store.put_object("v", b"a" * (3 * MiB))
    attr = await fs.lookup(ROOT_INO, "v")
    opened = await fs.open(attr.ino, write=False)
    assert bytes(await fs.read(opened.fh, 0, 10)) == b"a" * 10
    await store.put_object("v", b"b" * (3 * MiB))
    with pytest.raises(Stale) as info:
        await fs.read(opened.fh, 2 * MiB, 10)
    assert errno_for(info.value) == errno.ESTALE
    fs.release(opened.fh)
    reopened = await fs.open(attr.ino, write=False)
    assert not reopened.keep_cache
    assert bytes(await fs.read(reopened.fh, 2 * MiB, 10)) == b"b" * 10
    fs.release(reopened.fh)


async def test_forget_frees_inodes(env):
    store, fs, _ = env
    for i in range(3000):
        await store.put_object(f"w/{i}", b"")
    d = await fs.lookup(ROOT_INO, "w")
    entries = await listdir(fs, d.ino)
    assert len(fs.inodes) == 3002
    fs.forget([(ino, 1) for _, ino in entries] + [(d.ino, 1)])
    assert len(fs.inodes) == 1  # only the root stays


async def test_readdir_stops_when_the_kernel_buffer_is_full(env):
    store, fs, _ = env
    for i in range(10):
        await store.put_object(f"r/{i}", b"")
    d = await fs.lookup(ROOT_INO, "r")
    fh = fs.opendir(d.ino)
    taken: list[str] = []

    def reply(name, attr, next_id):
        if len(taken) == 4:
            return False
        taken.append(name)
        return True

    await fs.readdir(fh, 0, reply)
    rest: list[str] = []
    await fs.readdir(fh, 4, lambda name, attr, next_id: rest.append(name) or True)
    fs.releasedir(fh)
    assert taken + rest == sorted(str(i) for i in range(10))
    fs.check_invariants()


class RecordingKernel:
    """What the core tells the kernel to forget (cosfs.kernel_cache.KernelCache)."""

    def __init__(self) -> None:
        self.attributes: list[int] = []
        self.entries: list[tuple[int, str]] = []

    def forget_attributes(self, ino: int) -> None:
        self.attributes.append(ino)

    def forget_entry(self, parent_ino: int, name: str) -> None:
        self.entries.append((parent_ino, name))


async def test_an_open_asks_cos_for_the_version_it_will_read(env):
    """Close-to-open: one HEAD per open; another client's version replaces the attributes
    (the kernel's too) and the page cache; a deleted object fails the open and the kernel
    forgets its name; an O_TRUNC open of it makes it again."""
    store, fs, clock = env
    kernel = fs.namespace.kernel = RecordingKernel()
    await store.put_object("f", b"one")
    attr = await fs.lookup(ROOT_INO, "f")
    store.counts.clear()
    first = await fs.open(attr.ino, write=False)
    fs.release(first.fh)
    again = await fs.open(attr.ino, write=False)
    fs.release(again.fh)
    assert store.counts == {"head_object": 2} and again.keep_cache and kernel.attributes == []
    await store.put_object("f", b"second version")
    changed = await fs.open(attr.ino, write=False)
    assert not changed.keep_cache and kernel.attributes == [attr.ino]
    assert (await fs.getattr(attr.ino)).size_bytes == 14
    assert bytes(await fs.read(changed.fh, 0, 100)) == b"second version"
    fs.release(changed.fh)
    await store.delete_object("f")
    with pytest.raises(NotFound):
        await fs.open(attr.ino, write=False)
    assert kernel.entries == [(ROOT_INO, "f")]
    with pytest.raises(NotFound):
        await fs.getattr(attr.ino)
    truncated = await fs.open(attr.ino, write=True, truncate=True)  # (`>` of a deleted name makes it again)
    await fs.write(truncated.fh, 0, b"made again")
    await fs.flush(truncated.fh)
    fs.release(truncated.fh)
    assert (await store.get_object("f"))[1] == b"made again"


async def test_nocto_opens_trust_the_stat_ttl(tmp_path):
    store = MemoryStore()
    clock = Clock()
    fs = CosFilesystem(store, FsConfig(stat_ttl_s=60, close_to_open=False), tmp_path / "cache", clock=clock)
    async with trio.open_nursery() as nursery:
        await fs.start(nursery)
        await store.put_object("f", b"one")
        attr = await fs.lookup(ROOT_INO, "f")
        for expected_requests in ({"open_object": 1}, {}):
            store.counts.clear()
            opened = await fs.open(attr.ino, write=False)
            assert bytes(await fs.read(opened.fh, 0, 10)) == b"one" and store.counts == expected_requests
            fs.release(opened.fh)
            await store.put_object("f", b"two!")
        clock.now += 61
        opened = await fs.open(attr.ino, write=False)
        assert bytes(await fs.read(opened.fh, 0, 10)) == b"two!"
        fs.release(opened.fh)
        nursery.cancel_scope.cancel()


async def test_a_listing_says_absent_for_the_negative_ttl_only(env):
    """What a listing lacks is trusted negative_ttl_s from its LIST; then a lookup asks COS
    and a readdir lists again, and names gone since are forgotten (here and in the kernel)."""
    store, fs, clock = env
    kernel = fs.namespace.kernel = RecordingKernel()
    await store.put_object("d/a", b"a")
    d = await fs.lookup(ROOT_INO, "d")
    assert [name for name, _ in await listdir(fs, d.ino)] == ["a"]
    a = await fs.lookup(d.ino, "a")
    await store.put_object("d/b", b"b")
    await store.delete_object("d/a")
    store.counts.clear()
    with pytest.raises(NotFound):
        await fs.lookup(d.ino, "b")
    assert store.counts == {}  # within the negative TTL: the listing's word
    clock.now += 10
    assert (await fs.lookup(d.ino, "b")).size_bytes == 1
    assert [name for name, _ in await listdir(fs, d.ino)] == ["b"]
    assert kernel.entries == [(d.ino, "a")] and a.ino in kernel.attributes
    with pytest.raises(NotFound):
        await fs.lookup(d.ino, "a")
