"""CosClient against servers that are broken, hostile, or merely not COS: wrong 206 ranges,
stray listing names, Range ignored, other XML roots, no CRC64, If-Match ignored."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import time
from urllib.parse import unquote

import httpx
import pytest

from cosfs.blocks import BlockCache, ObjectRef
from cosfs.config import CosConfig
from cosfs.cos import auth, crc64
from cosfs.cos.auth import Credentials
from cosfs.cos.client import CosClient
from cosfs.cos.store import MIN_PART_BYTES, ObjectMeta
from cosfs.credentials import StaticCredentials
from cosfs.errors import IntegrityError, ProtocolError, Stale, TransientError, errno_for

from .fakecos import FakeCos
from .test_client_mock import make_client

DATA = b"0123456789"


@pytest.fixture
def fake() -> FakeCos:
    return FakeCos()


def client_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "cosfs.cos.client" and r.levelno >= logging.WARNING]


class ChunkStream(httpx.AsyncByteStream):
    """A body in chunks, counting how many were pulled and whether it was closed."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
        self.pulled = 0
        self.closed = False

    async def __aiter__(self):
        for piece in self.chunks:
            if self.closed:  # as a closed connection: nothing more
                return
            self.pulled += 1
            yield piece

    async def aclose(self) -> None:
        self.closed = True


def reply_206(content_range: str, body: bytes, *, streamed: bool = False, etag: str = "e"):
    headers = {"content-range": content_range, "etag": f'"{etag}"'}

    def answer(request: httpx.Request) -> httpx.Response:
        if streamed:  # no Content-Length: only the Content-Range tells the length
            return httpx.Response(206, headers=headers, stream=ChunkStream(body, 3))
        return httpx.Response(206, headers=headers, content=body)

    return answer


# --- 1. a 206 must be exactly the range asked for -----------------------------------------

BAD_206 = {
    "other start": reply_206("bytes 0-3/10", b"0123"),
    "short, not at the end": reply_206("bytes 2-4/10", b"234"),
    "longer": reply_206("bytes 2-6/10", b"23456"),
    "body longer than the span": reply_206("bytes 2-5/10", b"234567"),
    "body shorter than the span": reply_206("bytes 2-5/10", b"234"),
    "streamed body longer than the span": reply_206("bytes 2-5/10", b"234567", streamed=True),
    "no Content-Range": lambda r: httpx.Response(206, content=b"2345"),
    "end past the total": reply_206("bytes 2-5/4", b"2345"),
}


@pytest.mark.parametrize("door", ["get_object", "open_object"])
@pytest.mark.parametrize("case", sorted(BAD_206))
async def test_206_other_than_the_range_asked_is_refused(fake, autojump_clock, caplog, door, case):
    fake.objects["k"] = (DATA, {})
    fake.script = [BAD_206[case]]
    async with make_client(fake, retries=0) as client:
        with pytest.raises(ProtocolError) as info:
            if door == "get_object":
                await client.get_object("k", byte_range=(2, 5))
            else:
                async with client.open_object("k", byte_range=(2, 5)) as (_, chunks):
                    async for _ in chunks:
                        pass
    assert errno_for(info.value) == errno.EIO
    (warning,) = client_warnings(caplog)
    assert f"{door} 'k' failed" in warning and "status=206" in warning


async def test_206_ending_at_the_object_end_is_the_range(fake, autojump_clock):
    fake.objects["k"] = (DATA, {})
    async with make_client(fake) as client:
        meta, body = await client.get_object("k", byte_range=(8, 20))
        assert body == b"89" and meta.size_bytes == 10
        fake.script = [reply_206("bytes 2-5/*", b"2345")]
        assert (await client.get_object("k", byte_range=(2, 5)))[1] == b"2345"


async def test_whole_object_get_answered_with_part_of_it_is_refused(fake, autojump_clock):
    fake.script = [reply_206("bytes 0-3/10", b"0123")]
    async with make_client(fake, retries=0) as client:
        with pytest.raises(ProtocolError, match="Content-Range"):
            await client.get_object("k")


async def test_resume_answered_with_another_range_is_refused(fake, autojump_clock):
    fake.objects["k"] = (DATA, {})
    resumed = reply_206("bytes 4-9/10", b"456789", etag=hashlib.md5(DATA).hexdigest())
    fake.script = ["midreset", resumed]  # the resume must start at byte 5
    async with make_client(fake) as client:
        with pytest.raises(ProtocolError, match="resuming at byte 5"):
            async with client.open_object("k") as (_, chunks):
                async for _ in chunks:
                    pass


