"""The write path of the core over MemoryStore: staging, streaming multipart, part copy,
durability points, journal recovery."""

from __future__ import annotations

import hashlib
import random
import stat

import pytest
import trio

from cosfs.config import FsConfig
from cosfs.cos.memory import MemoryStore
from cosfs.cos.store import WriteOptions
from cosfs.errors import AlreadyExists, NotEmpty, NotFound, TransientError, Unsupported
from cosfs.filesystem import Caller, CosFilesystem
from cosfs.inodes import ROOT_INO

MiB = 1024 * 1024
ME = Caller(1000, 1000, 0o022)


async def run_fs(store, tmp_path, nursery, **config):
    fs = CosFilesystem(store, FsConfig(**config), tmp_path / "cache")
    await fs.start(nursery)
    return fs


@pytest.fixture
async def env(tmp_path):
    store = MemoryStore()
    async with trio.open_nursery() as nursery:
        fs = await run_fs(store, tmp_path, nursery)
        yield store, fs
        fs.check_invariants()
        nursery.cancel_scope.cancel()


async def write_file(fs, name: str, data: bytes, chunk: int = 1 << 20, parent: int = ROOT_INO) -> int:
    opened, attr = await fs.create(parent, name, 0o644, ME)
    for offset in range(0, len(data), chunk):
        await fs.write(opened.fh, offset, data[offset:offset + chunk])
        await trio.sleep(0)
    await fs.flush(opened.fh)
    fs.release(opened.fh)
    return attr.ino


async def test_small_file_is_one_put_with_cosfs_metadata(env):
    store, fs = env
    await write_file(fs, "a.txt", b"hello")
    _, body = await store.get_object("a.txt")
    meta = await store.head_object("a.txt")
    assert body == b"hello"
    assert meta.user_meta["mode"] == str(stat.S_IFREG | 0o644)
    assert (meta.user_meta["uid"], meta.user_meta["gid"]) == ("1000", "1000")
    assert meta.content_type == "text/plain"
    assert store.counts["put_object"] == 1 and len(fs.staging) == 0


async def test_sequential_big_write_streams_parts_before_close(env):
    store, fs = env
    data = random.Random(1).randbytes(40 * MiB + 123)
    opened, _ = await fs.create(ROOT_INO, "big.bin", 0o644, ME)
    for offset in range(0, len(data), MiB):
        await fs.write(opened.fh, offset, data[offset:offset + MiB])
        await trio.sleep(0.001)
    assert store.counts["upload_part"] >= 3  # parts went out while the file was being written
    before_close = store.counts["upload_part"]
    await fs.flush(opened.fh)
    fs.release(opened.fh)
    _, body = await store.get_object("big.bin")
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert store.counts["upload_part"] - before_close <= 2  # only the tail (and a straggler) at close
    assert store.pending_uploads() == 0


async def test_random_overwrite_of_big_object_copies_untouched_parts(env):
    store, fs = env
    data = bytearray(random.Random(2).randbytes(48 * MiB))
    await store.put_object("obj", bytes(data))
    attr = await fs.lookup(ROOT_INO, "obj")
    opened = await fs.open(attr.ino, write=True)
    await fs.write(opened.fh, 20 * MiB + 5, b"PATCH")
    data[20 * MiB + 5:20 * MiB + 10] = b"PATCH"
    assert bytes(await fs.read(opened.fh, 20 * MiB, 16)) == bytes(data[20 * MiB:20 * MiB + 16])
    store.counts.clear()
    await fs.flush(opened.fh)
    fs.release(opened.fh)
    _, body = await store.get_object("obj")
    assert body == bytes(data)
    assert store.counts["upload_part_copy"] >= 4 and store.counts["upload_part"] == 1


async def test_truncate_append_and_read_after_write(env):
    store, fs = env
    await store.put_object("t", b"0123456789")
    attr = await fs.lookup(ROOT_INO, "t")
    await fs.setattr(attr.ino, size=4)  # truncate(2) by path commits at once
    assert (await store.get_object("t"))[1] == b"0123"
    opened = await fs.open(attr.ino, write=True)
    await fs.setattr(attr.ino, size=8, fh=opened.fh)
    await fs.write(opened.fh, 8, b"AB")
    assert bytes(await fs.read(opened.fh, 0, 100)) == b"0123\0\0\0\0AB"
    assert (await fs.getattr(attr.ino)).size_bytes == 10
    await fs.flush(opened.fh)
    fs.release(opened.fh)
    assert (await store.get_object("t"))[1] == b"0123\0\0\0\0AB"


