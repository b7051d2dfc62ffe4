"""CosClient over httpx.MockTransport: retries, re-signing, error mapping, integrity, secrets."""

from __future__ import annotations

import email.utils
import logging
import traceback

import httpx
import pytest

from cosfs.config import CosConfig
from cosfs.cos import crc64
from cosfs.cos.auth import Credentials
from cosfs.cos.client import CosClient
from cosfs.cos.store import PartInfo, WriteOptions
from cosfs.credentials import StaticCredentials
from cosfs.errors import (
    AccessDenied,
    CosError,
    IntegrityError,
    NotFound,
    ProtocolError,
    Stale,
    TransientError,
)

from .fakecos import BUCKET, SECRET_ID, SECRET_KEY, TOKEN, FakeCos, error_response


@pytest.fixture
def fake() -> FakeCos:
    return FakeCos()


def make_client(fake: FakeCos, *, retries: int = 4, creds=None, **config) -> CosClient:
    cfg = CosConfig(bucket=BUCKET, endpoint_url="http://127.0.0.1:9000", retries=retries, **config)
    creds = creds or StaticCredentials(Credentials(SECRET_ID, SECRET_KEY))
    return CosClient(cfg, creds, transport=httpx.MockTransport(fake))


def secrets_absent(*texts: str) -> None:
    for text in texts:
        assert SECRET_KEY not in text
        assert TOKEN not in text


def exception_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    return texts


async def test_put_get_head_round_trip(fake, autojump_clock):
    async with make_client(fake) as client:
        put = await client.put_object("d/a b+c", b"hello", WriteOptions(content_type="text/plain",
                                                                         user_meta={"mode": "33188"}))
        assert put.etag == "5d41402abc4b2a76b9719d911017c592" and put.crc64 == crc64.crc64(b"hello")
        meta, body = await client.get_object("d/a b+c")
        assert body == b"hello" and meta.size_bytes == 5 and meta.user_meta == {"mode": "33188"}
        assert meta.content_type == "text/plain" and meta.last_modified_s == 1704067200.0
        head = await client.head_object("d/a b+c")
        assert head.size_bytes == 5 and head.etag == put.etag and head.crc64 == put.crc64
        meta, part = await client.get_object("d/a b+c", byte_range=(1, 3))
        assert part == b"ell" and meta.size_bytes == 5
    assert fake.requests[0].url.raw_path == f"/{BUCKET}/d/a%20b%2Bc".encode()


@pytest.mark.parametrize("fault", ["503", "500", "slowdown", "reset", "connect", "truncate"])
async def test_transient_failures_are_retried_and_resigned(fake, autojump_clock, fault):
    fake.objects["k"] = (b"0123456789", {})
    times = iter([1000.0, 1001.0, 1002.0, 1003.0, 1004.0, 1005.0])
    fake.now = lambda: 1003.0
    cfg = CosConfig(bucket=BUCKET, endpoint_url="http://127.0.0.1:9000", retries=4)
    client = CosClient(cfg, StaticCredentials(Credentials(SECRET_ID, SECRET_KEY)),
                       transport=httpx.MockTransport(fake), clock=lambda: next(times))
    fake.script = [fault, fault]
    async with client:
        meta, body = await client.get_object("k")
    assert body == b"0123456789"
    assert len(fake.requests) == 3
    auths = [r.headers["authorization"] for r in fake.requests]
    assert len(set(auths)) == 3  # a fresh signature (time) on every attempt


async def test_put_retried_after_503_keeps_md5(fake, autojump_clock):
    fake.script = ["503", "reset"]
    async with make_client(fake) as client:
        await client.put_object("k", b"x" * 100)
    assert fake.objects["k"][0] == b"x" * 100
    assert all(r.headers["content-md5"] for r in fake.requests)


async def test_4xx_is_not_retried(fake, autojump_clock):
    fake.script = [lambda request: error_response(400, "InvalidArgument", "bad")]
    async with make_client(fake) as client:
        with pytest.raises(CosError) as info:
            await client.get_object("k")
    assert info.value.code == "InvalidArgument" and info.value.status == 400
    assert len(fake.requests) == 1