async def test_block_cache_never_keeps_a_wrong_206(fake, autojump_clock, tmp_path, caplog):
    data = os.urandom(4096)
    fake.objects["k"] = (data, {})
    etag = hashlib.md5(data).hexdigest()
    ref = ObjectRef("k", etag, len(data))
    wrong = {"content-range": "bytes 0-1023/4096", "etag": f'"{etag}"'}
    fake.script = [lambda r: httpx.Response(206, headers=wrong, content=data[1024:2048])]
    async with make_client(fake, retries=0) as client:
        cache = BlockCache(client, tmp_path, 1024, 1 << 20, 2)
        cache.load()
        with pytest.raises(ProtocolError):
            await cache.read(ref, 1024, 100)
        assert await cache.read(ref, 1024, 100) == data[1024:1124]
    assert [r.headers["range"] for r in fake.requests] == ["bytes=1024-2047"] * 2
    cache.check_invariants()


class LongBodyStore:
    """A store whose ranged stream carries a byte more than asked: the contract is broken."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def open_object(self, key, *, byte_range, if_match):
        @contextlib.asynccontextmanager
        async def opened():
            async def chunks():
                first, last = byte_range
                yield self.data[first:last + 1]
                yield b"!"
            yield ObjectMeta(key, len(self.data), if_match, 0.0), chunks()

        return opened()


async def test_block_cache_drops_blocks_of_a_body_that_ran_long(tmp_path):
    data = bytes(range(256)) * 8
    cache = BlockCache(LongBodyStore(data), tmp_path, 512, 1 << 20, 2)
    cache.load()
    with pytest.raises(ProtocolError, match="long body"):
        await cache.read(ObjectRef("k", "e", len(data)), 0, 1024)
    assert cache.missing(ObjectRef("k", "e", len(data)), 0, 1) == [0, 1]
    assert not list((tmp_path / "blocks").glob("*/*"))
    cache.check_invariants()


# --- 2. listing names outside the prefix or not after the marker ------------------------

STRAY_LISTING = (
    b"<ListBucketResult><Prefix>d/</Prefix><IsTruncated>false</IsTruncated>"
    b"<Contents><Key>d/0</Key><Size>1</Size></Contents>"  # the marker itself
    b"<Contents><Key>c</Key><Size>1</Size></Contents>"
    b"<Contents><Key>d/a</Key><Size>1</Size></Contents>"
    b"<Contents><Key>dd/x</Key><Size>1</Size></Contents>"
    b"<Contents><Key>e/../d/x</Key><Size>1</Size></Contents>"
    b"<CommonPrefixes><Prefix>d/s/</Prefix></CommonPrefixes>"
    b"<CommonPrefixes><Prefix>x/</Prefix></CommonPrefixes>"
    b"</ListBucketResult>"
)


async def test_listing_ignores_names_outside_the_prefix(fake, autojump_clock, caplog):
    fake.script = [lambda r: httpx.Response(200, content=STRAY_LISTING)] * 2
    async with make_client(fake) as client:
        page = await client.list_objects("d/", delimiter="/", marker="d/0")
        assert [e.key for e in page.entries] == ["d/a"] and page.common_prefixes == ("d/s/",)
        pages = [p async for p in client.list_all("d/")]
        assert [e.key for p in pages for e in p.entries] == ["d/0", "d/a"]
    warnings = client_warnings(caplog)
    assert len(warnings) == 2  # one per listing
    assert "ignored 5 name(s)" in warnings[0] and "ignored 4 name(s)" in warnings[1]


async def test_listing_without_strays_logs_nothing(fake, autojump_clock, caplog):
    fake.script = [lambda r: httpx.Response(200, content=b"<ListBucketResult><IsTruncated>false</IsTruncated>"
                                                         b"<Contents><Key>d/a</Key></Contents></ListBucketResult>")]
    async with make_client(fake) as client:
        assert [e.key for e in (await client.list_objects("d/")).entries] == ["d/a"]
    assert client_warnings(caplog) == []


# --- 3. a ranged GET answered with 200 and the whole body -------------------------------

async def test_range_ignored_is_sliced_without_reading_the_rest(fake, autojump_clock):
    data = os.urandom(4 * 1024 * 1024)
    streams = []

    def whole(request):
        streams.append(ChunkStream(data, 64 * 1024))
        return httpx.Response(200, headers={"content-length": str(len(data)), "etag": '"e"'}, stream=streams[-1])

    fake.script = [whole, whole, whole]
    async with make_client(fake) as client:
        meta, body = await client.get_object("k", byte_range=(70_000, 70_099))
        assert body == data[70_000:70_100] and meta.size_bytes == len(data)
        async with client.open_object("k", byte_range=(100, 200_000)) as (_, chunks):
            assert b"".join([c async for c in chunks]) == data[100:200_001]
        meta, tail = await client.get_object("k", byte_range=(len(data) - 5, len(data) + 100))
        assert tail == data[-5:]
    assert [s.pulled for s in streams] == [2, 4, 64]
    assert all(s.closed for s in streams)


async def test_range_ignored_serves_the_block_cache(fake, autojump_clock, tmp_path):
    data = os.urandom(5000)
    fake.objects["k"] = (data, {})
    fake.ignore_range = True
    async with make_client(fake) as client:
        cache = BlockCache(client, tmp_path, 1024, 1 << 20, 2)
        cache.load()
        ref = ObjectRef("k", hashlib.md5(data).hexdigest(), len(data))
        assert await cache.read(ref, 2000, 3000) == data[2000:5000]
        assert await cache.read(ref, 0, 10) == data[:10]
        assert (await client.get_object("k", byte_range=(6000, 7000)))[1] == b""  # past the end: empty
    cache.check_invariants()


async def test_range_ignored_and_body_short_of_the_range_end_is_a_short_read(fake, autojump_clock):
    # Without a Content-Length the body's end is all there is: short of the range end, it is
    # an error, not a quietly short reply.
    fake.script = [lambda r: httpx.Response(200, stream=ChunkStream(DATA, 4))] * 3
    async with make_client(fake, retries=2) as client:
        with pytest.raises(TransientError, match="body broken"):
            await client.get_object("k", byte_range=(5, 20))


# --- 4. XML replies named otherwise -------------------------------------------------------

async def test_initiate_reply_with_another_root(fake, autojump_clock):
    replies = [b'<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
               b"<Bucket>b</Bucket><Key>k</Key><UploadId>u-1</UploadId></InitiateMultipartUploadResult>",
               b"<CreateMultipartUploadOutput><UploadId>u-2</UploadId></CreateMultipartUploadOutput>",
               b"<Error><Code>InternalError</Code></Error>"]
    fake.script = [lambda r, body=body: httpx.Response(200, content=body) for body in replies]
    async with make_client(fake, retries=0) as client:
        assert await client.create_multipart_upload("k") == "u-1"
        assert await client.create_multipart_upload("k") == "u-2"
        with pytest.raises(TransientError):  # an <Error> in a 200 is still that error
            await client.create_multipart_upload("k")


# --- 5. no x-cos-hash-crc64ecma -------------------------------------------------------------

async def test_server_without_crc64(fake, autojump_clock):
    fake.send_crc = False
    async with make_client(fake) as client:
        put = await client.put_object("k", DATA)
        assert put.crc64 == crc64.crc64(DATA) and put.etag == hashlib.md5(DATA).hexdigest()
        part = await client.upload_part("k", "u", 1, DATA)
        assert part.crc64 == crc64.crc64(DATA)
        assert (await client.get_object("k"))[1] == DATA
        async with client.open_object("k") as (meta, chunks):
            assert b"".join([c async for c in chunks]) == DATA and meta.crc64 is None
        fake.script = [lambda r: httpx.Response(200, content=b"<CompleteMultipartUploadResult><ETag>\"x-1\"</ETag>"
                                                            b"</CompleteMultipartUploadResult>")]
        assert (await client.complete_multipart_upload("k", "u", [part])).etag == "x-1"


async def test_without_crc64_an_md5_etag_must_match(fake, autojump_clock):
    wrong = {"etag": '"' + hashlib.md5(b"other").hexdigest() + '"'}
    fake.script = [lambda r: httpx.Response(200, headers=wrong)] * 2
    async with make_client(fake) as client:
        with pytest.raises(IntegrityError, match="not the MD5"):
            await client.put_object("k", DATA)
        with pytest.raises(IntegrityError, match="not the MD5"):
            await client.upload_part("k", "u", 1, DATA)
        # Opaque ETags prove nothing either way, and encrypted objects' ETags need not be MD5s.
        fake.script = [lambda r: httpx.Response(200, headers={"etag": '"opaque-etag"'})]
        assert (await client.put_object("k", DATA)).etag == "opaque-etag"
    async with make_client(fake, server_side_encryption="AES256") as client:
        fake.script = [lambda r: httpx.Response(200, headers=wrong)]
        await client.put_object("k", DATA)


# --- 6. a reply of another version than If-Match named ------------------------------------

@pytest.mark.parametrize("status", [200, 206])
async def test_reply_with_another_etag_than_if_match_is_stale(fake, autojump_clock, caplog, status):
    headers = {"etag": '"new"', "content-range": "bytes 0-3/10", "content-length": "4"}
    fake.script = [lambda r: httpx.Response(status, headers=headers, content=b"0123")] * 3
    async with make_client(fake) as client:
        with pytest.raises(Stale) as info:
            await client.get_object("k", byte_range=(0, 3), if_match="old")
        assert errno_for(info.value) == errno.ESTALE
        with pytest.raises(Stale):
            async with client.open_object("k", byte_range=(0, 3), if_match="old"):
                pass
        with pytest.raises(Stale):
            await client.head_object("k", if_match="old")
    assert len(fake.requests) == 3  # not retried
    assert len(client_warnings(caplog)) == 3
    async with make_client(fake) as client:  # a reply without ETag cannot say: it is taken
        fake.script = [lambda r: httpx.Response(206, headers={"content-range": "bytes 0-3/10"}, content=b"0123")]
        assert (await client.get_object("k", byte_range=(0, 3), if_match="old"))[1] == b"0123"


async def test_block_cache_read_of_a_replaced_object_is_stale(fake, autojump_clock, tmp_path):
    fake.objects["k"] = (DATA, {})
    fake.script = [lambda r: httpx.Response(206, headers={"etag": '"v2"', "content-range": "bytes 0-9/10"},
                                            content=DATA)]
    async with make_client(fake) as client:
        cache = BlockCache(client, tmp_path, 1024, 1 << 20, 2)
        cache.load()
        with pytest.raises(Stale):
            await cache.read(ObjectRef("k", "v1", 10), 0, 10)
        assert cache.missing(ObjectRef("k", "v1", 10), 0, 0) == [0]


# --- against a real `cosfs serve`, seen through a non-COS lens ---------------------------

class NonCosLens(httpx.AsyncBaseTransport):
    """Real HTTP to `cosfs serve`, changed as an S3-compatible server that is not COS would
    answer: without CRC64 headers, and/or ignoring Range (the request is signed again
    without it, so that the server answers 200 with the whole body)."""

    def __init__(self, creds: Credentials, bucket: str, *, strip_crc: bool = False, ignore_range: bool = False):
        self._inner = httpx.AsyncHTTPTransport()
        self._creds = creds
        self._bucket = bucket
        self._strip_crc = strip_crc
        self._ignore_range = ignore_range
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._ignore_range and "range" in request.headers:
            headers = {k: v for k, v in request.headers.items() if k not in ("range", "authorization")}
            path = unquote(request.url.raw_path.decode().split("?")[0])[len(self._bucket) + 1:]
            headers["authorization"] = auth.cos_authorization(
                self._creds, request.method, path, {}, auth.headers_to_sign(headers), time.time())
            request = httpx.Request(request.method, request.url, headers=headers, extensions=request.extensions)
        response = await self._inner.handle_async_request(request)
        self.statuses.append(response.status_code)
        if self._strip_crc:
            headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"x-cos-hash-crc64ecma"]
            response = httpx.Response(response.status_code, headers=headers, stream=response.stream,
                                      extensions=response.extensions)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def lens_client(server, **lens) -> tuple[CosClient, NonCosLens]:
    creds = Credentials(server.secret_id, server.secret_key)
    transport = NonCosLens(creds, server.bucket, **lens)
    cfg = CosConfig(bucket=server.bucket, endpoint_url=server.endpoint, retries=2, retry_base_delay_s=0.005)
    return CosClient(cfg, StaticCredentials(creds), transport=transport), transport


async def test_serve_ignoring_range(cos_server, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    client, lens = lens_client(cos_server, ignore_range=True)
    async with client:
        put = await client.put_object("big", data)
        meta, body = await client.get_object("big", byte_range=(100, 199), if_match=put.etag)
        assert body == data[100:200] and meta.size_bytes == len(data)
        async with client.open_object("big", byte_range=(2_000_000, 2_100_000)) as (_, chunks):
            assert b"".join([c async for c in chunks]) == data[2_000_000:2_100_001]
        cache = BlockCache(client, tmp_path / "cache", 1024 * 1024, 8 << 20, 2)
        cache.load()
        ref = ObjectRef("big", put.etag, len(data))
        assert await cache.read(ref, 1024 * 1024 - 10, 30) == data[1024 * 1024 - 10:1024 * 1024 + 20]
        assert await cache.read(ref, len(data) - 20, 100) == data[-20:]
        assert (await client.head_object("big")).size_bytes == len(data)  # the pool still works
    assert 206 not in lens.statuses and lens.statuses.count(200) >= 6


async def test_serve_without_crc64(cos_server):
    data = os.urandom(MIN_PART_BYTES + 5)
    client, lens = lens_client(cos_server, strip_crc=True)
    async with client:
        put = await client.put_object("k", data)
        assert put.crc64 == crc64.crc64(data)
        upload = await client.create_multipart_upload("m")
        parts = [await client.upload_part("m", upload, 1, data[:MIN_PART_BYTES]),
                 await client.upload_part("m", upload, 2, data[MIN_PART_BYTES:])]
        done = await client.complete_multipart_upload("m", upload, parts)
        assert done.etag.endswith("-2")
        for key in ("k", "m"):
            meta, body = await client.get_object(key)
            assert body == data and meta.crc64 is None
            async with client.open_object(key) as (_, chunks):
                assert b"".join([c async for c in chunks]) == data
    assert "x-cos-hash-crc64ecma" not in str(lens.statuses)
