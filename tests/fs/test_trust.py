"""Acknowledged data is never lost (the core over MemoryStore, deterministic): failed renames,
crashes between journal steps, truncations, journals of another bucket, conflicts with
another writer of the same object."""

from __future__ import annotations

import json
import logging
import stat

import pytest
import trio

import cosfs.write.journal
from cosfs.config import FsConfig
from cosfs.cos.memory import MemoryStore
from cosfs.cos.store import WriteOptions
from cosfs.errors import Conflict, InvalidName, TransientError
from cosfs.filesystem import Caller, CosFilesystem
from cosfs.inodes import ROOT_INO
from cosfs.write.journal import Journal

ME = Caller(1000, 1000, 0o022)
MiB = 1024 * 1024
OWNER = {"bucket": "one-1250000000", "endpoint": "http://127.0.0.1:1"}


def recorded(tmp_path) -> dict[str, bytes]:
    """What the journal holds for the next mount: key -> the acknowledged bytes."""
    records, _ = Journal(tmp_path / "cache" / "staging", OWNER).load()
    return {r.key: r.snapshot.data_path.read_bytes()[:r.snapshot.size] for r in records}


async def start(store, tmp_path, nursery, owner=OWNER, **config) -> CosFilesystem:
    fs = CosFilesystem(store, FsConfig(**config), tmp_path / "cache", owner=owner)
    await fs.start(nursery)
    return fs


async def write_and_close(fs: CosFilesystem, name: str, data: bytes) -> int:
    opened, attr = await fs.create(ROOT_INO, name, 0o644, ME)
    await fs.write(opened.fh, 0, data)
    await fs.flush(opened.fh)
    fs.release(opened.fh)
    return attr.ino


async def read_all(fs: CosFilesystem, name: str) -> bytes:
    attr = await fs.lookup(ROOT_INO, name)
    opened = await fs.open(attr.ino, write=False)
    try:
        return bytes(await fs.read(opened.fh, 0, 1 << 30))
    finally:
        fs.release(opened.fh)


async def wait_for(condition, what: str) -> None:
    with trio.fail_after(10):
        while not condition():
            await trio.sleep(0.01)


async def test_failed_rename_over_a_pending_file_changes_neither_name(tmp_path):
    """The target's acknowledged (journaled) data survives a failed rename."""
    store = MemoryStore()
    await store.put_object("source", b"source bytes")
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery, write_back_delay_s=3600)
        await write_and_close(fs, "target", b"acknowledged target bytes")
        store.fail_next("copy_object", TransientError("the server failed the copy"))
        with pytest.raises(TransientError):
            await fs.rename(ROOT_INO, "source", ROOT_INO, "target")
        assert await read_all(fs, "target") == b"acknowledged target bytes"
        assert await read_all(fs, "source") == b"source bytes"
        await fs.writeback.fsync(lambda: "target")
        assert (await store.get_object("target"))[1] == b"acknowledged target bytes"
        assert (await store.get_object("source"))[1] == b"source bytes"
        nursery.cancel_scope.cancel()


async def test_failed_unlink_of_an_open_file_keeps_it(tmp_path):
    store = MemoryStore()
    await store.put_object("kept", b"kept bytes")
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery)
        attr = await fs.lookup(ROOT_INO, "kept")
        opened = await fs.open(attr.ino, write=False)
        store.fail_next("delete_object", TransientError("the server failed the delete"))
        with pytest.raises(TransientError):
            await fs.unlink(ROOT_INO, "kept")
        assert bytes(await fs.read(opened.fh, 0, 100)) == b"kept bytes"
        assert await read_all(fs, "kept") == b"kept bytes"
        await fs.unlink(ROOT_INO, "kept")
        assert bytes(await fs.read(opened.fh, 0, 100)) == b"kept bytes"  # the private copy
        fs.release(opened.fh)
        assert "kept" not in store.keys() and len(fs.staging) == 0
        nursery.cancel_scope.cancel()


