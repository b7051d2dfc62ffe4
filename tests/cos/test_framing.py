"""The HTTP framing corpus (issue 20): every operation the mount uses, against `cosfs serve`
writing its replies the ways deployed servers, proxies and CDNs do (`--fault frame=...`,
cosfs/server/framing.py): chunked bodies split inside chunk-size lines and CRLFs and arriving
after the head, chunk extensions and trailers, Content-Length bodies split anywhere, 100
Continue before the answer, `Connection: close`, and keep-alive connections the server
closes without saying so. The client must read every reply as the unframed server's.
(The mount runs through the same framings in tests/apps.)"""

from __future__ import annotations

import hashlib
import os

import pytest

from cosfs.cos import crc64
from cosfs.cos.store import WriteOptions
from cosfs.errors import NotFound
from tests.cos.conftest import client_for

MiB = 1024 * 1024
FRAMINGS = ["chunked", "chunked+split", "chunked+extensions+split", "split", "continue+split", "close",
            "idle-close", "chunked+extensions+split+continue+idle-close"]


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_every_operation_reads_every_framing(server_factory, framing):
    server = server_factory("--fault", f"frame={framing},seed=7")
    data = os.urandom(3 * MiB + 5)
    async with client_for(server, retries=2) as client:
        await client.head_bucket()
        put = await client.put_object("d/a", data, WriteOptions(user_meta={"mode": "33188"}))
        assert put.etag == hashlib.md5(data).hexdigest() and put.crc64 == crc64.crc64(data)
        assert (await client.get_object("d/a"))[1] == data
        assert (await client.get_object("d/a", byte_range=(5, 100_004)))[1] == data[5:100_005]
        async with client.open_object("d/a", byte_range=(MiB, 3 * MiB - 1), if_match=put.etag) as (meta, chunks):
            assert b"".join([bytes(c) async for c in chunks]) == data[MiB:3 * MiB]
        head = await client.head_object("d/a")
        assert (head.size_bytes, head.etag, head.user_meta) == (len(data), put.etag, {"mode": "33188"})
        with pytest.raises(NotFound):
            await client.head_object("d/absent")
        await client.put_object("d/empty", b"")
        assert (await client.get_object("d/empty"))[1] == b""
        for i in range(30):
            await client.put_object(f"d/many/{i:02d}", b"x")
        page = await client.list_objects("d/", delimiter="/")
        assert ([e.key for e in page.entries], list(page.common_prefixes)) == (["d/a", "d/empty"], ["d/many/"])
        paged = [e.key async for p in client.list_all("d/many/") for e in p.entries]
        assert len(paged) == 30
        copied = await client.copy_object("d/a", "d/b", source_if_match=put.etag)
        assert copied.etag == put.etag
        # directory markers: created, their metadata replaced by a self-copy (chmod of a folder)
        marker = WriteOptions(content_type="application/x-directory", user_meta={"mode": "16877"})
        await client.put_object("dir/", b"", marker)
        await client.copy_object("dir/", "dir/", replace_metadata=WriteOptions(
            content_type="application/x-directory", user_meta={"mode": "16832"}))
        assert (await client.head_object("dir/")).user_meta["mode"] == "16832"
        # multipart: parts, a part copy, listing parts and uploads, complete, abort
        upload = await client.create_multipart_upload("mp", WriteOptions(user_meta={"mode": "33188"}))
        first = await client.upload_part("mp", upload, 1, data[:5 * MiB] if len(data) > 5 * MiB else data + bytes(
            5 * MiB - len(data)))
        second = await client.upload_part_copy("mp", upload, 2, "d/a", (0, MiB - 1), source_if_match=put.etag)
        assert [p.part_number for p in await client.list_parts("mp", upload)] == [1, 2]
        assert [u.upload_id for u in await client.list_multipart_uploads("mp")] == [upload]
        done = await client.complete_multipart_upload("mp", upload, [first, second])
        assert (await client.head_object("mp")).etag == done.etag
        other = await client.create_multipart_upload("gone")
        await client.abort_multipart_upload("gone", other)
        assert await client.list_multipart_uploads() == []
        # appendable objects
        appended = await client.append_object("log", 0, b"one")
        await client.append_object("log", appended.next_position, b"two")
        assert (await client.get_object("log"))[1] == b"onetwo"
        await client.delete_objects(["d/b", "d/empty"])
        await client.delete_object("d/a")
        assert sorted(k for k in [e.key async for p in client.list_all("") for e in p.entries]
                      if not k.startswith("d/many/")) == ["dir/", "log", "mp"]