async def test_failed_upload_reports_and_keeps_data(env):
    store, fs = env
    opened, _ = await fs.create(ROOT_INO, "f", 0o644, ME)
    await fs.write(opened.fh, 0, b"precious")
    store.fail_next("put_object", TransientError("injected"))
    with pytest.raises(TransientError):
        await fs.flush(opened.fh)
    assert "f" in [d.key for d in fs.staging.files()]
    await fs.fsync(opened.fh)  # the store works again
    fs.release(opened.fh)
    assert (await store.get_object("f"))[1] == b"precious"


def journal_records(tmp_path) -> list:
    return sorted((tmp_path / "cache" / "staging").glob("*.json"))


async def test_a_durable_close_is_journaled_only_when_its_put_fails(tmp_path):
    """A durable close sends its PUT with no record on disk, for a new file as for a changed
    one (nothing is acknowledged before the PUT returns: the journal holds acknowledged
    states only); a failed PUT journals it before close reports the error, so the next mount
    uploads it."""
    store = MemoryStore()
    journaled_at_put: list[bool] = []
    put = store.put_object

    async def recording_put(key, body, options=WriteOptions()):
        journaled_at_put.append(bool(journal_records(tmp_path)))
        return await put(key, body, options)

    store.put_object = recording_put  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        fs = await run_fs(store, tmp_path, nursery)
        await write_file(fs, "new.txt", b"fresh")
        assert journaled_at_put == [False] and journal_records(tmp_path) == []
        opened = await fs.open(await lookup_ino(fs, "new.txt"), write=True)
        await fs.write(opened.fh, 0, b"F")
        await fs.flush(opened.fh)
        fs.release(opened.fh)
        assert journaled_at_put == [False, False] and journal_records(tmp_path) == []
        assert (await store.get_object("new.txt"))[1] == b"Fresh"
        opened, _ = await fs.create(ROOT_INO, "failing.txt", 0o644, ME)
        await fs.write(opened.fh, 0, b"precious")
        store.fail_next("put_object", TransientError("injected"))
        with pytest.raises(TransientError):
            await fs.flush(opened.fh)
        assert len(journal_records(tmp_path)) == 1
        nursery.cancel_scope.cancel()  # the daemon dies before any retry
    assert "failing.txt" not in store.keys()
    async with trio.open_nursery() as nursery:
        fs = await run_fs(store, tmp_path, nursery)  # same cache dir: recovery
        with trio.fail_after(10):
            while "failing.txt" not in store.keys():
                await trio.sleep(0.01)
        assert (await store.get_object("failing.txt"))[1] == b"precious"
        nursery.cancel_scope.cancel()


async def lookup_ino(fs, name: str) -> int:
    return (await fs.lookup(ROOT_INO, name)).ino


async def test_namespace_changes(env):
    store, fs = env
    d = await fs.mkdir(ROOT_INO, "d", 0o755, ME)
    assert (await store.head_object("d/")).content_type == "application/x-directory"
    with pytest.raises(AlreadyExists):
        await fs.mkdir(ROOT_INO, "d", 0o755, ME)
    await write_file(fs, "x", b"x", parent=d.ino)
    with pytest.raises(NotEmpty):
        await fs.rmdir(ROOT_INO, "d")
    await fs.rename(d.ino, "x", ROOT_INO, "y")
    assert store.keys() == ["d/", "y"]
    await fs.rmdir(ROOT_INO, "d")
    await store.put_object("src/a/1", b"1")
    await store.put_object("src/b", b"2")
    await fs.lookup(ROOT_INO, "src")
    await fs.rename(ROOT_INO, "src", ROOT_INO, "dst")
    assert store.keys() == ["dst/a/1", "dst/b", "y"]
    with pytest.raises(NotFound):
        await fs.lookup(ROOT_INO, "src")
    link = await fs.symlink(ROOT_INO, "ln", "dst/b", ME)
    assert stat.S_ISLNK(link.mode) and await fs.readlink(link.ino) == "dst/b"
    with pytest.raises(Unsupported):
        fs.link()
    y = await fs.lookup(ROOT_INO, "y")
    await fs.setattr(y.ino, mode=0o600, uid=7, mtime_ns=1_600_000_000 * 10**9)
    meta = await store.head_object("y")
    assert meta.user_meta["mode"] == str(stat.S_IFREG | 0o600) and meta.user_meta["uid"] == "7"
    assert meta.user_meta["mtime"] == "1600000000"
    await fs.setxattr(y.ino, "user.k", b"v\x00w")
    assert await fs.getxattr(y.ino, "user.k") == b"v\x00w"
    assert (await store.get_object("y"))[1] == b"x"  # content untouched by metadata changes


