"""CosClient against a real `cosfs serve` process over HTTP."""

from __future__ import annotations

import os
import socket

import pytest
import trio

from cosfs.config import CosConfig
from cosfs.cos import crc64
from cosfs.cos.auth import Credentials
from cosfs.cos.client import CosClient
from cosfs.cos.store import MIN_PART_BYTES, WriteOptions
from cosfs.credentials import StaticCredentials
from cosfs.errors import AccessDenied, CosError, NotFound, Stale, TransientError

from .conftest import client_for

ODD_KEYS = [
    "plain.txt", "dir/sub/file.bin", "a b", "a+b", "100%", "what?", "hash#tag", "emoji-😀", "目录/文件.txt",
    "a//b", "trailing/", "up/../x", "a/./b", "~tilde_-.", "semi;colon=eq&amp", "quote'\"", "back\\slash",
    "tab\tin", "x" * 200,
]


async def test_object_round_trip(client):
    await client.head_bucket()
    data = os.urandom(70_000)
    put = await client.put_object("d/f.bin", data, WriteOptions(content_type="application/x-test",
                                                                  user_meta={"mode": "33188", "uid": "1000"}))
    assert put.crc64 == crc64.crc64(data)
    meta = await client.head_object("d/f.bin")
    assert meta.size_bytes == len(data) and meta.etag == put.etag and meta.crc64 == put.crc64
    assert meta.content_type == "application/x-test"
    assert meta.user_meta == {"mode": "33188", "uid": "1000"}
    assert meta.last_modified_s > 0
    got_meta, body = await client.get_object("d/f.bin")
    assert body == data and got_meta.etag == put.etag
    meta, part = await client.get_object("d/f.bin", byte_range=(100, 199), if_match=put.etag)
    assert part == data[100:200] and meta.size_bytes == len(data)
    meta, tail = await client.get_object("d/f.bin", byte_range=(69_990, 80_000))
    assert tail == data[69_990:]
    meta, nothing = await client.get_object("d/f.bin", byte_range=(70_000, 80_000))
    assert nothing == b""
    with pytest.raises(Stale):
        await client.get_object("d/f.bin", byte_range=(0, 1), if_match="0" * 32)
    with pytest.raises(Stale):
        await client.head_object("d/f.bin", if_match="0" * 32)
    async with client.open_object("d/f.bin") as (meta, chunks):
        streamed = b"".join([c async for c in chunks])
    assert streamed == data and meta.crc64 == put.crc64
    async with client.open_object("d/f.bin", byte_range=(10, 20)) as (meta, chunks):
        assert b"".join([c async for c in chunks]) == data[10:21]
    empty = await client.put_object("empty", b"")
    assert (await client.get_object("empty"))[1] == b""
    assert (await client.get_object("empty", byte_range=(0, 10)))[1] == b""
    assert empty.crc64 == 0
    await client.delete_object("d/f.bin")
    await client.delete_object("d/f.bin")  # deleting a missing key succeeds
    with pytest.raises(NotFound) as info:
        await client.head_object("d/f.bin")
    assert info.value.code == "NoSuchKey"
    with pytest.raises(NotFound):
        await client.get_object("d/f.bin")


@pytest.mark.parametrize("signature", ["cos", "sigv4"])
async def test_odd_keys_round_trip_exactly(cos_server, signature):
    async with client_for(cos_server, signature=signature) as client:
        for index, key in enumerate(ODD_KEYS):
            await client.put_object(key, key.encode() + bytes([index]))
        listed = []
        async for page in client.list_all():
            listed += [e.key for e in page.entries]
        assert sorted(listed) == sorted(ODD_KEYS)
        for index, key in enumerate(ODD_KEYS):
            meta, body = await client.get_object(key)
            assert body == key.encode() + bytes([index]), key
            assert (await client.head_object(key)).size_bytes == len(body)
        # Keys differing only in encoding-sensitive ways stay distinct.
        assert (await client.get_object("a+b"))[1] != (await client.get_object("a b"))[1]
        page = await client.list_objects("a", delimiter="/")
        assert "a/" in page.common_prefixes and "a b" in [e.key for e in page.entries]
        result = await client.delete_objects(ODD_KEYS)
        assert sorted(result.deleted) == sorted(ODD_KEYS) and not result.failed
        assert [p async for p in client.list_all()][0].entries == ()


async def test_copy_and_replace_metadata(client):
    data = b"copy me" * 1000
    put = await client.put_object("src key", data, WriteOptions(content_type="text/plain", user_meta={"a": "1"}))
    copied = await client.copy_object("src key", "dst/key+1")
    assert copied.etag == put.etag
    meta = await client.head_object("dst/key+1")
    assert meta.user_meta == {"a": "1"} and meta.content_type == "text/plain"
    result = await client.copy_object("dst/key+1", "dst/key+1", replace_metadata=WriteOptions(
        content_type="application/x-new", user_meta={"mode": "16877", "b": "2"}))
    assert result.crc64 in (None, crc64.crc64(data))
    meta = await client.head_object("dst/key+1")
    assert meta.user_meta == {"mode": "16877", "b": "2"} and meta.content_type == "application/x-new"
    assert (await client.get_object("dst/key+1"))[1] == data
    with pytest.raises(Stale):
        await client.copy_object("src key", "other", source_if_match="0" * 32)
    with pytest.raises(NotFound):
        await client.copy_object("missing", "other")