async def test_not_found_and_head_without_body(fake, autojump_clock):
    async with make_client(fake) as client:
        with pytest.raises(NotFound) as info:
            await client.get_object("missing")
        assert info.value.code == "NoSuchKey" and info.value.request_id == "req-1"
        with pytest.raises(NotFound) as info:
            await client.head_object("missing")
        assert info.value.code == "NoSuchKey"
        fake.script = [lambda r: httpx.Response(404), lambda r: httpx.Response(403)]
        with pytest.raises(NotFound, match="no such bucket") as info:
            await client.head_bucket()
        assert info.value.code == "NoSuchBucket"
        with pytest.raises(AccessDenied):
            await client.head_bucket()
        fake.script = [lambda r: httpx.Response(412, headers={"x-cos-request-id": "rid-412"})]
        with pytest.raises(Stale) as info:
            await client.head_object("x", if_match="abc")
        assert info.value.code == "PreconditionFailed" and info.value.request_id == "rid-412"
        assert fake.requests[-1].headers["if-match"] == '"abc"'
    assert len(fake.requests) == 5


async def test_server_that_stays_down(fake, autojump_clock, caplog):
    caplog.set_level(logging.DEBUG, logger="cosfs")
    fake.script = ["503"] * 10
    async with make_client(fake, retries=3) as client:
        with pytest.raises(TransientError) as info:
            await client.put_object("k", b"data")
    assert len(fake.requests) == 4
    assert "gave up after 4 attempts" in str(info.value)
    assert "ServiceUnavailable" in str(info.value)
    final = [r for r in caplog.records if r.levelno >= logging.WARNING and "failed:" in r.getMessage()]
    assert len(final) == 1 and "put_object 'k'" in final[0].getMessage() and "req-1" in final[0].getMessage()


async def test_connection_refused_ends_in_transient(fake, autojump_clock):
    fake.script = ["connect"] * 10
    async with make_client(fake, retries=2) as client:
        with pytest.raises(TransientError, match="ConnectError.*gave up after 3 attempts"):
            await client.head_object("k")


async def test_expired_signature_and_skew_resign_once(fake, autojump_clock):
    fake.objects["k"] = (b"v", {})
    fake.script = ["expired"]
    async with make_client(fake, retries=0) as client:
        assert (await client.get_object("k"))[1] == b"v"
        fake.script = ["skew", "skew"]
        with pytest.raises(AccessDenied) as info:
            await client.get_object("k")
        assert info.value.code == "RequestTimeTooSkewed"
    assert len(fake.requests) == 4


async def test_clock_offset_learnt_from_date_header(autojump_clock):
    fake = FakeCos(now=lambda: 5_000_000.0)
    fake.objects["k"] = (b"v", {})

    def skewed(request):
        reply = error_response(403, "RequestTimeTooSkewed", "too skewed")
        reply.headers["date"] = email.utils.formatdate(5_000_000, usegmt=True)
        return reply

    fake.script = [skewed]
    cfg = CosConfig(bucket=BUCKET, endpoint_url="http://127.0.0.1:9000", retries=0)
    async with CosClient(cfg, StaticCredentials(Credentials(SECRET_ID, SECRET_KEY)),
                         transport=httpx.MockTransport(fake), clock=lambda: 1_000.0) as client:
        assert (await client.get_object("k"))[1] == b"v"


class RotatingCredentials:
    def __init__(self) -> None:
        self.current = Credentials(SECRET_ID, SECRET_KEY, token="stale-token")
        self.refreshes = 0

    async def get(self) -> Credentials:
        return self.current

    async def refresh(self) -> Credentials:
        self.refreshes += 1
        self.current = Credentials(SECRET_ID, SECRET_KEY, token=TOKEN)
        return self.current


