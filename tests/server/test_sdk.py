"""The official Tencent SDK (cos-python-sdk-v5) against `cosfs serve`, virtual-hosted style.

The SDK is synchronous (requests), so these are plain test functions. With IP/Port set it
connects to the local server and sends ``Host: <bucket>.cos.ap-guangzhou.myqcloud.com``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from urllib.parse import unquote

import pytest

qcloud_cos = pytest.importorskip("qcloud_cos")
from qcloud_cos import CosConfig, CosS3Client  # noqa: E402
from qcloud_cos.cos_exception import CosServiceError  # noqa: E402

from cosfs.cos import crc64  # noqa: E402

MiB = 1024 * 1024


def make_client(server, secret_key: str | None = None) -> CosS3Client:
    host, port = server.endpoint.split("://", 1)[1].rsplit(":", 1)
    config = CosConfig(Region="ap-guangzhou", SecretId=server.secret_id, SecretKey=secret_key or server.secret_key,
                       Scheme="http", IP=host, Port=int(port), Timeout=60)
    client = CosS3Client(config, retry=0)
    return client


@pytest.fixture
def sdk(cos_server):
    logging.getLogger("qcloud_cos").setLevel(logging.CRITICAL)
    client = make_client(cos_server)
    yield client, cos_server.bucket
    client._session.close()


def test_put_get_head_delete(sdk):
    client, bucket = sdk
    body = b"[Object Content]"
    response = client.put_object(Bucket=bucket, Key="sdk/hello 世界.txt", Body=body, EnableMD5=True,
                                 ContentType="text/plain", Metadata={"x-cos-meta-mode": "33188"})
    assert response["ETag"] == '"ee8de918d05640145b18f70f4c3aa602"'
    assert response["x-cos-hash-crc64ecma"] == "16749565679157681890"
    head = client.head_object(Bucket=bucket, Key="sdk/hello 世界.txt")
    assert head["Content-Length"] == "16" and head["x-cos-meta-mode"] == "33188"
    got = client.get_object(Bucket=bucket, Key="sdk/hello 世界.txt")
    assert got["Body"].get_raw_stream().read() == body
    ranged = client.get_object(Bucket=bucket, Key="sdk/hello 世界.txt", Range="bytes=1-6")
    assert ranged["Body"].get_raw_stream().read() == b"Object"
    assert ranged["Content-Range"] == "bytes 1-6/16"
    client.delete_object(Bucket=bucket, Key="sdk/hello 世界.txt")
    with pytest.raises(CosServiceError) as info:
        client.head_object(Bucket=bucket, Key="sdk/hello 世界.txt")
    assert info.value.get_status_code() == 404
    with pytest.raises(CosServiceError) as info:
        client.get_object(Bucket=bucket, Key="sdk/hello 世界.txt")
    assert info.value.get_error_code() == "NoSuchKey"


def test_head_bucket_and_listing(sdk):
    client, bucket = sdk
    client.head_bucket(Bucket=bucket)
    for key in ("l/a", "l/b/c", "l/b/d", "l/e f", "l/中"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    listing = client.list_objects(Bucket=bucket, Prefix="l/", Delimiter="/")
    assert [c["Key"] for c in listing["Contents"]] == ["l/a", "l/e f", "l/中"]
    assert [p["Prefix"] for p in listing["CommonPrefixes"]] == ["l/b/"]
    page = client.list_objects(Bucket=bucket, Prefix="l/", MaxKeys=2)
    assert page["IsTruncated"] == "true"
    rest = client.list_objects(Bucket=bucket, Prefix="l/", Marker=page["NextMarker"])
    assert len(page["Contents"]) + len(rest["Contents"]) == 5
    encoded = client.list_objects(Bucket=bucket, Prefix="l/e ", EncodingType="url")
    assert [unquote(c["Key"]) for c in encoded["Contents"]] == ["l/e f"]
    with pytest.raises(CosServiceError) as info:
        client.head_bucket(Bucket="nosuchbucket-1250000000")
    assert info.value.get_status_code() == 404


def test_delete_objects(sdk):
    client, bucket = sdk
    for i in range(3):
        client.put_object(Bucket=bucket, Key=f"del/{i}", Body=b"x")
    response = client.delete_objects(Bucket=bucket, Delete={"Object": [{"Key": f"del/{i}"} for i in range(3)],
                                                            "Quiet": "false"})
    assert sorted(d["Key"] for d in response["Deleted"]) == ["del/0", "del/1", "del/2"]
    assert "Contents" not in client.list_objects(Bucket=bucket, Prefix="del/")


def test_copy_object(sdk):
    client, bucket = sdk
    client.put_object(Bucket=bucket, Key="cp/src file", Body=b"copy source", Metadata={"x-cos-meta-a": "1"})
    source = {"Bucket": bucket, "Key": "cp/src file", "Region": "ap-guangzhou"}
    response = client.copy_object(Bucket=bucket, Key="cp/dst", CopySource=source)
    assert response["ETag"] == '"' + hashlib.md5(b"copy source").hexdigest() + '"'
    assert client.head_object(Bucket=bucket, Key="cp/dst")["x-cos-meta-a"] == "1"
    client.copy_object(Bucket=bucket, Key="cp/dst", CopySource={"Bucket": bucket, "Key": "cp/dst",
                                                                "Region": "ap-guangzhou"},
                       CopyStatus="Replaced", Metadata={"x-cos-meta-b": "2"}, ContentType="text/x-new")
    head = client.head_object(Bucket=bucket, Key="cp/dst")
    assert head["x-cos-meta-b"] == "2" and "x-cos-meta-a" not in head and head["Content-Type"] == "text/x-new"
    with pytest.raises(CosServiceError) as info:
        client.copy_object(Bucket=bucket, Key="cp/dst", CopySource={"Bucket": bucket, "Key": "cp/dst",
                                                                    "Region": "ap-guangzhou"})
    assert info.value.get_error_code() == "InvalidRequest"
    # (the high-level client.copy() HEADs the source at its real *.myqcloud.com URL, ignoring the
    # IP/Port setting, so it cannot be pointed at a local server; copy_object is what it calls.)


def test_append_object(sdk):
    client, bucket = sdk
    response = client.append_object(Bucket=bucket, Key="app", Position=0, Data=b"hello ")
    assert response["x-cos-next-append-position"] == "6"
    response = client.append_object(Bucket=bucket, Key="app", Position=6, Data=b"world")
    assert response["x-cos-next-append-position"] == "11"
    assert client.get_object(Bucket=bucket, Key="app")["Body"].get_raw_stream().read() == b"hello world"
    with pytest.raises(CosServiceError) as info:
        client.append_object(Bucket=bucket, Key="app", Position=3, Data=b"x")
    assert info.value.get_error_code() == "AppendPositionErr"


def test_multipart_low_level(sdk):
    client, bucket = sdk
    key = "mp/object"
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/x-test")["UploadId"]
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix="mp/")
    assert uploads["Upload"][0]["UploadId"] == upload_id
    part1 = os.urandom(MiB)
    part2 = b"last part"
    etag1 = client.upload_part(Bucket=bucket, Key=key, Body=part1, PartNumber=1, UploadId=upload_id,
                               EnableMD5=True)["ETag"]
    etag2 = client.upload_part(Bucket=bucket, Key=key, Body=part2, PartNumber=2, UploadId=upload_id)["ETag"]
    parts = client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert [p["PartNumber"] for p in parts["Part"]] == ["1", "2"]
    response = client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id,
        MultipartUpload={"Part": [{"PartNumber": 1, "ETag": etag1}, {"PartNumber": 2, "ETag": etag2}]})
    assert response["ETag"].endswith('-2"')
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["x-cos-hash-crc64ecma"] == str(crc64.crc64(part1 + part2))
    assert head["Content-Type"] == "application/x-test"
    # abort
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="mp/aborted")["UploadId"]
    client.upload_part(Bucket=bucket, Key="mp/aborted", Body=b"x", PartNumber=1, UploadId=upload_id)
    client.abort_multipart_upload(Bucket=bucket, Key="mp/aborted", UploadId=upload_id)
    assert "Upload" not in client.list_multipart_uploads(Bucket=bucket, Prefix="mp/")


def test_upload_part_copy(sdk):
    client, bucket = sdk
    source = os.urandom(2 * MiB + 5)
    client.put_object(Bucket=bucket, Key="pc/src", Body=source)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="pc/dst")["UploadId"]
    copy_source = {"Bucket": bucket, "Key": "pc/src", "Region": "ap-guangzhou"}
    r1 = client.upload_part_copy(Bucket=bucket, Key="pc/dst", PartNumber=1, UploadId=upload_id,
                                 CopySource=copy_source, CopySourceRange=f"bytes=0-{MiB - 1}")
    r2 = client.upload_part_copy(Bucket=bucket, Key="pc/dst", PartNumber=2, UploadId=upload_id,
                                 CopySource=copy_source, CopySourceRange=f"bytes={MiB}-{2 * MiB + 4}")
    client.complete_multipart_upload(
        Bucket=bucket, Key="pc/dst", UploadId=upload_id,
        MultipartUpload={"Part": [{"PartNumber": 1, "ETag": r1["ETag"]}, {"PartNumber": 2, "ETag": r2["ETag"]}]})
    assert client.get_object(Bucket=bucket, Key="pc/dst")["Body"].get_raw_stream().read() == source


def test_upload_file_and_download_file_with_crc(sdk, tmp_path):
    client, bucket = sdk
    data = os.urandom(5 * MiB + 123)
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    client.upload_file(Bucket=bucket, Key="files/up.bin", LocalFilePath=str(local), PartSize=1, MAXThread=4,
                       EnableMD5=True)
    head = client.head_object(Bucket=bucket, Key="files/up.bin")
    assert head["Content-Length"] == str(len(data))
    assert head["x-cos-hash-crc64ecma"] == str(crc64.crc64(data))
    down = tmp_path / "down.bin"
    records = str(tmp_path / "download-records")  # (the SDK's resume records go to $HOME otherwise)
    client.download_file(Bucket=bucket, Key="files/up.bin", DestFilePath=str(down), PartSize=1, MAXThread=4,
                         EnableCRC=True, DumpRecordDir=records)
    assert down.read_bytes() == data
    small = tmp_path / "small.bin"
    client.download_file(Bucket=bucket, Key="files/up.bin", DestFilePath=str(small), PartSize=20,
                         DumpRecordDir=records)
    assert small.read_bytes() == data
    # upload_file_from_buffer (multipart from a stream)
    client.upload_file_from_buffer(Bucket=bucket, Key="files/buf.bin", Body=io.BytesIO(data), MaxBufferSize=2,
                                   PartSize=1)
    assert client.get_object(Bucket=bucket, Key="files/buf.bin")["Body"].get_raw_stream().read() == data


def test_wrong_secret_key(cos_server):
    logging.getLogger("qcloud_cos").setLevel(logging.CRITICAL)
    client = make_client(cos_server, secret_key="not-the-key")
    try:
        with pytest.raises(CosServiceError) as info:
            client.put_object(Bucket=cos_server.bucket, Key="denied", Body=b"x")
        assert info.value.get_error_code() == "SignatureDoesNotMatch"
        assert info.value.get_status_code() == 403
        with pytest.raises(CosServiceError) as info:
            client.list_objects(Bucket=cos_server.bucket)
        assert info.value.get_error_code() == "SignatureDoesNotMatch"
    finally:
        client._session.close()
