"""Multipart uploads and bucket listings over real HTTP."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

import httpx
import pytest

from cosfs.cos import crc64

from .helpers import CosHttp, error_code, parse

MiB = 1024 * 1024


@pytest.fixture
async def cos(cos_server):
    async with httpx.AsyncClient(timeout=60) as client:
        yield CosHttp(cos_server, client)


async def initiate(cos, key: str, headers: dict | None = None) -> str:
    r = await cos.request("POST", key, params={"uploads": ""}, headers=headers)
    assert r.status_code == 200, r.text
    doc = parse(r)
    assert doc.findtext("Key") == key and doc.findtext("Bucket") == cos.bucket
    return doc.findtext("UploadId")


async def upload_part(cos, key: str, upload_id: str, number: int, data: bytes) -> str:
    r = await cos.put(key, data, params={"partNumber": str(number), "uploadId": upload_id})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert r.headers["x-cos-hash-crc64ecma"] == str(crc64.crc64(data))
    return r.headers["etag"]


def complete_body(parts: list[tuple[int, str]]) -> bytes:
    return ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in parts)
        + "</CompleteMultipartUpload>").encode()


async def test_multipart_roundtrip(cos):
    key = "big/object.bin"
    upload_id = await initiate(cos, key, {"Content-Type": "video/mp4", "x-cos-meta-mode": "33188"})
    pieces = [bytes([i]) * (MiB + 17 * i) for i in range(1, 4)] + [b"tail"]
    etags = [await upload_part(cos, key, upload_id, i + 1, piece) for i, piece in enumerate(pieces)]
    whole = b"".join(pieces)

    r = await cos.get(key, params={"uploadId": upload_id})
    doc = parse(r)
    assert [p.findtext("PartNumber") for p in doc.findall("Part")] == ["1", "2", "3", "4"]
    assert doc.findall("Part")[3].findtext("Size") == "4"
    r = await cos.get(key, params={"uploadId": upload_id, "max-parts": "2", "part-number-marker": "1"})
    doc = parse(r)
    assert [p.findtext("PartNumber") for p in doc.findall("Part")] == ["2", "3"]
    assert doc.findtext("IsTruncated") == "true" and doc.findtext("NextPartNumberMarker") == "3"

    r = await cos.list(uploads="")
    uploads = parse(r).findall("Upload")
    assert [(u.findtext("Key"), u.findtext("UploadId")) for u in uploads] == [(key, upload_id)]
    assert (await cos.head(key)).status_code == 404  # invisible until complete

    r = await cos.request("POST", key, params={"uploadId": upload_id},
                          content=complete_body(list(zip(range(1, 5), etags))))
    assert r.status_code == 200, r.text
    doc = parse(r)
    assert doc.tag == "CompleteMultipartUploadResult"
    assert doc.findtext("Key") == key and doc.findtext("Bucket") == cos.bucket
    assert doc.findtext("ETag").endswith('-4"')
    assert doc.findtext("Location").endswith(key)
    assert r.headers["x-cos-hash-crc64ecma"] == str(crc64.crc64(whole))

    r = await cos.get(key)
    assert r.content == whole
    assert r.headers["content-type"] == "video/mp4" and r.headers["x-cos-meta-mode"] == "33188"
    assert r.headers["x-cos-hash-crc64ecma"] == str(crc64.crc64(whole))
    r = await cos.request("POST", key, params={"uploadId": upload_id}, content=complete_body([(1, etags[0])]))
    assert r.status_code == 404 and error_code(r) == "NoSuchUpload"
    assert parse(await cos.list(uploads="")).findall("Upload") == []


async def test_multipart_errors(cos):
    key = "mp"
    upload_id = await initiate(cos, key)
    small = await upload_part(cos, key, upload_id, 1, b"small")
    big = await upload_part(cos, key, upload_id, 2, b"B" * MiB)
    last = await upload_part(cos, key, upload_id, 3, b"end")

    async def complete(parts, body=None):
        return await cos.request("POST", key, params={"uploadId": upload_id}, content=body or complete_body(parts))

    r = await complete([(1, small), (2, big)])
    assert r.status_code == 400 and error_code(r) == "EntityTooSmall"
    r = await complete([(2, big), (1, small)])
    assert r.status_code == 400 and error_code(r) == "InvalidPartOrder"
    r = await complete([(2, big), (4, last)])
    assert r.status_code == 400 and error_code(r) == "InvalidPart"
    r = await complete([(2, '"0123456789abcdef0123456789abcdef"'), (3, last)])
    assert r.status_code == 400 and error_code(r) == "InvalidPart"
    r = await complete([], body=b"<CompleteMultipartUpload>")
    assert r.status_code == 400 and error_code(r) == "MalformedXML"
    r = await complete([], body=b"<CompleteMultipartUpload></CompleteMultipartUpload>")
    assert r.status_code == 400 and error_code(r) == "MalformedXML"
    for number in ("0", "10001", "x"):
        r = await cos.put(key, b"x", params={"partNumber": number, "uploadId": upload_id})
        assert r.status_code == 400 and error_code(r) == "InvalidArgument", number
    r = await cos.put(key, b"x", params={"partNumber": "1", "uploadId": "nope"})
    assert r.status_code == 404 and error_code(r) == "NoSuchUpload"
    r = await cos.put("other-key", b"x", params={"partNumber": "1", "uploadId": upload_id})
    assert r.status_code == 404 and error_code(r) == "NoSuchUpload"
    # a part can be overwritten, then completion works with the new ETag
    small = await upload_part(cos, key, upload_id, 1, b"S" * MiB)
    r = await complete([(1, small), (2, big), (3, last)])
    assert r.status_code == 200, r.text
    assert (await cos.get(key)).content == b"S" * MiB + b"B" * MiB + b"end"


async def test_abort(cos):
    upload_id = await initiate(cos, "ab")
    await upload_part(cos, "ab", upload_id, 1, b"data")
    r = await cos.delete("ab", params={"uploadId": upload_id})
    assert r.status_code == 204
    r = await cos.get("ab", params={"uploadId": upload_id})
    assert r.status_code == 404 and error_code(r) == "NoSuchUpload"
    r = await cos.delete("ab", params={"uploadId": upload_id})
    assert r.status_code == 404


async def test_upload_part_copy(cos):
    source = bytes(range(256)) * 8192  # 2 MiB
    await cos.put("copy/src", source)
    upload_id = await initiate(cos, "copy/dst")
    r = await cos.put("copy/dst", b"", params={"partNumber": "1", "uploadId": upload_id},
                      headers={"x-cos-copy-source": f"{cos.bucket}.cos.ap-guangzhou.myqcloud.com/copy/src",
                               "x-cos-copy-source-range": f"bytes=0-{MiB - 1}"})
    assert r.status_code == 200, r.text
    doc = parse(r)
    assert doc.tag == "CopyPartResult"
    first = doc.findtext("ETag")
    assert first == f'"{hashlib.md5(source[:MiB]).hexdigest()}"'
    assert doc.findtext("CRC64") == str(crc64.crc64(source[:MiB]))
    r = await cos.put("copy/dst", b"", params={"partNumber": "2", "uploadId": upload_id},
                      headers={"x-cos-copy-source": f"/{cos.bucket}/copy/src",
                               "x-cos-copy-source-range": f"bytes={MiB}-{MiB + 99}"})
    second = parse(r).findtext("ETag")
    r = await cos.put("copy/dst", b"", params={"partNumber": "3", "uploadId": upload_id},
                      headers={"x-cos-copy-source": f"/{cos.bucket}/copy/src",
                               "x-cos-copy-source-range": "bytes=0-99999999"})
    assert r.status_code == 400 and error_code(r) == "InvalidArgument"
    r = await cos.request("POST", "copy/dst", params={"uploadId": upload_id},
                          content=complete_body([(1, first), (2, second)]))
    assert r.status_code == 200
    assert (await cos.get("copy/dst")).content == source[:MiB] + source[MiB:MiB + 100]


async def test_list_multipart_uploads_paging(cos):
    ids = {}
    for key in ("a/1", "a/2", "b", "c/d/e"):
        ids[key] = await initiate(cos, key)
    second = await initiate(cos, "b")
    r = await cos.list(uploads="", max_uploads="2")
    doc = parse(r)
    assert [u.findtext("Key") for u in doc.findall("Upload")] == ["a/1", "a/2"]
    assert doc.findtext("IsTruncated") == "true"
    r = await cos.list(uploads="", key_marker=doc.findtext("NextKeyMarker"),
                       upload_id_marker=doc.findtext("NextUploadIdMarker"))
    doc = parse(r)
    assert [u.findtext("Key") for u in doc.findall("Upload")] == ["b", "b", "c/d/e"]
    r = await cos.list(uploads="", delimiter="/")
    doc = parse(r)
    assert [u.findtext("Key") for u in doc.findall("Upload")] == ["b", "b"]
    assert [p.findtext("Prefix") for p in doc.findall("CommonPrefixes")] == ["a/", "c/"]
    r = await cos.list(uploads="", prefix="c/", encoding_type="url")
    assert [unquote(u.findtext("Key")) for u in parse(r).findall("Upload")] == ["c/d/e"]
    r = await cos.list(uploads="", max_uploads="0")
    assert r.status_code == 400 and error_code(r) == "InvalidArgument"
    assert second != ids["b"]


async def test_listing(cos):
    keys = ["a", "a/b", "a/c/d", "a/c/e", "b/x y", "b+c", "中文/1", "z"]
    for key in keys:
        await cos.put(key, b"1")
    doc = parse(await cos.list())
    assert [k.text for k in doc.iter("Key")] == sorted(keys, key=lambda k: k.encode())
    assert doc.findtext("Name") == cos.bucket and doc.findtext("IsTruncated") == "false"
    contents = doc.find("Contents")
    assert contents.findtext("ETag") == '"c4ca4238a0b923820dcc509a6f75849b"'
    assert contents.findtext("Size") == "1" and contents.findtext("StorageClass") == "STANDARD"
    assert contents.findtext("LastModified").endswith("Z")

    doc = parse(await cos.list(delimiter="/"))
    assert [k.text for k in doc.iter("Key")] == ["a", "b+c", "z"]
    assert [p.findtext("Prefix") for p in doc.findall("CommonPrefixes")] == ["a/", "b/", "中文/"]
    doc = parse(await cos.list(prefix="a/", delimiter="/"))
    assert [k.text for k in doc.iter("Key")] == ["a/b"]
    assert [p.findtext("Prefix") for p in doc.findall("CommonPrefixes")] == ["a/c/"]

    # paging: max-keys counts keys and prefixes
    seen, marker = [], ""
    while True:
        doc = parse(await cos.list(delimiter="/", max_keys="2", marker=marker))
        page = [k.text for k in doc.iter("Key")] + [p.findtext("Prefix") for p in doc.findall("CommonPrefixes")]
        assert len(page) <= 2
        seen += page
        if doc.findtext("IsTruncated") != "true":
            break
        marker = doc.findtext("NextMarker")
    assert sorted(seen) == sorted(["a", "a/", "b/", "b+c", "z", "中文/"])

    doc = parse(await cos.list(prefix="b", encoding_type="url", delimiter="/"))
    assert doc.findtext("EncodingType") == "url"
    assert [k.text for k in doc.iter("Key")] == ["b%2Bc"]
    assert [p.findtext("Prefix") for p in doc.findall("CommonPrefixes")] == ["b%2F"]
    assert doc.findtext("Delimiter") == "%2F"
    doc = parse(await cos.list(max_keys="5000"))
    assert doc.findtext("MaxKeys") == "1000"
    r = await cos.list(encoding_type="base64")
    assert r.status_code == 400 and error_code(r) == "InvalidArgument"
    r = await cos.list(max_keys="-1")
    assert r.status_code == 400


async def test_list_v2(cos):
    for key in ("k1", "k2", "k3"):
        await cos.put(key, b"v")
    doc = parse(await cos.list(list_type="2", max_keys="2"))
    assert [k.text for k in doc.iter("Key")] == ["k1", "k2"]
    assert doc.findtext("KeyCount") == "2"
    token = doc.findtext("NextContinuationToken")
    doc = parse(await cos.list(list_type="2", continuation_token=token))
    assert [k.text for k in doc.iter("Key")] == ["k3"]
    doc = parse(await cos.list(list_type="2", start_after="k1"))
    assert [k.text for k in doc.iter("Key")] == ["k2", "k3"]


async def test_buckets(cos):
    r = await cos.request("HEAD", "")
    assert r.status_code == 200
    r = await cos.request("HEAD", "", bucket="missing-1250000000")
    assert r.status_code == 404 and r.content == b""
    r = await cos.request("GET", "", bucket="missing-1250000000")
    assert r.status_code == 404 and error_code(r) == "NoSuchBucket"
    r = await cos.put("k", b"x", bucket="missing-1250000000")
    assert r.status_code == 404 and error_code(r) == "NoSuchBucket"
    r = await cos.request("PUT", "", bucket="newbucket-1250000001")
    assert r.status_code == 200, r.text
    r = await cos.request("PUT", "", bucket="newbucket-1250000001")
    assert r.status_code == 409
    r = await cos.put("k", b"x", bucket="newbucket-1250000001")
    assert r.status_code == 200
    r = await cos.request("PUT", "", bucket="Bad_Bucket")
    assert r.status_code == 400 and error_code(r) == "InvalidBucketName"
    r = await cos.request("GET", "", bucket="")
    assert r.status_code == 200
    names = [b.findtext("Name") for b in parse(r).iter("Bucket")]
    assert names == [cos.bucket, "newbucket-1250000001"]
    assert (await cos.request("DELETE", "", bucket="newbucket-1250000001")).status_code == 409
    await cos.delete("k", bucket="newbucket-1250000001")
    assert (await cos.request("DELETE", "", bucket="newbucket-1250000001")).status_code == 204
    assert (await cos.request("HEAD", "", bucket="newbucket-1250000001")).status_code == 404


def stored_bytes(cos_server, key: str) -> tuple[int, int]:
    """(apparent size, allocated bytes) of the file the server keeps `key` in."""
    from cosfs.server.storage import object_relpath

    st = (cos_server.root / cos_server.bucket / "objects" / object_relpath(key)).stat()
    return st.st_size, st.st_blocks * 512


async def test_zeros_are_stored_as_holes_through_put_complete_and_copy(cos, cos_server):
    """A sparse object (8 MiB of zeros between 4 KiB of data at each end) takes the disk only
    its data, after a PUT, a multipart Complete and a copy; every read gives the zeros back."""
    head, tail = bytes(range(256)) * 16, bytes(reversed(range(256))) * 16
    body = head + bytes(8 * MiB) + tail
    r = await cos.put("sparse/put", body)
    assert r.status_code == 200, r.text

    upload_id = await initiate(cos, "sparse/multipart")
    parts = [head + bytes(3 * MiB), bytes(5 * MiB), tail]
    etags = [await upload_part(cos, "sparse/multipart", upload_id, n, p) for n, p in enumerate(parts, 1)]
    r = await cos.request("POST", "sparse/multipart", params={"uploadId": upload_id},
                          content=complete_body(list(enumerate(etags, 1))))
    assert r.status_code == 200, r.text

    r = await cos.request("PUT", "sparse/copy", headers={"x-cos-copy-source":
                                                        f"{cos.bucket}.cos.ap-guangzhou.myqcloud.com/sparse/put"})
    assert r.status_code == 200, r.text

    for key in ("sparse/put", "sparse/multipart", "sparse/copy"):
        r = await cos.get(key)
        assert r.status_code == 200 and r.content == body, key
        r = await cos.get(key, headers={"Range": f"bytes={4 * MiB}-{4 * MiB + 9}"})
        assert r.status_code == 206 and r.content == bytes(10), key
        size, allocated = stored_bytes(cos_server, key)
        assert size > len(body) and allocated < MiB, (key, size, allocated)