async def test_expired_token_triggers_refresh(autojump_clock, caplog):
    caplog.set_level(logging.DEBUG)
    fake = FakeCos(token=TOKEN)
    fake.objects["k"] = (b"v", {})
    creds = RotatingCredentials()
    async with make_client(fake, creds=creds) as client:
        assert (await client.get_object("k"))[1] == b"v"
    assert creds.refreshes == 1
    assert fake.requests[-1].headers["x-cos-security-token"] == TOKEN
    assert "x-cos-security-token" in fake.requests[-1].headers["authorization"]
    for record in caplog.records:
        secrets_absent(record.getMessage(), str(record.args))


async def test_copy_200_with_error_raises(fake, autojump_clock):
    fake.objects["src"] = (b"abc", {})
    async with make_client(fake, retries=1) as client:
        fake.script = ["error200", "error200"]
        with pytest.raises(TransientError) as info:
            await client.copy_object("src", "dst")
        assert info.value.code == "InternalError" and "200" in str(info.value)
        fake.script = ["error200-fatal"]
        with pytest.raises(CosError) as info:
            await client.copy_object("src", "dst")
        assert info.value.code == "InvalidArgument"
        fake.script = ["error200"]
        result = await client.copy_object("src", "dst", replace_metadata=WriteOptions(user_meta={"mode": "1"}))
        assert result.crc64 == crc64.crc64(b"abc")
    sent = fake.requests[-1].headers
    assert sent["x-cos-copy-source"] == f"/{BUCKET}/src" and sent["x-cos-metadata-directive"] == "Replaced"
    assert fake.objects["dst"][1]["x-cos-meta-mode"] == "1"


async def test_complete_200_with_error_or_without_etag_raises(fake, autojump_clock):
    parts = [PartInfo(1, "e1", 3, crc64.crc64(b"abc"))]
    async with make_client(fake, retries=0) as client:
        fake.script = ["error200"]
        with pytest.raises(TransientError):
            await client.complete_multipart_upload("k", "u", parts)
        fake.script = [lambda r: httpx.Response(200, content=b"   <CompleteMultipartUploadResult><Key>k</Key>"
                                                            b"</CompleteMultipartUploadResult>")]
        with pytest.raises(ProtocolError, match="ETag"):
            await client.complete_multipart_upload("k", "u", parts)
        good_crc = crc64.crc64(b"abc")
        fake.script = [lambda r: httpx.Response(200, headers={"x-cos-hash-crc64ecma": str(good_crc)},
                                                content=b"\n\n<CompleteMultipartUploadResult><ETag>\"e-1\"</ETag>"
                                                        b"</CompleteMultipartUploadResult>")]
        result = await client.complete_multipart_upload("k", "u", parts)
        assert result.etag == "e-1" and result.crc64 == good_crc
        fake.script = [lambda r: httpx.Response(200, headers={"x-cos-hash-crc64ecma": "77"},
                                                content=b"<CompleteMultipartUploadResult><ETag>\"e-1\"</ETag>"
                                                        b"</CompleteMultipartUploadResult>")]
        with pytest.raises(IntegrityError):
            await client.complete_multipart_upload("k", "u", parts)
    body = fake.requests[0].content
    assert b"<PartNumber>1</PartNumber><ETag>\"e1\"</ETag>" in body


async def test_crc_mismatch_on_get_and_put(fake, autojump_clock):
    fake.objects["k"] = (b"payload", {})
    async with make_client(fake) as client:
        fake.script = ["badcrc"]
        with pytest.raises(IntegrityError, match="CRC64"):
            await client.get_object("k")
        fake.script = ["badcrc"]
        with pytest.raises(IntegrityError):
            async with client.open_object("k") as (meta, chunks):
                async for _ in chunks:
                    pass
        fake.script = ["badcrc"]
        with pytest.raises(IntegrityError):
            await client.put_object("k2", b"data")
        fake.script = ["badcrc"]
        with pytest.raises(IntegrityError):
            await client.upload_part("k2", "u", 1, b"data")
        # A ranged read carries the whole object's CRC: nothing to compare, no error.
        fake.script = ["badcrc"]
        assert (await client.get_object("k", byte_range=(0, 2)))[1] == b"pay"


