"""No background task's failure ends the mount (issue 19, section 2): an unexpected exception
(a bug, not a COS error) is injected into each kind of background work in turn; the core's
nursery must survive it, the data must stay staged, and the work must succeed once the
store behaves again."""

from __future__ import annotations

import logging

import pytest
import trio

from cosfs.config import FsConfig
from cosfs.cos.memory import MemoryStore
from cosfs.filesystem import Caller, CosFilesystem
from cosfs.inodes import ROOT_INO

ME = Caller(1000, 1000, 0o022)
MiB = 1024 * 1024


class Bug(RuntimeError):
    """Not a CosfsError: what a programming error looks like to the task that meets it."""


async def wait_for(condition, what: str) -> None:
    with trio.fail_after(20):
        while not condition():
            await trio.sleep(0.01)


async def write(fs, name: str, data: bytes, *, close: bool = True) -> int:
    opened, _ = await fs.create(ROOT_INO, name, 0o644, ME)
    for start in range(0, len(data), MiB):
        await fs.write(opened.fh, start, data[start:start + MiB])
    if close:
        await fs.flush(opened.fh)
        fs.release(opened.fh)
    return opened.fh


@pytest.mark.parametrize("work", ["streamed part", "delayed commit", "abort", "read-ahead", "list-ahead",
                                  "recovery"])
async def test_a_crashing_background_task_leaves_the_mount_up_and_the_data_kept(tmp_path, caplog, work):
    store = MemoryStore()
    data = bytes(range(256)) * (4096 * 20)  # 20 MiB: parts stream while it is written
    delay = 0.05 if work in ("delayed commit", "recovery") else 0.0
    config = FsConfig(write_back_delay_s=delay, multipart_threshold_bytes=16 * MiB)
    with caplog.at_level(logging.ERROR):
        if work == "recovery":  # a journaled file from an earlier mount, whose first retry crashes
            async with trio.open_nursery() as nursery:
                fs = CosFilesystem(store, FsConfig(write_back_delay_s=3600), tmp_path / "cache")
                await fs.start(nursery)
                await write(fs, "f.bin", b"journaled")
                nursery.cancel_scope.cancel()
            store.fail_next("put_object", Bug("injected"))
        async with trio.open_nursery() as nursery:
            fs = CosFilesystem(store, config, tmp_path / "cache")
            await fs.start(nursery)
            if work == "streamed part":
                store.fail_next("upload_part", Bug("injected"))
                await write(fs, "f.bin", data)
                expected = {"f.bin": data}
            elif work == "delayed commit":
                store.fail_next("put_object", Bug("injected"))
                await write(fs, "f.bin", b"small")
                await wait_for(lambda: "delayed" in caplog.text or "crashed" in caplog.text, "the crash")
                fs.sync_now()
                expected = {"f.bin": b"small"}
            elif work == "abort":
                store.fail_next("abort_multipart_upload", Bug("injected"))
                fh = await write(fs, "f.bin", data, close=False)
                await fs.unlink(ROOT_INO, "f.bin")  # its streamed upload is aborted in the background
                fs.release(fh)
                await write(fs, "g.bin", b"after")
                expected = {"g.bin": b"after"}
            elif work == "read-ahead":
                await store.put_object("r.bin", data)
                attr = await fs.lookup(ROOT_INO, "r.bin")
                opened = await fs.open(attr.ino, write=False)
                pieces = [bytes(await fs.read(opened.fh, 0, MiB))]
                store.fail_next("open_object", Bug("injected"), times=3)  # the read-ahead meets them
                for start in range(MiB, len(data), MiB):
                    for _ in range(5):  # a read that meets the bug itself fails (EIO), not the mount
                        try:
                            pieces.append(bytes(await fs.read(opened.fh, start, MiB)))
                            break
                        except Bug:
                            continue
                got = b"".join(pieces)
                fs.release(opened.fh)
                assert got == data
                expected = {"r.bin": data}
            elif work == "list-ahead":
                for d in range(4):
                    await store.put_object(f"t/d{d}/x", b"x")
                t = await fs.lookup(ROOT_INO, "t")
                store.fail_next("list_objects", Bug("injected"), times=2)
                for d in range(4):
                    entries = []
                    for _attempt in range(3):  # a readdir that meets the bug fails once (EIO), not the mount
                        try:
                            sub = await fs.lookup(t.ino, f"d{d}")
                            fh = fs.opendir(sub.ino)
                            await fs.readdir(fh, 0, lambda name, attr, offset: entries.append(name) or True)  # noqa: B023 (called at once)
                            fs.releasedir(fh)
                            break
                        except Bug:
                            continue
                    assert entries == ["x"]
                expected = {f"t/d{d}/x": b"x" for d in range(4)}
            else:  # recovery
                expected = {"f.bin": b"journaled"}
                await wait_for(lambda: "crashed" in caplog.text, "the crash")
                fs.sync_now()
            await wait_for(lambda: len(fs.staging) == 0, "every change committed")
            assert {key: (await store.get_object(key))[1] for key in store.keys()} == expected
            assert store.pending_uploads() == 0 or work == "abort"
            fs.check_invariants()
            nursery.cancel_scope.cancel()
    if work not in ("list-ahead", "read-ahead"):
        assert "Bug: injected" in caplog.text or "injected" in caplog.text