async def test_a_rename_that_could_not_journal_its_new_name_keeps_the_old_one(tmp_path, monkeypatch):
    """A rename of a staged file rewrites its one record with the new key (atomically): a
    crash before that write leaves the old name's record, never none."""
    store = MemoryStore()
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery, write_back_delay_s=3600)
        await write_and_close(fs, "draft", b"acknowledged draft")
        real = cosfs.write.journal.write_json_durably

        def crash(path, record):
            if record.get("key") == "final":
                raise OSError("simulated crash before the record was durable")
            real(path, record)

        monkeypatch.setattr(cosfs.write.journal, "write_json_durably", crash)
        with pytest.raises(OSError):
            await fs.rename(ROOT_INO, "draft", ROOT_INO, "final")
        nursery.cancel_scope.cancel()
    monkeypatch.undo()
    assert recorded(tmp_path) == {"draft": b"acknowledged draft"}


async def test_a_rename_over_a_staged_file_interrupted_keeps_the_newer_record(tmp_path):
    """Renaming over a staged file writes the moved file's record first, then drops the
    replaced one: if the drop never reached the disk, two records name the key and the
    newer (the rename's) wins."""
    store = MemoryStore()
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery, write_back_delay_s=3600)
        await write_and_close(fs, "final", b"replaced")
        staging_dir = tmp_path / "cache" / "staging"
        before = {p.name: p.read_bytes() for p in staging_dir.iterdir()}
        await write_and_close(fs, "draft", b"acknowledged draft")
        await fs.rename(ROOT_INO, "draft", ROOT_INO, "final")
        nursery.cancel_scope.cancel()
    for name, content in before.items():  # as if the replaced record's removal were lost
        (staging_dir / name).write_bytes(content)
    assert recorded(tmp_path) == {"final": b"acknowledged draft"}
    assert len(list(staging_dir.glob("*.json"))) == 1


async def test_lineage_of_a_rename_never_deletes_a_newer_file_of_the_old_name(tmp_path):
    """Issue 19 item 1.2: first > f0; mv f0 f4; second > f0; +more >> f4; crash: both files
    are recovered with what each close acknowledged."""
    store = MemoryStore()
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery, write_back_delay_s=3600)
        await write_and_close(fs, "f0", b"first")
        await fs.rename(ROOT_INO, "f0", ROOT_INO, "f4")
        await write_and_close(fs, "f0", b"second")
        attr = await fs.lookup(ROOT_INO, "f4")
        opened = await fs.open(attr.ino, write=True)
        await fs.write(opened.fh, 5, b"+more")
        await fs.flush(opened.fh)
        fs.release(opened.fh)
        nursery.cancel_scope.cancel()
    assert recorded(tmp_path) == {"f0": b"second", "f4": b"first+more"}
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery)
        await wait_for(lambda: len(fs.staging) == 0, "recovery")
        assert {key: (await store.get_object(key))[1] for key in store.keys()} == {
            "f0": b"second", "f4": b"first+more"}
        nursery.cancel_scope.cancel()


async def test_o_trunc_of_a_journaled_file_leaves_its_acknowledged_state(tmp_path):
    """After open(O_TRUNC) of a file with a journaled change, a write, and a crash before any
    close, the next mount uploads what the last close acknowledged: never the old size as
    zeros, never the bytes written since."""
    store = MemoryStore()
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery, write_back_delay_s=3600)
        ino = await write_and_close(fs, "log.txt", b"hello, world")
        opened = await fs.open(ino, write=True, truncate=True)
        await fs.write(opened.fh, 0, b"hi")  # written, never acknowledged
        nursery.cancel_scope.cancel()  # the daemon dies with the file open
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery)
        await wait_for(lambda: len(fs.staging) == 0, "recovery")
        body = (await store.get_object("log.txt"))[1]
        assert body == b"hello, world", body
        nursery.cancel_scope.cancel()


