"""CosClient speaking S3 (SigV4 mounts) to a server that is not COS: `FakeS3` answers as
`rclone serve s3` does (tests/s3compat runs the real one).

A. a ranged GET answered 200 with a Content-Range is that range;
B. requests carry x-amz-* names (a copy sent with x-cos-* names is an empty upload over its
   destination), a reply that is not a copy result is never a successful copy, and a copy the
   dialect cannot express is never sent;
D. after Complete, the committed version is the one HEAD shows;
E. user metadata goes out as x-amz-meta-* and is read back from either prefix.
"""

from __future__ import annotations

import hashlib
import logging
import os

import httpx
import pytest

from cosfs.blocks import BlockCache, ObjectRef
from cosfs.config import CosConfig
from cosfs.cos import crc64
from cosfs.cos.auth import Credentials
from cosfs.cos.client import CosClient
from cosfs.cos.endpoint import COS_DIALECT, S3_DIALECT
from cosfs.cos.s3_servers import PartCopy
from cosfs.cos.store import MIN_PART_BYTES, PartInfo, WriteOptions
from cosfs.credentials import StaticCredentials
from cosfs.errors import ProtocolError, Stale, TransientError, Unsupported

from .fakecos import (
    BUCKET,
    EMPTY_MD5,
    REGION,
    SECRET_ID,
    SECRET_KEY,
    TOKEN,
    FakeCos,
    FakeS3,
)
from .test_client_mock import make_client
from .test_tolerance import ChunkStream, client_warnings

MiB = 1024 * 1024


@pytest.fixture
def s3() -> FakeS3:
    return FakeS3()


@pytest.fixture
def fake() -> FakeCos:
    return FakeCos()


def s3_client(fake: FakeCos, *, retries: int = 0, token: str | None = None, **config) -> CosClient:
    cfg = CosConfig(bucket=BUCKET, endpoint_url="http://127.0.0.1:9000", signature="sigv4", path_style=True,
                    region=REGION, retries=retries, retry_base_delay_s=0.001, **config)
    return CosClient(cfg, StaticCredentials(Credentials(SECRET_ID, SECRET_KEY, token=token)),
                     transport=httpx.MockTransport(fake))