async def test_open_object_streams_and_resumes_after_reset(fake, autojump_clock):
    data = bytes(range(256)) * 40
    fake.objects["big"] = (data, {})
    fake.script = ["midreset", "midreset"]
    async with make_client(fake) as client:
        async with client.open_object("big") as (meta, chunks):
            got = b"".join([c async for c in chunks])
    assert got == data and meta.size_bytes == len(data)
    resumed = fake.requests[1:]
    assert resumed[0].headers["range"] == f"bytes=5-{len(data) - 1}"
    assert resumed[0].headers["if-match"] == f'"{meta.etag}"'
    assert resumed[1].headers["range"] == f"bytes=10-{len(data) - 1}"


async def test_range_past_end_is_empty(fake, autojump_clock):
    fake.objects["k"] = (b"abc", {})
    fake.objects["empty"] = (b"", {})
    async with make_client(fake) as client:
        meta, body = await client.get_object("k", byte_range=(3, 10))
        assert body == b"" and meta.size_bytes == 3
        meta, body = await client.get_object("empty", byte_range=(0, 10))
        assert body == b"" and meta.size_bytes == 0
        async with client.open_object("k", byte_range=(5, 9)) as (meta, chunks):
            assert [c async for c in chunks] == []


async def test_server_ignoring_range_is_sliced(fake, autojump_clock):
    fake.script = [lambda r: httpx.Response(200, content=b"0123456789")]
    async with make_client(fake) as client:
        meta, body = await client.get_object("k", byte_range=(2, 4))
        assert body == b"234"


async def test_no_secret_in_exceptions_or_logs(autojump_clock, caplog):
    caplog.set_level(logging.DEBUG)
    fake = FakeCos()
    creds = StaticCredentials(Credentials(SECRET_ID, SECRET_KEY, token=TOKEN))
    failures = []
    async with make_client(fake, retries=2, creds=creds) as client:
        for script in (["503"] * 5, ["reset"] * 5, ["connect"] * 5, ["badcrc"], ["token", "token"]):
            fake.script = list(script)
            try:
                await client.get_object("k") if script != ["badcrc"] else await client.put_object("k", b"v")
            except Exception as exc:  # noqa: BLE001 - collecting every failure's text
                failures.append(exc)
        wrong = CosClient(CosConfig(bucket=BUCKET, endpoint_url="http://127.0.0.1:9000", retries=0),
                          StaticCredentials(Credentials(SECRET_ID, "wrong-" + SECRET_KEY, token=TOKEN)),
                          transport=httpx.MockTransport(fake))
        async with wrong:
            with pytest.raises(AccessDenied) as info:
                await wrong.get_object("k")
        assert info.value.code == "SignatureDoesNotMatch"
        failures.append(info.value)
    assert len(failures) == 6
    for exc in failures:
        secrets_absent(*exception_texts(exc))
    assert caplog.records
    for record in caplog.records:
        secrets_absent(record.getMessage(), str(record.args), str(record.exc_info))


async def test_delete_multiple_batches_and_parses(fake, autojump_clock):
    def delete_handler(request):
        from cosfs.cos import xml as cosxml

        root = cosxml.parse(request.content)
        keys = [o.findtext("Key") for o in root.findall("Object")]
        deleted = "".join(f"<Deleted><Key>{k}</Key></Deleted>" for k in keys if k != "bad")
        errors = "<Error><Key>bad</Key><Code>AccessDenied</Code><Message>no</Message></Error>" if "bad" in keys else ""
        return httpx.Response(200, content=f"<DeleteResult>{deleted}{errors}</DeleteResult>".encode())

    keys = [f"k{i:04d}" for i in range(2100)] + ["bad"]
    fake.script = [delete_handler] * 3
    async with make_client(fake) as client:
        result = await client.delete_objects(keys)
        assert (await client.delete_objects([])).deleted == ()
    assert len(fake.requests) == 3
    assert all(r.url.raw_path == f"/{BUCKET}?delete".encode() and r.headers["content-md5"] for r in fake.requests)
    assert len(result.deleted) == 2100 and result.failed[0].key == "bad"