async def test_a_journal_of_another_bucket_is_never_replayed(tmp_path, caplog):
    """A record names its bucket and endpoint; another mount's is kept."""
    store = MemoryStore()
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery, write_back_delay_s=3600)
        await write_and_close(fs, "theirs.txt", b"belongs to bucket one")
        nursery.cancel_scope.cancel()
    other = {"bucket": "two-1250000000", "endpoint": OWNER["endpoint"]}
    with caplog.at_level(logging.ERROR, logger="cosfs.write.journal"):
        async with trio.open_nursery() as nursery:
            fs = await start(store, tmp_path, nursery, owner=other)
            assert len(fs.staging) == 0
            nursery.cancel_scope.cancel()
    assert store.keys() == []
    assert "bucket 'one-1250000000'" in caplog.text and "not replayed" in caplog.text
    records = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "staging").glob("*.json")]
    assert [r["key"] for r in records] == ["theirs.txt"]  # kept for the right mount


async def test_recovery_refuses_a_record_whose_data_is_missing(tmp_path):
    """Recovery never uploads bytes the application did not write: a record that says more
    bytes were written than its data file holds is not replayed."""
    store = MemoryStore()
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery, write_back_delay_s=3600)
        await write_and_close(fs, "f", b"0123456789")
        nursery.cancel_scope.cancel()
    (data,) = (tmp_path / "cache" / "staging").glob("*.data")
    data.write_bytes(b"01234")
    assert recorded(tmp_path) == {}


async def test_edit_of_an_object_replaced_elsewhere_is_a_conflict_not_a_lost_update(tmp_path, caplog):
    """The commit checks the base version; on a conflict the local data is
    kept aside, the commit fails, and nothing is retried or overwritten."""
    store = MemoryStore()
    original = bytes(range(256)) * 4096  # 1 MiB
    await store.put_object("shared.bin", original)
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery)
        attr = await fs.lookup(ROOT_INO, "shared.bin")
        opened = await fs.open(attr.ino, write=True)
        assert bytes(await fs.read(opened.fh, 0, 16)) == original[:16]
        await store.put_object("shared.bin", b"written by another host")
        await fs.write(opened.fh, 100, b"EDIT")
        with caplog.at_level(logging.ERROR, logger="cosfs.write.owner"), pytest.raises(Conflict):
            await fs.flush(opened.fh)
        fs.release(opened.fh)
        assert (await store.get_object("shared.bin"))[1] == b"written by another host"
        (kept,) = fs.writeback.conflict_files()
        content = kept.read_bytes()
        assert len(content) == len(original) and content[100:104] == b"EDIT"
        assert str(kept) in caplog.text
        assert fs.status().conflicts == 1 and len(fs.staging) == 0
        puts = store.counts["put_object"]
        await trio.sleep(0.1)
        assert store.counts["put_object"] == puts  # never retried
        nursery.cancel_scope.cancel()


async def test_delayed_commit_of_a_conflict_is_not_retried(tmp_path):
    store = MemoryStore()
    await store.put_object("f", b"x" * 1000)
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery, write_back_delay_s=0.05)
        attr = await fs.lookup(ROOT_INO, "f")
        opened = await fs.open(attr.ino, write=True)
        await fs.write(opened.fh, 0, b"y")
        await store.put_object("f", b"other")
        await fs.flush(opened.fh)  # journaled; the commit comes later and conflicts
        fs.release(opened.fh)
        await wait_for(lambda: fs.writeback.conflicts == 1, "the conflict")
        await wait_for(lambda: not fs.writeback._scheduled, "the commit task to end")
        assert (await store.get_object("f"))[1] == b"other"
        nursery.cancel_scope.cancel()


async def test_directory_rename_moves_staged_files_and_their_commits(tmp_path):
    """A file journaled under a directory that is renamed before its delayed commit is
    committed under the new name; the old directory never comes back."""
    store = MemoryStore()
    await store.put_object("d1/", b"", WriteOptions(content_type="application/x-directory"))
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery, write_back_delay_s=0.2)
        d1 = await fs.lookup(ROOT_INO, "d1")
        opened, _ = await fs.create(d1.ino, "new.txt", 0o644, ME)
        await fs.write(opened.fh, 0, b"journaled")
        await fs.flush(opened.fh)
        fs.release(opened.fh)
        await fs.rename(ROOT_INO, "d1", ROOT_INO, "d2")
        await wait_for(lambda: len(fs.staging) == 0, "the delayed commit")
        assert store.keys() == ["d2/", "d2/new.txt"]
        assert (await store.get_object("d2/new.txt"))[1] == b"journaled"
        nursery.cancel_scope.cancel()


