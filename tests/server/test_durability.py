"""Issue 11, part 3: what `cosfs serve` acknowledges, it keeps.

Races are made deterministic by pausing the server's worker threads inside its own trio loop
(tests/server/inproc.py); directory durability is observed by watching which directories are
fsynced.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import httpx
import pytest
import trio

from cosfs.server import storage as storage_module

from .helpers import CosHttp, error_code
from .inproc import in_process_server

MiB = 1024 * 1024


def complete_xml(parts: list[tuple[int, str]]) -> bytes:
    inner = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in parts)
    return f"<CompleteMultipartUpload>{inner}</CompleteMultipartUpload>".encode()


async def test_complete_racing_upload_part_keeps_the_object_it_acknowledged(tmp_path: Path, monkeypatch):
    """Complete answered 200, yet a part uploaded while it assembled made the object unreadable
    (its trailer described other parts): GET answered 404, and a restart lost it."""
    part1, part2 = os.urandom(MiB), b"the last part"
    async with in_process_server(tmp_path / "root") as server, httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        r = await cos.request("POST", "mp", params={"uploads": ""})
        upload_id = r.text.split("<UploadId>")[1].split("</UploadId>")[0]
        etags = []
        for number, data in ((1, part1), (2, part2)):
            r = await cos.put("mp", data, params={"partNumber": str(number), "uploadId": upload_id})
            assert r.status_code == 200
            etags.append(r.headers["etag"])

        # Complete's assembly (a worker thread) waits until the racing part had its chance.
        assembling, raced = threading.Event(), threading.Event()
        copy_range = storage_module._copy_range

        def paused_copy(*args):
            assembling.set()
            raced.wait(timeout=5)
            copy_range(*args)

        monkeypatch.setattr(storage_module, "_copy_range", paused_copy)
        answers = {}

        async def complete():
            answers["complete"] = await cos.request("POST", "mp", params={"uploadId": upload_id},
                                                    content=complete_xml([(1, etags[0]), (2, etags[1])]))

        async def racing_part():
            assert await trio.to_thread.run_sync(assembling.wait, 5)  # Complete is assembling
            with trio.move_on_after(1):  # (a part that must wait for Complete waits here)
                answers["part"] = await cos.put("mp", b"a different and longer last part",
                                                params={"partNumber": "2", "uploadId": upload_id})
            raced.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(complete)
            nursery.start_soon(racing_part)
        if "part" not in answers:  # it waited for Complete, as it should: let it finish now
            answers["part"] = await cos.put("mp", b"a different and longer last part",
                                            params={"partNumber": "2", "uploadId": upload_id})
        monkeypatch.setattr(storage_module, "_copy_range", copy_range)

        assert answers["complete"].status_code == 200, answers["complete"].text
        r = await cos.get("mp")
        assert r.status_code == 200 and r.content == part1 + part2
        server.restart()
        r = await cos.get("mp")
        assert r.status_code == 200 and r.content == part1 + part2
        # the racing part waited for Complete, then found the upload gone: not acknowledged
        part_answer = answers["part"]
        assert part_answer.status_code == 404 and error_code(part_answer) == "NoSuchUpload"


async def test_two_appends_at_one_position_one_wins(tmp_path: Path, monkeypatch):
    """Both answered 200 and one was lost: the position was checked before an await and the
    new version installed after it."""
    finish = storage_module.TempFile.finish
    both_sealing = threading.Barrier(2, timeout=3)

    def finish_together(self, record, durable=True):
        try:
            both_sealing.wait()  # the two appends seal their files at the same time
        except threading.BrokenBarrierError:
            pass
        finish(self, record, durable)

    async with in_process_server(tmp_path / "root") as server, httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        r = await cos.request("POST", "log", params={"append": "", "position": "0"}, content=b"start|")
        assert r.status_code == 200
        monkeypatch.setattr(storage_module.TempFile, "finish", finish_together)
        answers: dict[bytes, httpx.Response] = {}

        async def append(data: bytes):
            answers[data] = await cos.request("POST", "log", params={"append": "", "position": "6"}, content=data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(append, b"first")
            nursery.start_soon(append, b"second")
        monkeypatch.setattr(storage_module.TempFile, "finish", finish)
        statuses = sorted(r.status_code for r in answers.values())
        assert statuses == [200, 409], {k: (r.status_code, r.text) for k, r in answers.items()}
        winner = next(data for data, r in answers.items() if r.status_code == 200)
        loser = next(r for r in answers.values() if r.status_code == 409)
        assert error_code(loser) == "AppendPositionErr"
        assert (await cos.get("log")).content == b"start|" + winner
        server.restart()
        assert (await cos.get("log")).content == b"start|" + winner


async def test_append_racing_a_delete_or_put_is_refused(tmp_path: Path, monkeypatch):
    """An append whose base version is replaced while its body arrives must not resurrect it."""
    async with in_process_server(tmp_path / "root") as server, httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        await cos.request("POST", "log", params={"append": "", "position": "0"}, content=b"abc")
        body_sent = trio.Event()
        go_on = trio.Event()

        async def slow_body():
            yield b"de"
            body_sent.set()
            await go_on.wait()
            yield b"f"

        answers = {}

        async def append():
            built = cos.build("POST", "log", params={"append": "", "position": "3"}, headers={"Content-Length": "3"})
            answers["append"] = await client.send(httpx.Request("POST", built.url, headers=built.headers,
                                                                content=slow_body()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(append)
            await body_sent.wait()
            await trio.sleep(0.1)
            assert (await cos.put("log", b"replaced")).status_code == 200
            go_on.set()
        assert answers["append"].status_code == 409
        assert (await cos.get("log")).content == b"replaced"


# --- directory fsync ---------------------------------------------------------------------------


class FsyncWatch:
    """Which directories os.fsync was called on (from any thread)."""

    def __init__(self) -> None:
        self.dirs: list[Path] = []
        self._real = os.fsync

    def fsync(self, fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            self.dirs.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        self._real(fd)

    def take(self) -> set[Path]:
        found, self.dirs = set(self.dirs), []
        return found


@pytest.fixture
def fsyncs(monkeypatch) -> FsyncWatch:
    watch = FsyncWatch()
    monkeypatch.setattr(os, "fsync", watch.fsync)
    return watch


async def test_directory_entries_are_fsynced(tmp_path: Path, fsyncs: FsyncWatch):
    """Every acknowledged change of a directory entry an object depends on is fsynced: fan-out
    directories made for it, the rename into place, an unlink, an upload's directory, a new
    bucket, bucket.json."""
    root = (tmp_path / "root").resolve()
    async with in_process_server(root) as server, httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        bucket_dir = root / server.bucket
        objects = bucket_dir / "objects"
        fsyncs.take()

        assert (await cos.put("fresh", b"data")).status_code == 200
        target = server.storage.get(server.bucket).object_path("fresh")
        assert {target.parent, target.parent.parent, objects} <= fsyncs.take()

        assert (await cos.put("fresh", b"again")).status_code == 200
        assert target.parent in fsyncs.take()

        assert (await cos.delete("fresh")).status_code == 204
        assert target.parent in fsyncs.take()
        r = await cos.request("POST", "", params={"delete": ""},
                              content=b"<Delete><Object><Key>fresh</Key></Object></Delete>")
        assert r.status_code == 200

        r = await cos.request("POST", "mp", params={"uploads": ""})
        upload_id = r.text.split("<UploadId>")[1].split("</UploadId>")[0]
        assert bucket_dir / "uploads" in fsyncs.take()
        assert (await cos.delete("mp", params={"uploadId": upload_id})).status_code == 204
        assert bucket_dir / "uploads" in fsyncs.take()

        r = await cos.request("POST", "mp2", params={"uploads": ""})
        upload_id = r.text.split("<UploadId>")[1].split("</UploadId>")[0]
        etag = (await cos.put("mp2", b"x", params={"partNumber": "1", "uploadId": upload_id})).headers["etag"]
        fsyncs.take()
        r = await cos.request("POST", "mp2", params={"uploadId": upload_id}, content=complete_xml([(1, etag)]))
        assert r.status_code == 200
        assert bucket_dir / "uploads" in fsyncs.take()  # the finished upload does not come back

        assert (await cos.request("PUT", "", bucket="another-1250000000")).status_code == 200
        assert root in fsyncs.take()
        reply = await cos.request("PUT", "", params={"acl": ""}, headers={"x-cos-acl": "public-read"})
        assert reply.status_code == 200
        assert bucket_dir in fsyncs.take()
        assert (await cos.request("DELETE", "", bucket="another-1250000000")).status_code == 204
        assert root in fsyncs.take()


async def test_concurrent_bucket_creation_answers_once(tmp_path: Path):
    async with in_process_server(tmp_path / "root") as server, httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        answers = []

        async def create():
            answers.append(await cos.request("PUT", "", bucket="fresh-1250000000"))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(create)
        assert sorted(r.status_code for r in answers) == [200, 409, 409, 409]


async def test_a_bucket_deleted_under_a_put_stays_deleted(tmp_path: Path):
    """A PUT still receiving its body when its (empty) bucket is deleted must not bring the
    bucket's directories back: after a restart the bucket would reappear."""
    async with in_process_server(tmp_path / "root", buckets=("doomed-1250000000",)) as server, \
            httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        body_started, go_on = trio.Event(), trio.Event()

        async def slow_body():
            yield b"first half "
            body_started.set()
            await go_on.wait()
            yield b"second half"

        answers = {}

        async def put():
            built = cos.build("PUT", "late", headers={"Content-Length": "22"})
            answers["put"] = await client.send(httpx.Request("PUT", built.url, headers=built.headers,
                                                             content=slow_body()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(put)
            await body_started.wait()
            await trio.sleep(0.1)
            assert (await cos.request("DELETE", "")).status_code == 204
            go_on.set()
        assert answers["put"].status_code == 404 and error_code(answers["put"]) == "NoSuchBucket"
        assert not (server.root / "doomed-1250000000").exists()
        server.restart()
        assert (await cos.head("")).status_code == 404