async def test_list_all_follows_markers_and_falls_back(fake, autojump_clock):
    pages = [
        b"<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
        b"<NextMarker>a%201</NextMarker><Contents><Key>a%201</Key><Size>1</Size></Contents></ListBucketResult>",
        # No NextMarker: continue after the greater of last key and last prefix.
        b"<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>b</Key><Size>1</Size></Contents>"
        b"<CommonPrefixes><Prefix>c/</Prefix></CommonPrefixes></ListBucketResult>",
        b"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>d</Key><Size>1</Size></Contents>"
        b"</ListBucketResult>",
    ]
    fake.script = [lambda r, body=body: httpx.Response(200, content=body) for body in pages]
    async with make_client(fake) as client:
        got = [page async for page in client.list_all(delimiter="/")]
    assert [e.key for p in got for e in p.entries] == ["a 1", "b", "d"]
    markers = [dict(fake.params_of(r)).get("marker") for r in fake.requests]
    assert markers == [None, "a 1", "c/"]
    assert all(dict(fake.params_of(r))["encoding-type"] == "url" for r in fake.requests)


async def test_list_that_does_not_advance_is_an_error(fake, autojump_clock):
    body = b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"
    fake.script = [lambda r: httpx.Response(200, content=body)]
    async with make_client(fake) as client:
        with pytest.raises(ProtocolError):
            async for _ in client.list_all():
                pass


async def test_abort_accepts_no_such_upload_after_a_retry(fake, autojump_clock):
    fake.script = ["reset", lambda r: error_response(404, "NoSuchUpload")]
    async with make_client(fake) as client:
        await client.abort_multipart_upload("k", "u")
        fake.script = [lambda r: error_response(404, "NoSuchUpload")]
        with pytest.raises(NotFound):
            await client.abort_multipart_upload("k", "u")


async def test_sigv4_headers(fake, autojump_clock):
    fake.script = [lambda r: httpx.Response(200, headers={"etag": '"e"'})]
    async with make_client(fake, signature="sigv4", creds=StaticCredentials(
            Credentials(SECRET_ID, SECRET_KEY, token=TOKEN))) as client:
        await client.put_object("a/b", b"body")
    request = fake.requests[0]
    assert request.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={SECRET_ID}/")
    assert "/ap-guangzhou/s3/aws4_request" in request.headers["authorization"]
    assert request.headers["x-amz-security-token"] == TOKEN
    import hashlib
    assert request.headers["x-amz-content-sha256"] == hashlib.sha256(b"body").hexdigest()


async def test_non_ascii_metadata_refused(fake, autojump_clock):
    from cosfs.errors import InvalidName
    async with make_client(fake) as client:
        with pytest.raises(InvalidName):
            await client.put_object("k", b"", WriteOptions(user_meta={"name": "目"}))
    assert fake.requests == []


async def test_append_reconciles_after_an_ambiguous_retry(fake, autojump_clock):
    fake.objects["log"] = (b"abcdef", {})  # the first attempt did append "def"
    fake.script = ["reset", lambda r: error_response(409, "AppendPositionErr", "position mismatch")]
    async with make_client(fake) as client:
        result = await client.append_object("log", 3, b"def")
        assert result.next_position == 6 and result.crc64 == crc64.crc64(b"abcdef")
        fake.script = [lambda r: error_response(409, "AppendPositionErr", "position mismatch")]
        with pytest.raises(CosError) as info:  # no earlier attempt: a real conflict
            await client.append_object("log", 3, b"def")
        assert info.value.code == "AppendPositionErr"
    assert fake.requests[0].url.raw_path == f"/{BUCKET}/log?append&position=3".encode()


async def test_complete_reconciles_after_an_ambiguous_retry(fake, autojump_clock):
    fake.objects["k"] = (b"abc", {})  # the first attempt did complete the upload
    parts = [PartInfo(1, "e1", 3, crc64.crc64(b"abc"))]
    async with make_client(fake) as client:
        fake.script = ["reset", lambda r: error_response(404, "NoSuchUpload")]
        result = await client.complete_multipart_upload("k", "u", parts)
        assert result.crc64 == crc64.crc64(b"abc")
        fake.script = ["reset", lambda r: error_response(404, "NoSuchUpload")]
        with pytest.raises(NotFound):  # the object is not what these parts make
            await client.complete_multipart_upload("k", "u", [PartInfo(1, "e1", 3, 42)])