async def test_write_back_delay_journal_survives_a_crash(tmp_path):
    store = MemoryStore()
    async with trio.open_nursery() as nursery:
        fs = await run_fs(store, tmp_path, nursery, write_back_delay_s=3600)
        opened, _ = await fs.create(ROOT_INO, "later.txt", 0o644, ME)
        await fs.write(opened.fh, 0, b"acknowledged")
        await fs.flush(opened.fh)  # returns at once: journaled, not uploaded
        fs.release(opened.fh)
        assert store.keys() == []
        nursery.cancel_scope.cancel()  # the daemon dies here
    async with trio.open_nursery() as nursery:
        fs = await run_fs(store, tmp_path, nursery)  # same cache dir: recovery
        with trio.fail_after(10):
            while store.keys() != ["later.txt"]:
                await trio.sleep(0.01)
        assert (await store.get_object("later.txt"))[1] == b"acknowledged"
        while len(fs.staging):
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_crash_mid_upload_resumes_the_multipart_upload(tmp_path):
    store = MemoryStore()
    data = random.Random(3).randbytes(40 * MiB)
    async with trio.open_nursery() as nursery:
        fs = await run_fs(store, tmp_path, nursery, write_back_delay_s=3600)
        opened, _ = await fs.create(ROOT_INO, "resume.bin", 0o644, ME)
        for offset in range(0, len(data), MiB):
            await fs.write(opened.fh, offset, data[offset:offset + MiB])
        await fs.flush(opened.fh)  # journaled; streamed parts are on their way
        fs.release(opened.fh)
        with trio.fail_after(10):
            while store.counts["upload_part"] < 4:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()  # kill -9 before Complete
    assert store.keys() == [] and store.pending_uploads() == 1
    sent_before = store.counts["upload_part"]
    async with trio.open_nursery() as nursery:
        fs = await run_fs(store, tmp_path, nursery)
        with trio.fail_after(10):
            while store.keys() != ["resume.bin"]:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert (await store.get_object("resume.bin"))[1] == data
    assert store.counts["upload_part"] - sent_before <= 1  # only the tail: the rest was resumed
    assert store.pending_uploads() == 0


class PartOneWaitsForTheLast(MemoryStore):
    """Part 1 is answered only once the last part has started (a barrier, not a delay)."""

    def __init__(self, last: int) -> None:
        super().__init__()
        self.last = last
        self.last_started = trio.Event()

    async def upload_part(self, key: str, upload_id: str, part_number: int, body: bytes):
        if part_number == self.last:
            self.last_started.set()
        elif part_number == 1:
            await self.last_started.wait()
        return await super().upload_part(key, upload_id, part_number, body)


async def test_at_close_the_last_part_goes_while_streamed_parts_are_still_in_flight(tmp_path):
    """Over a slow link a streamed part may still be on its way at close: the last part (sent
    only at close) goes beside it, not after it. Here part 1 cannot finish before the last
    part starts, so a close that waited for every streamed part first would never end."""
    data = random.Random(7).randbytes(4 * 8 * MiB + 1000)  # 5 parts of 8 MiB, the last one short
    store = PartOneWaitsForTheLast(last=5)
    async with trio.open_nursery() as nursery:
        fs = await run_fs(store, tmp_path, nursery)
        opened, _ = await fs.create(ROOT_INO, "big.bin", 0o644, ME)
        for offset in range(0, len(data), MiB):
            await fs.write(opened.fh, offset, data[offset:offset + MiB])
        with trio.fail_after(30):
            await fs.flush(opened.fh)
        fs.release(opened.fh)
        _, body = await store.get_object("big.bin")
        assert body == data and store.counts["upload_part"] == 5
        fs.check_invariants()
        nursery.cancel_scope.cancel()


def test_eight_parts_fly_at_once_with_the_default_memory_budget():
    """Each part in flight holds its own bytes only (no copy is made to send it): the default
    128 MiB budget's half takes parallel_count (8) parts of 8 MiB, and bigger parts fewer."""
    from cosfs.filesystem import upload_parallelism

    assert upload_parallelism(FsConfig()) == 8
    assert upload_parallelism(FsConfig(part_size_bytes=32 * MiB)) == 2