def sent_headers(request: httpx.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def protocol_names(request: httpx.Request) -> set[str]:
    return {k for k in sent_headers(request) if k.startswith(("x-cos-", "x-amz-"))}


# --- A. a 200 with a Content-Range ----------------------------------------------------------

async def test_ranged_get_answered_200_with_its_content_range_is_that_range(s3, autojump_clock):
    data = os.urandom(3 * MiB + 7)
    s3.objects["big"] = (data, {})
    async with s3_client(s3) as client:
        meta, body = await client.get_object("big", byte_range=(MiB, 2 * MiB - 1))
        assert body == data[MiB:2 * MiB] and meta.size_bytes == len(data)  # not the 1 MiB body's size
        async with client.open_object("big", byte_range=(5, 2 * MiB)) as (meta, chunks):
            assert b"".join([c async for c in chunks]) == data[5:2 * MiB + 1]
            assert meta.size_bytes == len(data)
        assert (await client.get_object("big", byte_range=(len(data) - 3, len(data) + 50)))[1] == data[-3:]
        assert (await client.get_object("big", byte_range=(len(data) + 1, len(data) + 50)))[1] == b""  # 416
        assert (await client.get_object("big"))[1] == data
    statuses = [r.headers.get("range") for r in s3.requests if r.method == "GET"]
    assert statuses[0] == f"bytes={MiB}-{2 * MiB - 1}"


async def test_block_cache_over_a_server_answering_ranges_with_200(s3, autojump_clock, tmp_path):
    # Before: every 200 was taken for the whole object, its first MiB for the block asked for
    # ("short body ... blocks missing", EIO).
    data = os.urandom(3 * MiB + 4321)
    s3.objects["big"] = (data, {})
    async with s3_client(s3) as client:
        cache = BlockCache(client, tmp_path, MiB, 16 * MiB, 2)
        cache.load()
        ref = ObjectRef("big", hashlib.md5(data).hexdigest(), len(data))
        assert await cache.read(ref, MiB - 10, 2 * MiB) == data[MiB - 10:3 * MiB - 10]
        assert await cache.read(ref, 3 * MiB, 10_000) == data[3 * MiB:]
        assert await cache.read(ref, 0, 100) == data[:100]
    cache.check_invariants()


async def test_200_with_the_content_range_of_the_range_streamed(fake, autojump_clock):
    # No Content-Length: the Content-Range alone tells where the body ends; a byte more is refused.
    fake.script = [lambda r: httpx.Response(200, headers={"content-range": "bytes 2-5/10", "etag": '"e"'},
                                            stream=ChunkStream(b"2345", 3))]
    async with make_client(fake) as client:
        assert (await client.get_object("k", byte_range=(2, 5)))[1] == b"2345"
        fake.script = [lambda r: httpx.Response(200, headers={"content-range": "bytes 2-5/10"},
                                                stream=ChunkStream(b"234567", 3))]
        with pytest.raises(ProtocolError, match="longer than its Content-Range"):
            await client.get_object("k", byte_range=(2, 5))


def reply_200(content_range: str, body: bytes):
    return lambda r: httpx.Response(200, headers={"content-range": content_range, "etag": '"e"'}, content=body)


BAD_200 = {
    "other start": reply_200("bytes 0-3/10", b"0123"),
    "short, not at the end": reply_200("bytes 2-4/10", b"234"),
    "longer": reply_200("bytes 2-6/10", b"23456"),
    "body longer than the span": reply_200("bytes 2-5/10", b"234567"),
    "body shorter than the span": reply_200("bytes 2-5/10", b"234"),
    "unusable Content-Range": reply_200("bytes two-five/10", b"2345"),
    "whole-object span, part of the body": reply_200("bytes 0-9/10", b"2345"),
}


@pytest.mark.parametrize("door", ["get_object", "open_object"])
@pytest.mark.parametrize("case", sorted(BAD_200))
async def test_200_with_another_content_range_is_refused(fake, autojump_clock, caplog, door, case):
    fake.script = [BAD_200[case]]
    async with make_client(fake, retries=0) as client:
        with pytest.raises(ProtocolError):
            if door == "get_object":
                await client.get_object("k", byte_range=(2, 5))
            else:
                async with client.open_object("k", byte_range=(2, 5)) as (_, chunks):
                    async for _ in chunks:
                        pass
    (warning,) = client_warnings(caplog)
    assert "status=200" in warning


async def test_200_with_the_whole_objects_content_range_is_sliced(fake, autojump_clock):
    fake.script = [reply_200("bytes 0-9/10", b"0123456789")] * 2
    async with make_client(fake) as client:
        meta, body = await client.get_object("k", byte_range=(2, 5))
        assert body == b"2345" and meta.size_bytes == 10
        async with client.open_object("k", byte_range=(8, 20)) as (_, chunks):
            assert b"".join([c async for c in chunks]) == b"89"
        fake.script = [lambda r: httpx.Response(200, headers={"content-range": "bytes 0-9/10"},
                                                stream=ChunkStream(b"0123456789", 4))]
        async with client.open_object("k", byte_range=(3, 4)) as (meta, chunks):  # no Content-Length
            assert b"".join([c async for c in chunks]) == b"34" and meta.size_bytes == 10


async def test_whole_object_get_answered_200_with_part_of_it_is_refused(fake, autojump_clock):
    fake.script = [reply_200("bytes 0-3/10", b"0123")] * 2
    async with make_client(fake, retries=0) as client:
        with pytest.raises(ProtocolError, match="Content-Range"):
            await client.get_object("k")
        with pytest.raises(ProtocolError, match="Content-Range"):
            async with client.open_object("k") as (_, chunks):
                async for _ in chunks:
                    pass


async def test_resume_of_a_range_answered_200_with_content_range(s3, autojump_clock):
    data = os.urandom(100_000)
    s3.objects["k"] = (data, {})

    def broken(request):  # the first 1000 bytes of the range, then the connection breaks
        reply = s3.serve(request)
        return httpx.Response(200, headers=reply.headers, stream=_Broken(reply.content[:1000]))

    s3.script = [broken]
    async with s3_client(s3, retries=2) as client:
        async with client.open_object("k", byte_range=(10, 60_009)) as (_, chunks):
            assert b"".join([c async for c in chunks]) == data[10:60_010]
    ranges = [r.headers.get("range") for r in s3.requests]
    assert ranges == ["bytes=10-60009", "bytes=1010-60009"]
    assert s3.requests[1].headers["if-match"] == f'"{hashlib.md5(data).hexdigest()}"'


class _Broken(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self):
        yield self._data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


# --- B. x-amz-* names on the wire ---------------------------------------------------------------

async def test_sigv4_requests_carry_x_amz_names_only(s3, autojump_clock):
    async with s3_client(s3, token=TOKEN, storage_class="STANDARD_IA") as client:
        options = WriteOptions(content_type="text/plain", user_meta={"mode": "33188", "mtime": "1"}, acl="private")
        await client.put_object("src", b"hello", options)
        await client.copy_object("src", "dst", source_if_match=hashlib.md5(b"hello").hexdigest())
        await client.copy_object("src", "src", replace_metadata=WriteOptions(user_meta={"mode": "33261"}))
        upload_id = await client.create_multipart_upload("mp", options)
        s3.part_copy = True
        await client.upload_part_copy("mp", upload_id, 1, "src", (0, 4),
                                      source_if_match=hashlib.md5(b"hello").hexdigest())
    assert not [r for r in s3.requests if any(n.startswith("x-cos-") for n in protocol_names(r))]
    put, copy, self_copy, _, initiate, _, _, _, part_copy = s3.requests  # the probe: initiate, copy, abort
    assert {k: v for k, v in sent_headers(put).items() if k.startswith("x-amz-") and "date" not in k
            and "sha256" not in k} == {
        "x-amz-meta-mode": "33188", "x-amz-meta-mtime": "1", "x-amz-storage-class": "STANDARD_IA",
        "x-amz-acl": "private", "x-amz-security-token": TOKEN}
    copied = sent_headers(copy)
    assert copied["x-amz-copy-source"] == f"/{BUCKET}/src"
    assert copied["x-amz-metadata-directive"] == "COPY"
    assert copied["x-amz-copy-source-if-match"] == f'"{hashlib.md5(b"hello").hexdigest()}"'
    assert sent_headers(self_copy)["x-amz-metadata-directive"] == "REPLACE"
    assert sent_headers(initiate)["x-amz-meta-mode"] == "33188"
    ranged = sent_headers(part_copy)
    assert ranged["x-amz-copy-source"] == f"/{BUCKET}/src" and ranged["x-amz-copy-source-range"] == "bytes=0-4"
    assert s3.objects["dst"][0] == b"hello"  # copied, not emptied


async def test_sse_headers_in_the_s3_dialect(s3, autojump_clock):
    key = bytes(range(32))
    async with s3_client(s3, server_side_encryption="SSE-C", sse_customer_key=key) as client:
        await client.put_object("a", b"x")
        await client.copy_object("a", "b")
        await client.head_object("b")
    names = [protocol_names(r) - {"x-amz-date", "x-amz-content-sha256"} for r in s3.requests]
    customer = {"x-amz-server-side-encryption-customer-algorithm", "x-amz-server-side-encryption-customer-key",
                "x-amz-server-side-encryption-customer-key-md5"}
    assert names[0] == customer and names[2] == customer
    assert names[1] == customer | {n.replace("x-amz-", "x-amz-copy-source-") for n in customer} | {
        "x-amz-copy-source", "x-amz-metadata-directive"}
    s3.requests.clear()
    async with s3_client(s3, server_side_encryption="cos/kms", sse_kms_key_id="kms-1") as client:
        await client.put_object("c", b"x")
    sent = sent_headers(s3.requests[0])
    assert sent["x-amz-server-side-encryption"] == "aws:kms"
    assert sent["x-amz-server-side-encryption-aws-kms-key-id"] == "kms-1"


async def test_cos_dialect_is_unchanged(fake, autojump_clock):
    fake.objects["src"] = (b"hello", {})
    async with make_client(fake, storage_class="STANDARD_IA") as client:
        await client.put_object("k", b"v", WriteOptions(user_meta={"mode": "1"}))
        await client.copy_object("src", "dst", source_if_match=hashlib.md5(b"hello").hexdigest())
    assert all(not n.startswith("x-amz-") for r in fake.requests for n in protocol_names(r))
    copied = sent_headers(fake.requests[1])
    assert copied["x-cos-copy-source"] == f"/{BUCKET}/src" and copied["x-cos-metadata-directive"] == "Copy"
    assert sent_headers(fake.requests[0])["x-cos-meta-mode"] == "1"
    assert COS_DIALECT.outgoing({"x-cos-meta-a": "1"}) == ({"x-cos-meta-a": "1"}, [])


def test_dialect_translation_table():
    sent, foreign = S3_DIALECT.outgoing({
        "x-cos-copy-source": "/b/k", "x-cos-metadata-directive": "Replaced", "x-cos-meta-Mode": "1",
        "x-cos-server-side-encryption-cos-kms-key-id": "id", "x-cos-grant-read": "id=1",
        "x-cos-traffic-limit": "819200", "content-type": "text/plain", "x-amz-meta-kept": "2"})
    assert sent == {"x-amz-copy-source": "/b/k", "x-amz-metadata-directive": "REPLACE", "x-amz-meta-Mode": "1",
                    "x-amz-server-side-encryption-aws-kms-key-id": "id", "x-amz-grant-read": "id=1",
                    "x-cos-traffic-limit": "819200", "content-type": "text/plain", "x-amz-meta-kept": "2"}
    assert foreign == ["x-cos-traffic-limit"]
    reply = httpx.Headers({"x-amz-storage-class": "STANDARD_IA", "x-cos-request-id": "r"})
    assert S3_DIALECT.header(reply, "storage-class") == "STANDARD_IA"
    assert COS_DIALECT.header(reply, "storage-class") == "STANDARD_IA"
    assert S3_DIALECT.header(reply, "request-id") == "r" and S3_DIALECT.header(reply, "version-id", "-") == "-"


async def test_a_copy_the_dialect_cannot_express_is_never_sent(s3, autojump_clock, caplog):
    s3.objects["src"] = (b"bytes", {})
    rules = (("", "x-cos-traffic-limit", "819200"),)  # ahbe_conf: on every creating request
    async with s3_client(s3, extra_headers=rules) as client:
        with pytest.raises(Unsupported, match="x-cos-traffic-limit"):
            await client.copy_object("src", "src", replace_metadata=WriteOptions(user_meta={"mode": "1"}))
        assert s3.requests == []
        await client.put_object("other", b"x")  # not a copy: sent, the header as it is
    assert sent_headers(s3.requests[0])["x-cos-traffic-limit"] == "819200"
    assert s3.objects["src"][0] == b"bytes"


async def test_copy_answered_as_an_upload_is_an_error_never_success(fake, autojump_clock, caplog):
    # What rclone answers a copy whose headers it does not know: 200, no body, the empty MD5.
    fake.objects["src"] = (b"not empty", {})
    fake.script = [lambda r: httpx.Response(200, headers={"etag": f'"{EMPTY_MD5}"', "content-length": "0"})]
    async with make_client(fake, retries=0) as client:
        with pytest.raises(ProtocolError, match="EMPTY object") as info:
            await client.copy_object("src", "dst")
    assert "did not answer as to a copy" in str(info.value)
    (record,) = [r for r in caplog.records if r.name == "cosfs.cos.client" and r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR


@pytest.mark.parametrize("body", [b"", b"<html>ok</html>", b"<PutObjectResult></PutObjectResult>",
                                  b"<CopyObjectResult></CopyObjectResult>"])
async def test_copy_reply_without_a_copy_result_is_an_error(fake, autojump_clock, body):
    fake.script = [lambda r: httpx.Response(200, content=body)]
    async with make_client(fake, retries=0) as client:
        with pytest.raises(ProtocolError, match="did not answer as to a copy"):
            await client.upload_part_copy("k", "u", 1, "src", (0, 9))
    # copy_object accepts rclone's empty <CopyObjectResult> (and HEADs), nothing else
    if body != b"<CopyObjectResult></CopyObjectResult>":
        fake.script = [lambda r: httpx.Response(200, content=body)]
        async with make_client(fake, retries=0) as client:
            with pytest.raises(ProtocolError, match="did not answer as to a copy"):
                await client.copy_object("src", "dst")


async def test_copy_result_with_the_empty_md5_for_a_source_with_bytes_is_an_error(fake, autojump_clock):
    result = (f"<CopyObjectResult><ETag>\"{EMPTY_MD5}\"</ETag></CopyObjectResult>").encode()
    fake.script = [lambda r: httpx.Response(200, content=result)] * 2
    async with make_client(fake, retries=0) as client:
        with pytest.raises(ProtocolError, match="no bytes"):
            await client.copy_object("src", "dst", source_if_match=hashlib.md5(b"x").hexdigest())
        # an empty source copies to the empty MD5: that is right
        assert (await client.copy_object("src", "dst", source_if_match=EMPTY_MD5)).etag == EMPTY_MD5


async def test_copies_on_an_s3_server_keep_the_bytes(s3, autojump_clock):
    data = os.urandom(5000)
    async with s3_client(s3) as client:
        put = await client.put_object("a", data, WriteOptions(user_meta={"mode": "33188"}))
        copied = await client.copy_object("a", "b", source_if_match=put.etag)
        assert copied.etag == put.etag
        assert (await client.get_object("b", if_match=copied.etag))[1] == data
        # a metadata change in place: rclone answers an empty <CopyObjectResult>, HEAD tells
        changed = await client.copy_object("a", "a", replace_metadata=WriteOptions(user_meta={"mode": "33261"}),
                                           source_if_match=put.etag)
        assert changed.etag == put.etag and changed.last_modified_s > 0
        meta, body = await client.get_object("a")
        assert body == data and meta.user_meta == {"mode": "33261"}
    assert [r.method for r in s3.requests] == ["PUT", "PUT", "GET", "PUT", "HEAD", "GET"]


async def test_self_copy_that_emptied_the_object_is_an_error(s3, autojump_clock, caplog):
    s3.objects["a"] = (b"", {})  # what a copy taken for an upload leaves
    s3.script = [lambda r: httpx.Response(200, content=b"<CopyObjectResult></CopyObjectResult>")]
    async with s3_client(s3) as client:
        with pytest.raises(ProtocolError, match="now empty"):
            await client.copy_object("a", "a", replace_metadata=WriteOptions(),
                                     source_if_match=hashlib.md5(b"old bytes").hexdigest())
    assert any(r.levelno == logging.ERROR for r in caplog.records)


@pytest.mark.parametrize("server_copies", [False, True])
async def test_part_copy_on_an_s3_server_with_or_without_it(s3, autojump_clock, caplog, server_copies):
    # rclone takes an Upload Part - Copy for an upload of an empty part and then refuses the
    # part's real bytes: one probe (in an upload of its own, aborted) asks once per client,
    # and a server without it gets parts by GET and Upload Part.
    caplog.set_level(logging.INFO, "cosfs.cos.client")
    s3.part_copy = server_copies
    data = os.urandom(2 * MIN_PART_BYTES + 3)
    s3.objects["src"] = (data, {})
    etag = hashlib.md5(data).hexdigest()
    async with s3_client(s3) as client:
        upload_id = await client.create_multipart_upload("dst")
        parts = [await client.upload_part_copy("dst", upload_id, 1, "src", (0, MIN_PART_BYTES - 1),
                                               source_if_match=etag),
                 await client.upload_part_copy("dst", upload_id, 2, "src", (MIN_PART_BYTES, len(data) - 1),
                                               source_if_match=etag)]
        assert [p.size_bytes for p in parts] == [MIN_PART_BYTES, MIN_PART_BYTES + 3]
        await client.complete_multipart_upload("dst", upload_id, parts)
        assert s3.objects["dst"][0] == data
        initiates = [r for r in s3.requests if r.method == "POST" and "uploads" in r.url.query.decode()]
        assert len(initiates) == 2  # the real upload and one probe, whatever the number of part copies
        assert s3.uploads == {}  # the probe's upload was aborted
        if not server_copies:  # by hand, the part is read pinned to the source's version
            upload_id = await client.create_multipart_upload("dst")
            with pytest.raises(Stale):
                await client.upload_part_copy("dst", upload_id, 1, "src", (0, 9),
                                              source_if_match=hashlib.md5(b"v2").hexdigest())
            assert s3.uploads[upload_id] == {}
    said = [m for m in (r.getMessage() for r in caplog.records) if "no Upload Part - Copy" in m]
    assert len(said) == (0 if server_copies else 1)


async def test_part_copy_probe_refusal_is_an_error(s3, autojump_clock):
    # A part copy answered as an upload outside the probe (the server changed its mind) is an
    # error, never a part.
    s3.objects["src"] = (os.urandom(100), {})
    async with s3_client(s3) as client:
        client._part_copy = PartCopy(client, client._send_part_copy, known=True)  # (no probe)
        upload_id = await client.create_multipart_upload("dst")
        with pytest.raises(ProtocolError, match="empty part"):
            await client.upload_part_copy("dst", upload_id, 1, "src", (0, 99))


# --- D. the committed version of a multipart upload -------------------------------------------

async def multipart(client: CosClient, key: str, data: bytes, size: int = MIN_PART_BYTES):
    upload_id = await client.create_multipart_upload(key)
    parts = [await client.upload_part(key, upload_id, n + 1, data[start:start + size])
             for n, start in enumerate(range(0, len(data), size))]
    return await client.complete_multipart_upload(key, upload_id, parts)


async def test_complete_on_s3_takes_the_version_head_shows(s3, autojump_clock):
    data = os.urandom(2 * MIN_PART_BYTES + 5)
    async with s3_client(s3) as client:
        result = await multipart(client, "mp", data)
        assert result.etag == hashlib.md5(data).hexdigest()  # not rclone's "<md5>-3"
        assert result.crc64 == crc64.crc64(data) and result.last_modified_s
        # reads pinned to that version work (rclone ignores If-Match; the client compares)
        assert (await client.get_object("mp", byte_range=(0, 9), if_match=result.etag))[1] == data[:10]
        with pytest.raises(Stale):
            await client.get_object("mp", byte_range=(0, 9), if_match=hashlib.md5(b"other").hexdigest())
    assert [r.method for r in s3.requests].count("HEAD") == 1


async def test_complete_keeps_its_etag_when_head_shows_another_object(s3, autojump_clock, caplog):
    data = os.urandom(MIN_PART_BYTES + 5)

    def replaced(request):  # another writer's object lands between Complete and HEAD
        s3.objects["mp"] = (b"someone else's", {})
        return s3.serve(request)

    async with s3_client(s3) as client:
        upload_id = await client.create_multipart_upload("mp")
        parts = [await client.upload_part("mp", upload_id, 1, data[:MIN_PART_BYTES]),
                 await client.upload_part("mp", upload_id, 2, data[MIN_PART_BYTES:])]
        s3.script = [s3.serve, replaced]
        result = await client.complete_multipart_upload("mp", upload_id, parts)
    assert result.etag.endswith("-2")
    assert any("another writer" in m for m in client_warnings(caplog))


async def test_complete_keeps_its_etag_when_head_fails(s3, autojump_clock, caplog):
    async with s3_client(s3) as client:
        upload_id = await client.create_multipart_upload("mp")
        part = await client.upload_part("mp", upload_id, 1, b"only")
        s3.script = [s3.serve, "503"]
        result = await client.complete_multipart_upload("mp", upload_id, [part])
    assert result.etag.endswith("-1")
    assert any("could not HEAD" in m for m in client_warnings(caplog))


async def test_complete_in_the_cos_dialect_sends_no_head(fake, autojump_clock):
    async with make_client(fake) as client:
        result = await client.complete_multipart_upload("k", "u", [PartInfo(1, "e", None, None)])
    assert result.etag == "x-1" and [r.method for r in fake.requests] == ["POST"]


# --- E. user metadata under either prefix --------------------------------------------------------

async def test_metadata_survives_on_a_server_that_drops_x_cos_meta(s3, autojump_clock):
    async with s3_client(s3) as client:
        await client.put_object("f", b"x", WriteOptions(user_meta={"mode": "33188", "mtime": "1000000000"}))
        assert (await client.head_object("f")).user_meta == {"mode": "33188", "mtime": "1000000000"}
        await client.copy_object("f", "f", replace_metadata=WriteOptions(user_meta={"mode": "33261"}))
        assert (await client.head_object("f")).user_meta == {"mode": "33261"}
        await client.copy_object("f", "g")  # directive COPY: the metadata goes along
        assert (await client.head_object("g")).user_meta == {"mode": "33261"}
        upload_id = await client.create_multipart_upload("m", WriteOptions(user_meta={"mode": "33152"}))
        part = await client.upload_part("m", upload_id, 1, b"y")
        await client.complete_multipart_upload("m", upload_id, [part])
        assert (await client.head_object("m")).user_meta == {"mode": "33152"}


@pytest.mark.parametrize("dialect", ["cos", "s3"])
async def test_reply_metadata_is_read_under_either_prefix(fake, autojump_clock, dialect):
    headers = [("x-cos-meta-mode", "1"), ("x-amz-meta-uid", "2"), ("X-Amz-Meta-Both", "amz"),
               ("x-cos-meta-both", "cos"), ("x-amz-storage-class", "STANDARD_IA")]
    fake.script = [lambda r: httpx.Response(200, headers=headers)]
    maker = s3_client if dialect == "s3" else make_client
    async with maker(fake) as client:
        meta = await client.head_object("k")
    assert meta.user_meta == {"mode": "1", "uid": "2", "both": "amz" if dialect == "s3" else "cos"}
    assert meta.storage_class == "STANDARD_IA"


async def test_errors_name_the_amz_request_id(s3, autojump_clock):
    async with s3_client(s3) as client:
        with pytest.raises(Exception) as info:
            await client.get_object("missing")
    assert getattr(info.value, "request_id", "") == "amz-1"


async def test_transient_errors_still_retry_in_the_s3_dialect(s3, autojump_clock):
    s3.objects["k"] = (b"v", {})
    s3.script = ["503"]
    async with s3_client(s3, retries=1) as client:
        assert (await client.get_object("k"))[1] == b"v"
    s3.script = ["503", "503"]
    async with s3_client(s3, retries=1) as client:
        with pytest.raises(TransientError):
            await client.get_object("k")


async def test_the_uploaders_commit_carries_the_version_head_shows(s3, autojump_clock, tmp_path):
    # What the mount pins after a multipart commit: before, rclone's "<md5>-N" from Complete,
    # which no later HEAD or GET answers (the file read back as replaced: ESTALE).
    from cosfs.ranges import RangeSet
    from cosfs.write.staging import DirtyFile
    from cosfs.write.uploader import Uploader

    data = os.urandom(3 * MIN_PART_BYTES + 17)

    async def read_range(state, start, end):
        return data[start:end]

    async with s3_client(s3) as client:
        uploader = Uploader(client, read_range, part_bytes=MIN_PART_BYTES, multipart_threshold_bytes=MIN_PART_BYTES,
                            parallel_parts=1, on_upload=lambda dirty: None)
        dirty = DirtyFile(id="x", key="big", data_path=tmp_path / "big", base=None, base_limit=0, size=len(data),
                          written=RangeSet([(0, len(data))]), options=WriteOptions(user_meta={"mode": "33188"}),
                          mtime_ns=0)
        result = await uploader.commit(dirty, dirty.state(), live=True)
        meta = await client.head_object("big")
        assert result.etag == meta.etag == hashlib.md5(data).hexdigest()
        assert meta.user_meta == {"mode": "33188"}
        assert (await client.get_object("big", byte_range=(MIN_PART_BYTES, MIN_PART_BYTES + 9),
                                        if_match=result.etag))[1] == data[MIN_PART_BYTES:MIN_PART_BYTES + 10]


async def test_the_uploader_modifies_a_big_object_on_a_server_without_part_copy(s3, autojump_clock, tmp_path):
    # A change at the start of a 12 MiB object: the untouched parts are copied from the base,
    # by hand on rclone (before: every commit failed, EIO, retried forever).
    from cosfs.ranges import RangeSet
    from cosfs.write.staging import DirtyFile
    from cosfs.write.uploader import Uploader

    base = os.urandom(12 * MiB + 5)
    s3.objects["big"] = (base, {})
    new = b"HELLO" + base[5:]

    async def read_range(dirty, start, end):  # staged bytes over the base: the parts not copied
        assert (start, end) in ((0, 5 * MiB), (10 * MiB, len(new)))
        return new[start:end]

    async with s3_client(s3) as client:
        uploader = Uploader(client, read_range, part_bytes=5 * MiB, multipart_threshold_bytes=MIN_PART_BYTES,
                            parallel_parts=2, on_upload=lambda dirty: None)
        dirty = DirtyFile(id="x", key="big", data_path=tmp_path / "big",
                          base=ObjectRef("big", hashlib.md5(base).hexdigest(), len(base)), base_limit=len(base),
                          size=len(base), written=RangeSet([(0, 5)]), options=WriteOptions(), mtime_ns=0)
        result = await uploader.commit(dirty, dirty.state(), live=True)
    assert s3.objects["big"][0] == new
    assert result.etag == hashlib.md5(new).hexdigest()