def _part_md5s(fake: FakeCos) -> list[bool]:
    return ["content-md5" in r.headers for r in fake.requests if r.method == "PUT" and "partNumber" in str(r.url)]


@pytest.mark.parametrize("setting, send_crc, expected", [
    ("auto", True, [True, False, False]),    # a part's CRC64 seen: later parts go by CRC64 alone
    ("auto", False, [True, True, True]),     # no CRC64 from this server: MD5 on every part
    ("always", True, [True, True, True]),    # enable_content_md5
    ("never", True, [False, False, False]),  # disable_content_md5
])
async def test_content_md5_on_parts_follows_the_setting_and_the_server(fake, autojump_clock, setting, send_crc,
                                                                       expected):
    fake.send_crc = send_crc
    async with make_client(fake, content_md5=setting) as client:
        for number in (1, 2, 3):
            await client.upload_part("k", "u1", number, b"part %d" % number)
        await client.put_object("whole", b"object")
    assert _part_md5s(fake) == expected
    put = [r for r in fake.requests if r.method == "PUT" and "partNumber" not in str(r.url)]
    assert ("content-md5" in put[0].headers) == (setting != "never")  # visible at once: MD5 unless refused


async def test_a_part_without_md5_is_still_checked_when_the_crc64_goes_away(fake, autojump_clock):
    async with make_client(fake) as client:
        await client.upload_part("k", "u1", 1, b"first")  # CRC64 seen
        fake.send_crc = False

        def lying(request: httpx.Request) -> httpx.Response:
            assert "content-md5" not in request.headers
            return httpx.Response(200, headers={"etag": '"%s"' % ("0" * 32)})

        fake.script.append(lying)
        with pytest.raises(IntegrityError, match="not the MD5 of the bytes sent"):
            await client.upload_part("k", "u1", 2, b"second")
        await client.upload_part("k", "u1", 3, b"third")
    assert _part_md5s(fake)[-1]  # no CRC64 any more: MD5 again


@pytest.mark.parametrize("reply", ["no etag", "cut", "garbled", "lost"])
async def test_an_ambiguous_complete_is_decided_by_the_object_never_aborted_blind(fake, autojump_clock, reply):
    """Issue 20, section 2: a Complete answered without an ETag, with a cut or unreadable
    body, or not at all: the client HEADs the key and accepts the upload as completed when the
    object is the parts (size and combined CRC64), with HEAD's version; no Abort is sent.
    When the object is not theirs, the error stands (and only then may the caller abort)."""
    fake.objects["k"] = (b"abc", {})  # what Complete made before its reply went wrong
    parts = [PartInfo(1, "e1", 3, crc64.crc64(b"abc"))]
    replies = {
        "no etag": lambda r: httpx.Response(200, content=b"<CompleteMultipartUploadResult><Key>k</Key>"
                                                         b"</CompleteMultipartUploadResult>"),
        "cut": lambda r: httpx.Response(200, content=b"<CompleteMultipartUploadResult><ETag>\"e-"),
        "garbled": lambda r: httpx.Response(200, content=b"\x00\x01 not xml"),
        "lost": "reset",
    }
    async with make_client(fake, retries=0) as client:
        fake.script = [replies[reply]]
        result = await client.complete_multipart_upload("k", "u", parts)
        head = await client.head_object("k")
        assert (result.etag, result.crc64) == (head.etag, crc64.crc64(b"abc"))
        assert not [r for r in fake.requests if r.method == "DELETE"]
        fake.script = [replies[reply]]
        with pytest.raises((TransientError, ProtocolError)):  # the object is not what these parts make
            await client.complete_multipart_upload("k", "u", [PartInfo(1, "e1", 3, 42)])