async def test_append(client):
    first = await client.append_object("log", 0, b"hello ", WriteOptions(content_type="text/plain"))
    assert first.next_position == 6
    second = await client.append_object("log", 6, b"world")
    assert second.next_position == 11
    meta, body = await client.get_object("log")
    assert body == b"hello world" and meta.appendable
    with pytest.raises(CosError) as info:
        await client.append_object("log", 3, b"x")
    assert info.value.status == 409
    await client.put_object("normal", b"x")
    with pytest.raises(CosError) as info:
        await client.append_object("normal", 1, b"y")
    assert info.value.status == 409


async def test_many_keys_listing_paging_and_batched_delete(client):
    keys = [f"many/f{i:05d}" for i in range(1030)] + [f"many/d{i}/x" for i in range(5)] + ["many/zz", "other"]
    limiter = trio.CapacityLimiter(16)

    async def put(key):
        async with limiter:
            await client.put_object(key, b"")

    async with trio.open_nursery() as nursery:
        for key in keys:
            nursery.start_soon(put, key)
    pages = [page async for page in client.list_all("many/", delimiter="/")]
    assert len(pages) >= 2
    entries = [e.key for p in pages for e in p.entries]
    prefixes = [cp for p in pages for cp in p.common_prefixes]
    assert entries == sorted(k for k in keys if k.startswith("many/") and k.count("/") == 1)
    assert prefixes == [f"many/d{i}/" for i in range(5)]
    page = await client.list_objects("many/", delimiter="/", max_keys=3)
    assert page.is_truncated and len(page.entries) + len(page.common_prefixes) == 3
    result = await client.delete_objects(keys)
    assert len(result.deleted) == len(keys) and not result.failed
    assert [p async for p in client.list_all()][0].entries == ()


async def test_multipart(client):
    part1 = os.urandom(MIN_PART_BYTES)
    part2 = os.urandom(MIN_PART_BYTES + 5)
    tail = b"tail bytes"
    source = os.urandom(3 * MIN_PART_BYTES)
    await client.put_object("mp/source", source)
    upload_id = await client.create_multipart_upload("mp/target", WriteOptions(
        content_type="video/x-test", user_meta={"mode": "33188"}))
    p1 = await client.upload_part("mp/target", upload_id, 1, part1)
    p2 = await client.upload_part("mp/target", upload_id, 2, part2)
    p3 = await client.upload_part_copy("mp/target", upload_id, 3, "mp/source", (MIN_PART_BYTES, 2 * MIN_PART_BYTES - 1))
    p4 = await client.upload_part("mp/target", upload_id, 4, tail)
    assert p3.size_bytes == MIN_PART_BYTES
    listed = await client.list_parts("mp/target", upload_id)
    assert [(p.part_number, p.etag, p.size_bytes) for p in listed] == [
        (p.part_number, p.etag, p.size_bytes) for p in (p1, p2, p3, p4)]
    other = await client.create_multipart_upload("mp/abandoned")
    uploads = await client.list_multipart_uploads("mp/")
    assert {(u.key, u.upload_id) for u in uploads} == {("mp/target", upload_id), ("mp/abandoned", other)}
    await client.abort_multipart_upload("mp/abandoned", other)
    with pytest.raises(NotFound):
        await client.list_parts("mp/abandoned", other)
    if p3.crc64 is None:  # a server without part CRCs: use the local value for the combined check
        p3 = type(p3)(p3.part_number, p3.etag, p3.size_bytes, crc64.crc64(source[MIN_PART_BYTES:2 * MIN_PART_BYTES]))
    result = await client.complete_multipart_upload("mp/target", upload_id, [p4, p2, p3, p1])
    expected = part1 + part2 + source[MIN_PART_BYTES:2 * MIN_PART_BYTES] + tail
    assert result.crc64 == crc64.crc64(expected)
    meta, body = await client.get_object("mp/target")
    assert body == expected and meta.content_type == "video/x-test" and meta.user_meta == {"mode": "33188"}
    assert meta.etag == result.etag
    assert await client.list_multipart_uploads() == []
    with pytest.raises(NotFound):
        await client.upload_part("mp/target", upload_id, 1, b"x")


async def test_multipart_small_part_is_refused(client):
    upload_id = await client.create_multipart_upload("small")
    p1 = await client.upload_part("small", upload_id, 1, b"too small")
    p2 = await client.upload_part("small", upload_id, 2, b"last")
    with pytest.raises(CosError) as info:
        await client.complete_multipart_upload("small", upload_id, [p1, p2])
    assert info.value.code == "EntityTooSmall"
    await client.abort_multipart_upload("small", upload_id)