async def test_a_huge_object_posing_as_a_symlink_is_refused_before_any_get(tmp_path):
    """Readlink checks the size (from HEAD) against PATH_MAX before any GET."""
    store = MemoryStore()
    await store.put_object("link", b"x" * (8 * MiB), WriteOptions(user_meta={"mode": str(0o120777)}))
    await store.put_object("ok", b"target/file", WriteOptions(user_meta={"mode": str(0o120777)}))
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery)
        attr = await fs.lookup(ROOT_INO, "link")
        gets = store.counts["get_object"]
        with pytest.raises(InvalidName):
            await fs.readlink(attr.ino)
        assert store.counts["get_object"] == gets
        assert await fs.readlink((await fs.lookup(ROOT_INO, "ok")).ino) == "target/file"
        nursery.cancel_scope.cancel()


async def test_a_failed_part_fails_the_commit_as_one_error_and_keeps_the_data(tmp_path):
    """Parts upload in a nursery: a failure must reach close() and the delayed commits as
    the request's own error (an EIO, retried later), never as an exception group."""
    store = MemoryStore()
    data = bytes(range(256)) * (4096 * 24)  # 24 MiB: multipart, parts sent at close
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery)
        opened, _ = await fs.create(ROOT_INO, "big.bin", 0o644, ME)
        await fs.write(opened.fh, 0, data[:MiB])
        await fs.write(opened.fh, 2 * MiB, data[2 * MiB:])  # a hole: nothing streams before close
        store.fail_next("upload_part", TransientError("the server failed a part"))
        with pytest.raises(TransientError):
            await fs.flush(opened.fh)
        assert "big.bin" in [d.key for d in fs.staging.files()]
        await fs.flush(opened.fh)
        fs.release(opened.fh)
        assert (await store.get_object("big.bin"))[1] == data[:MiB] + bytes(MiB) + data[2 * MiB:]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("refusal", ["error", "file"])
async def test_a_server_that_cannot_store_directory_markers_keeps_directories_in_the_mount(tmp_path, caplog,
                                                                                           refusal):
    """Issue 9 item: some S3 servers answer a PUT of `dir/` with 500, others store a file
    `dir`; either way mkdir works, the directory lives in the mount until a file is put in
    it, one warning says so, and no stray object is left."""
    from cosfs.errors import CosError

    store = MemoryStore()
    if refusal == "error":
        store.fail_next("put_object", CosError(500, "InternalError", "cannot store this key"))
    else:
        real_put = store.put_object

        async def put_as_file(key, body, options=WriteOptions()):
            return await real_put(key[:-1] if key.endswith("/") else key, body, options)

        store.put_object = put_as_file
    async with trio.open_nursery() as nursery:
        fs = await start(store, tmp_path, nursery)
        with caplog.at_level(logging.WARNING, logger="cosfs.namespace"):
            d = await fs.mkdir(ROOT_INO, "d", 0o755, ME)
            sub = await fs.mkdir(d.ino, "sub", 0o755, ME)
        assert stat.S_ISDIR(sub.mode)
        assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
        assert "does not store directory markers" in caplog.text
        assert store.keys() == []  # no marker, and no stray file
        names = []
        handle = fs.opendir(d.ino)
        await fs.readdir(handle, 0, lambda name, attr, offset: names.append(name) or True)
        assert names == ["sub"]
        if refusal == "file":
            store.put_object = real_put
        await write_and_close_in(fs, sub.ino, "f.txt", b"data")
        assert store.keys() == ["d/sub/f.txt"]
        nursery.cancel_scope.cancel()


async def write_and_close_in(fs: CosFilesystem, parent: int, name: str, data: bytes) -> None:
    opened, _ = await fs.create(parent, name, 0o644, ME)
    await fs.write(opened.fh, 0, data)
    await fs.flush(opened.fh)
    fs.release(opened.fh)
