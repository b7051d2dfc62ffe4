"""Object operations over real HTTP against a `cosfs serve` process."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest

from cosfs.cos import crc64

from .helpers import CosHttp, content_md5, error_code, parse


@pytest.fixture
async def cos(cos_server):
    async with httpx.AsyncClient(timeout=30) as client:
        yield CosHttp(cos_server, client)


async def test_put_get_head_delete(cos):
    data = b"[Object Content]"
    r = await cos.put("dir/file.txt", data, headers={"Content-Type": "text/plain", "x-cos-meta-mode": "33188",
                                                      "Cache-Control": "max-age=60", "Content-MD5": content_md5(data)})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"ee8de918d05640145b18f70f4c3aa602"'
    assert r.headers["x-cos-hash-crc64ecma"] == "16749565679157681890"
    assert r.headers["server"] == "tencent-cos"
    assert r.headers["x-cos-request-id"]

    r = await cos.get("dir/file.txt")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["x-cos-meta-mode"] == "33188"
    assert r.headers["cache-control"] == "max-age=60"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["last-modified"].endswith("GMT")
    assert r.headers["x-cos-hash-crc64ecma"] == "16749565679157681890"

    r = await cos.head("dir/file.txt")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(data))
    assert r.content == b""

    r = await cos.delete("dir/file.txt")
    assert r.status_code == 204
    r = await cos.get("dir/file.txt")
    assert r.status_code == 404
    assert error_code(r) == "NoSuchKey"
    assert parse(r).findtext("RequestId") == r.headers["x-cos-request-id"]
    r = await cos.head("dir/file.txt")
    assert r.status_code == 404 and r.content == b""
    r = await cos.delete("dir/file.txt")
    assert r.status_code == 204


async def test_virtual_hosted_addressing(cos):
    r = await cos.put("v/key", b"virtual", virtual=True)
    assert r.status_code == 200, r.text
    r = await cos.get("v/key")
    assert r.content == b"virtual"
    r = await cos.get("v/key", virtual=True)
    assert r.content == b"virtual"


async def test_put_content_md5_errors(cos):
    r = await cos.put("k", b"abc", headers={"Content-MD5": content_md5(b"abd")})
    assert r.status_code == 400 and error_code(r) == "BadDigest"
    r = await cos.put("k", b"abc", headers={"Content-MD5": "not base64!"})
    assert r.status_code == 400 and error_code(r) == "InvalidDigest"
    assert (await cos.head("k")).status_code == 404


async def test_empty_object_and_metadata_echo(cos):
    r = await cos.put("empty/", b"", headers={"Content-Type": "application/x-directory",
                                              "x-cos-storage-class": "STANDARD_IA",
                                              "x-cos-server-side-encryption": "AES256",
                                              "Content-Disposition": "attachment", "Content-Encoding": "identity",
                                              "Expires": "Thu, 01 Dec 2094 16:00:00 GMT"})
    assert r.status_code == 200
    assert r.headers["etag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert r.headers["x-cos-hash-crc64ecma"] == "0"
    assert r.headers["x-cos-server-side-encryption"] == "AES256"
    r = await cos.head("empty/")
    assert r.headers["content-type"] == "application/x-directory"
    assert r.headers["x-cos-storage-class"] == "STANDARD_IA"
    assert r.headers["content-disposition"] == "attachment"
    assert r.headers["expires"] == "Thu, 01 Dec 2094 16:00:00 GMT"
    r = await cos.get("empty/")
    assert r.status_code == 200 and r.content == b""


async def test_ranges(cos):
    data = bytes(range(256)) * 4
    await cos.put("r", data)
    cases = {
        "bytes=0-0": (206, data[0:1], "bytes 0-0/1024"),
        "bytes=10-19": (206, data[10:20], "bytes 10-19/1024"),
        "bytes=1000-": (206, data[1000:], "bytes 1000-1023/1024"),
        "bytes=-24": (206, data[-24:], "bytes 1000-1023/1024"),
        "bytes=-5000": (206, data, "bytes 0-1023/1024"),
        "bytes=1000-5000": (206, data[1000:], "bytes 1000-1023/1024"),
        "bytes=0-1023": (206, data, "bytes 0-1023/1024"),
    }
    for header, (status, body, content_range) in cases.items():
        r = await cos.get("r", headers={"Range": header})
        assert r.status_code == status, header
        assert r.content == body, header
        assert r.headers["content-range"] == content_range, header
    for header in ("bytes=1024-", "bytes=2000-3000", "bytes=-0"):
        r = await cos.get("r", headers={"Range": header})
        assert r.status_code == 416, header
        assert error_code(r) == "InvalidRange"
        assert r.headers["content-range"] == "bytes */1024"
    for header in ("bytes=0-1,5-6", "items=0-1", "bytes=5-2"):
        r = await cos.get("r", headers={"Range": header})
        assert r.status_code == 200 and r.content == data, header
    await cos.put("zero", b"")
    r = await cos.get("zero", headers={"Range": "bytes=0-"})
    assert r.status_code == 416


async def test_conditionals(cos):
    r = await cos.put("c", b"conditional")
    etag = r.headers["etag"]
    last_modified = (await cos.head("c")).headers["last-modified"]
    past = "Mon, 01 Jan 2001 00:00:00 GMT"
    future = "Fri, 01 Jan 2100 00:00:00 GMT"
    expectations = [
        ({"If-Match": etag}, 200),
        ({"If-Match": '"0000"'}, 412),
        ({"If-Match": "*"}, 200),
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": '"0000"'}, 200),
        ({"If-Modified-Since": future}, 304),
        ({"If-Modified-Since": last_modified}, 304),
        ({"If-Modified-Since": past}, 200),
        ({"If-Unmodified-Since": past}, 412),
        ({"If-Unmodified-Since": future}, 200),
        ({"If-Match": etag, "If-Unmodified-Since": past}, 200),
    ]
    for headers, status in expectations:
        for method in ("GET", "HEAD"):
            r = await cos.request(method, "c", headers=headers)
            assert r.status_code == status, (method, headers)
            if status == 412 and method == "GET":
                assert error_code(r) == "PreconditionFailed"
            if status == 304:
                assert r.content == b"" and r.headers["etag"] == etag


async def test_response_overrides(cos):
    await cos.put("o", b"x", headers={"Content-Type": "text/plain"})
    r = await cos.get("o", params={"response-content-type": "application/json",
                                   "response-cache-control": "max-age=600",
                                   "response-content-disposition": "attachment; filename=a b.txt"})
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "max-age=600"
    assert r.headers["content-disposition"] == "attachment; filename=a b.txt"


async def test_hostile_keys(cos):
    keys = ["a/../b", "//x", "dir/", "ü/中文", "../../etc/passwd", "a b+c%20d", "tab\tkey", "ctl\x01\x1f",
            "x" * 850, "é" * 425, ".", "..", "a/./b", "?query#frag", "back\\slash"]
    for index, key in enumerate(keys):
        r = await cos.put(key, f"body {index}".encode())
        assert r.status_code == 200, (key, r.text)
    for index, key in enumerate(keys):
        r = await cos.get(key)
        assert r.status_code == 200, key
        assert r.content == f"body {index}".encode(), key
    r = await cos.list(encoding_type="url")
    from urllib.parse import unquote

    listed = [unquote(element.text) for element in parse(r).iter("Key")]
    assert sorted(listed, key=lambda k: k.encode()) == sorted(keys, key=lambda k: k.encode())
    assert listed == sorted(keys, key=lambda k: k.encode())
    r = await cos.put("y" * 851, b"too long")
    assert r.status_code == 400 and error_code(r) == "KeyTooLong"
    r = await cos.put("é" * 426, b"too long")
    assert r.status_code == 400 and error_code(r) == "KeyTooLong"
    # nothing escaped the root
    root = cos.server.root
    outside = [p for p in root.parent.rglob("*") if p.is_file() and root not in p.parents
               and p.suffix != ".log"]
    assert outside == []


async def test_copy_object(cos):
    data = b"copy me" * 1000
    await cos.put("src/a b+c", data, headers={"x-cos-meta-color": "red", "Content-Type": "text/plain"})
    # host form, url-encoded key
    source = f"{cos.bucket}.cos.ap-guangzhou.myqcloud.com/src/a%20b%2Bc"
    r = await cos.put("dst1", b"", headers={"x-cos-copy-source": source})
    assert r.status_code == 200, r.text
    doc = parse(r)
    assert doc.tag == "CopyObjectResult"
    assert doc.findtext("ETag") == '"' + hashlib.md5(data).hexdigest() + '"'
    assert doc.findtext("CRC64") == str(crc64.crc64(data))
    assert doc.findtext("LastModified").endswith("Z")
    r = await cos.get("dst1")
    assert r.content == data and r.headers["x-cos-meta-color"] == "red" and r.headers["content-type"] == "text/plain"
    # path form with Replaced (any case)
    for directive in ("Replaced", "REPLACE", "replaced"):
        r = await cos.put("dst2", b"", headers={"x-cos-copy-source": f"/{cos.bucket}/src/a%20b%2Bc",
                                                "x-cos-metadata-directive": directive,
                                                "x-cos-meta-shape": "round", "Content-Type": "image/png"})
        assert r.status_code == 200, r.text
    r = await cos.head("dst2")
    assert r.headers["x-cos-meta-shape"] == "round" and "x-cos-meta-color" not in r.headers
    assert r.headers["content-type"] == "image/png"
    # self copy needs Replaced
    r = await cos.put("dst2", b"", headers={"x-cos-copy-source": f"/{cos.bucket}/dst2"})
    assert r.status_code == 400 and error_code(r) == "InvalidRequest"
    r = await cos.put("dst2", b"", headers={"x-cos-copy-source": f"/{cos.bucket}/dst2",
                                            "x-cos-metadata-directive": "Replaced", "x-cos-meta-mode": "33261"})
    assert r.status_code == 200
    assert (await cos.head("dst2")).headers["x-cos-meta-mode"] == "33261"
    # conditionals on the source
    etag = (await cos.head("dst1")).headers["etag"]
    r = await cos.put("dst3", b"", headers={"x-cos-copy-source": f"/{cos.bucket}/dst1",
                                            "x-cos-copy-source-If-Match": '"nope"'})
    assert r.status_code == 412 and error_code(r) == "PreconditionFailed"
    r = await cos.put("dst3", b"", headers={"x-cos-copy-source": f"/{cos.bucket}/dst1",
                                            "x-cos-copy-source-If-None-Match": etag})
    assert r.status_code == 412
    r = await cos.put("dst3", b"", headers={"x-cos-copy-source": f"/{cos.bucket}/dst1",
                                            "x-cos-copy-source-If-Match": etag})
    assert r.status_code == 200
    r = await cos.put("dst4", b"", headers={"x-cos-copy-source": f"/{cos.bucket}/missing"})
    assert r.status_code == 404 and error_code(r) == "NoSuchKey"
    r = await cos.put("dst4", b"", headers={"x-cos-copy-source": f"/{cos.bucket}/dst1",
                                            "x-cos-metadata-directive": "Sometimes"})
    assert r.status_code == 400 and error_code(r) == "InvalidArgument"


async def test_append(cos):
    r = await cos.request("POST", "log", params={"append": "", "position": "0"}, content=b"hello ",
                          headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.headers["x-cos-next-append-position"] == "6"
    r = await cos.request("POST", "log", params={"append": "", "position": "6"}, content=b"world")
    assert r.headers["x-cos-next-append-position"] == "11"
    assert r.headers["x-cos-hash-crc64ecma"] == str(crc64.crc64(b"hello world"))
    r = await cos.get("log")
    assert r.content == b"hello world"
    assert r.headers["x-cos-object-type"] == "appendable"
    assert r.headers["content-type"] == "text/plain"
    assert (await cos.head("log")).headers["x-cos-object-type"] == "appendable"
    r = await cos.request("POST", "log", params={"append": "", "position": "3"}, content=b"x")
    assert r.status_code == 409 and error_code(r) == "AppendPositionErr"
    r = await cos.request("POST", "log", params={"append": ""}, content=b"x")
    assert r.status_code == 400 and error_code(r) == "InvalidArgument"
    await cos.put("normal", b"abc")
    r = await cos.request("POST", "normal", params={"append": "", "position": "3"}, content=b"x")
    assert r.status_code == 409 and error_code(r) == "ObjectNotAppendable"
    # a PUT over an appendable object makes it normal
    await cos.put("log", b"plain")
    assert "x-cos-object-type" not in (await cos.head("log")).headers


async def test_delete_multiple(cos):
    for i in range(5):
        await cos.put(f"d/{i}", b"x")
    body = (b"<Delete><Quiet>false</Quiet>" + b"".join(b"<Object><Key>d/%d</Key></Object>" % i for i in range(3))
            + b"<Object><Key>d/missing</Key></Object></Delete>")
    r = await cos.request("POST", "", params={"delete": ""}, content=body,
                          headers={"Content-MD5": content_md5(body), "Content-Type": "application/xml"})
    assert r.status_code == 200, r.text
    deleted = [e.findtext("Key") for e in parse(r).findall("Deleted")]
    assert deleted == ["d/0", "d/1", "d/2", "d/missing"]
    body = b"<Delete><Quiet>true</Quiet><Object><Key>d/3</Key></Object></Delete>"
    r = await cos.request("POST", "", params={"delete": ""}, content=body)
    assert r.status_code == 200 and parse(r).findall("Deleted") == []
    keys = [e.text for e in parse(await cos.list(prefix="d/")).iter("Key")]
    assert keys == ["d/4"]
    r = await cos.request("POST", "", params={"delete": ""}, content=body,
                          headers={"Content-MD5": content_md5(b"other")})
    assert r.status_code == 400 and error_code(r) == "BadDigest"
    too_many = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>"
    r = await cos.request("POST", "", params={"delete": ""}, content=too_many)
    assert r.status_code == 400 and error_code(r) == "MalformedXML"
    r = await cos.request("POST", "", params={"delete": ""}, content=b"<Delete><Object>")
    assert r.status_code == 400 and error_code(r) == "MalformedXML"


async def test_xml_bomb_is_refused_and_server_survives(cos):
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Delete><Object><Key>&lol3;</Key></Object></Delete>"""
    r = await cos.request("POST", "", params={"delete": ""}, content=bomb)
    assert r.status_code == 400 and error_code(r) == "MalformedXML"
    external = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&e;</ETag></Part></CompleteMultipartUpload>"""
    r = await cos.request("POST", "k", params={"uploads": ""})
    upload_id = parse(r).findtext("UploadId")
    r = await cos.request("POST", "k", params={"uploadId": upload_id}, content=external)
    assert r.status_code == 400 and error_code(r) == "MalformedXML"
    assert (await cos.list()).status_code == 200


async def test_oversized_headers(cos):
    r = await cos.get("k", headers={"x-cos-meta-big": "a" * 70000}, sign=False)
    assert r.status_code == 400
    assert error_code(r) == "RequestHeaderSectionTooLarge"
    assert (await cos.list()).status_code == 200


async def test_metadata_too_large(cos):
    r = await cos.put("m", b"x", headers={"x-cos-meta-a": "v" * 3000})
    assert r.status_code == 400 and error_code(r) == "MetadataTooLarge"


async def test_method_not_allowed_and_bad_uri(cos):
    r = await cos.request("PATCH", "k")
    assert r.status_code == 405 and error_code(r) == "MethodNotAllowed"
    r = await cos.request("POST", "k")
    assert r.status_code == 405
    request = cos.build("GET", "k")
    request.url = httpx.URL(cos.endpoint + f"/{cos.bucket}/%FF%FE")
    r = await cos.client.send(request)
    assert r.status_code == 400 and error_code(r) == "InvalidURI"


async def _raw_exchange(cos, request: httpx.Request, body: bytes = b"", until: bytes = b"</Error>") -> bytes:
    """Send a request with hand-made framing over a raw socket; return what the server answered."""
    import trio

    host, port = cos.host.split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        head = f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()
                       if not (k.lower() == "content-length" and "transfer-encoding" in request.headers))
        await stream.send_all(head.encode() + b"\r\n" + body)
        received = b""
        with trio.move_on_after(5):
            while until not in received:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
        return received


async def test_entity_too_large_declared(cos):
    request = cos.build("PUT", "huge", headers={"Content-Length": str(5 * 1024**3 + 1), "Expect": "100-continue"})
    answer = await _raw_exchange(cos, request)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"<Code>EntityTooLarge</Code>" in answer
    assert (await cos.head("huge")).status_code == 404


async def test_chunked_and_expect_continue(cos):
    async def chunks():
        for piece in (b"[Chunked Content]", b"[2nd chunk]", b"[3rd chunk]", b"[4th chunk]"):
            yield piece

    built = cos.build("PUT", "chunked", headers={"Expect": "100-continue"})
    headers = {k: v for k, v in built.headers.items() if k.lower() != "content-length"}
    request = httpx.Request("PUT", built.url, headers=headers, content=chunks())
    assert request.headers["transfer-encoding"] == "chunked"
    r = await cos.client.send(request)
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"aa488bb80185a6be87f4a7b936a80752"'
    assert r.headers["x-cos-hash-crc64ecma"] == "7188322482464764960"
    r = await cos.get("chunked")
    assert r.content == b"[Chunked Content][2nd chunk][3rd chunk][4th chunk]"


async def test_chunked_body_over_raw_socket(cos):
    request = cos.build("PUT", "raw-chunked", headers={"Transfer-Encoding": "chunked"})
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    answer = await _raw_exchange(cos, request, body, until=b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert (await cos.get("raw-chunked")).content == b"hello world"


async def test_concurrent_requests(cos):
    import trio

    async def worker(i: int) -> None:
        data = (b"%06d" % i) * 5000
        r = await cos.put(f"par/{i}", data)
        assert r.status_code == 200
        r = await cos.get(f"par/{i}")
        assert r.content == data

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(64):
            nursery.start_soon(worker, i)
    assert time.monotonic() - started < 30
    r = await cos.list(prefix="par/")
    assert len(parse(r).findall("Contents")) == 64