async def test_sigv4_mode(cos_server):
    async with client_for(cos_server, signature="sigv4") as client:
        await client.head_bucket()
        await client.put_object("v4/a b", b"sigv4 body", WriteOptions(user_meta={"k": "v"}))
        assert (await client.get_object("v4/a b"))[1] == b"sigv4 body"
        page = await client.list_objects("v4/")
        assert [e.key for e in page.entries] == ["v4/a b"]
        upload_id = await client.create_multipart_upload("v4/mp")
        part = await client.upload_part("v4/mp", upload_id, 1, b"only part")
        await client.complete_multipart_upload("v4/mp", upload_id, [part])
        assert (await client.get_object("v4/mp"))[1] == b"only part"
        await client.delete_objects(["v4/a b", "v4/mp"])


async def test_wrong_secret_is_signature_does_not_match(cos_server):
    for signature in ("cos", "sigv4"):
        async with client_for(cos_server, secret_key="not-the-secret", signature=signature) as client:
            with pytest.raises(AccessDenied) as info:
                await client.head_object("anything")
            with pytest.raises(AccessDenied) as info:
                await client.get_object("anything")
            assert info.value.code == "SignatureDoesNotMatch"
            assert "not-the-secret" not in str(info.value)


async def test_missing_bucket(cos_server):
    async with client_for(cos_server, bucket="nosuchbucket-1250000000") as client:
        with pytest.raises(NotFound) as info:
            await client.head_bucket()
        assert info.value.code == "NoSuchBucket"
        with pytest.raises(NotFound) as info:
            await client.get_object("k")
        assert info.value.code == "NoSuchBucket"


async def test_unreachable_endpoint(cos_server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = CosConfig(bucket=cos_server.bucket, endpoint_url=f"http://127.0.0.1:{port}", retries=2,
                    retry_base_delay_s=0.001, retry_max_delay_s=0.002)
    async with CosClient(cfg, StaticCredentials(Credentials(cos_server.secret_id, cos_server.secret_key))) as client:
        with pytest.raises(TransientError, match="ConnectError.*gave up after 3 attempts"):
            await client.head_object("k")


@pytest.mark.parametrize("seed", [7, 11])
async def test_operations_survive_injected_faults(server_factory, seed):
    server = server_factory("--fault", f"503=0.2,500=0.05,reset=0.05,truncate=0.05,seed={seed}")
    async with client_for(server, retries=12) as client:
        blobs = {f"f/{i}": os.urandom(1000 + 37 * i) for i in range(12)}
        for key, data in blobs.items():
            await client.put_object(key, data)
        for key, data in blobs.items():
            assert (await client.get_object(key))[1] == data
            async with client.open_object(key) as (meta, chunks):
                assert b"".join([c async for c in chunks]) == data
            assert (await client.get_object(key, byte_range=(5, 50)))[1] == data[5:51]
        big = os.urandom(2 * MIN_PART_BYTES + 100)
        upload_id = await client.create_multipart_upload("f/big")
        parts = [await client.upload_part("f/big", upload_id, n + 1, big[n * MIN_PART_BYTES:(n + 1) * MIN_PART_BYTES])
                 for n in range(3)]
        await client.complete_multipart_upload("f/big", upload_id, parts)
        assert (await client.get_object("f/big"))[1] == big
        listed = [e.key for p in [p async for p in client.list_all("f/")] for e in p.entries]
        assert sorted(listed) == sorted([*blobs, "f/big"])
        await client.copy_object("f/0", "f/copy")
        assert (await client.get_object("f/copy"))[1] == blobs["f/0"]
        result = await client.delete_objects(list(blobs))
        assert not result.failed


async def test_server_down_ends_in_transient_error(server_factory):
    server = server_factory("--fault", "503=1.0")
    async with client_for(server, retries=3) as client:
        with pytest.raises(TransientError, match="gave up after 4 attempts") as info:
            await client.put_object("k", b"v")
    assert info.value.status == 503


@pytest.mark.parametrize("signature", ["cos", "sigv4"])
async def test_security_token(server_factory, signature):
    server = server_factory("--security-token", "tok/with+special=chars")
    cfg = CosConfig(bucket=server.bucket, endpoint_url=server.endpoint, signature=signature, retries=0)
    good = StaticCredentials(Credentials(server.secret_id, server.secret_key, token="tok/with+special=chars"))
    async with CosClient(cfg, good) as client:
        await client.put_object("t", b"with token")
        assert (await client.get_object("t"))[1] == b"with token"
    bad = StaticCredentials(Credentials(server.secret_id, server.secret_key, token="stale"))
    async with CosClient(cfg, bad) as client:
        with pytest.raises(CosError) as info:
            await client.get_object("t")
    assert info.value.status in (400, 403) and "stale" not in str(info.value)
