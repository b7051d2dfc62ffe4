"""XML documents and header formats that `cosfs serve` answers with (via cosfs.cos.xml.build)."""

from __future__ import annotations

import email.utils
import functools
import time
from collections.abc import Iterable
from urllib.parse import quote

from cosfs.cos.rules import ListResult
from cosfs.cos.xml import build
from cosfs.server.storage import ObjectRecord, Upload

OWNER_ID = "1250000000"
# how ACL documents name the owner (a CAM principal)
OWNER_ACL_ID = f"qcs::cam::uin/{OWNER_ID}:uin/{OWNER_ID}"


def http_date(ts: float) -> str:
    """RFC 1123 date, as in Last-Modified (whole seconds: formatted once per second)."""
    return _http_date_of_second(int(ts))


@functools.lru_cache(maxsize=4096)
def _http_date_of_second(second: int) -> str:
    return email.utils.formatdate(second, usegmt=True)


def iso_time(ts: float) -> str:
    """ISO 8601 with milliseconds and Z, as in listings."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def url_encode(text: str) -> str:
    return quote(text.encode("utf-8"), safe="-_.~")


def error_xml(code: str, message: str, resource: str, request_id: str) -> bytes:
    return build(
        "Error",
        [
            ("Code", code),
            ("Message", message),
            ("Resource", resource),
            ("RequestId", request_id),
            ("TraceId", request_id),
        ],
    )


def _owner() -> list:
    return [("ID", OWNER_ID), ("DisplayName", OWNER_ID)]


def list_bucket_v1(bucket: str, prefix: str, delimiter: str, marker: str, max_keys: int, encode: bool,
                   result: ListResult, records: dict[str, ObjectRecord]) -> bytes:
    enc = url_encode if encode else (lambda s: s)
    children: list = [("Name", bucket)]
    if encode:
        children.append(("EncodingType", "url"))
    children += [("Prefix", enc(prefix)), ("Marker", enc(marker)), ("MaxKeys", max_keys)]
    if delimiter:
        children.append(("Delimiter", enc(delimiter)))
    children.append(("IsTruncated", result.is_truncated))
    if result.is_truncated and result.next_marker is not None:
        children.append(("NextMarker", enc(result.next_marker)))
    children += [("CommonPrefixes", [("Prefix", enc(p))]) for p in result.common_prefixes]
    children += [("Contents", _contents(key, records[key], enc)) for key in result.keys if key in records]
    return build("ListBucketResult", children)


def list_bucket_v2(bucket: str, prefix: str, delimiter: str, start_after: str | None, token: str | None,
                   max_keys: int, encode: bool, fetch_owner: bool, result: ListResult,
                   records: dict[str, ObjectRecord]) -> bytes:
    enc = url_encode if encode else (lambda s: s)
    children: list = [("Name", bucket), ("Prefix", enc(prefix))]
    if encode:
        children.append(("EncodingType", "url"))
    children += [("MaxKeys", max_keys), ("KeyCount", len(result.keys) + len(result.common_prefixes))]
    if delimiter:
        children.append(("Delimiter", enc(delimiter)))
    if start_after is not None:
        children.append(("StartAfter", enc(start_after)))
    if token is not None:
        children.append(("ContinuationToken", token))
    children.append(("IsTruncated", result.is_truncated))
    if result.is_truncated and result.next_marker is not None:
        children.append(("NextContinuationToken", url_encode(result.next_marker)))
    children += [("CommonPrefixes", [("Prefix", enc(p))]) for p in result.common_prefixes]
    for key in result.keys:
        record = records.get(key)
        if record is not None:
            contents = _contents(key, record, enc)
            if not fetch_owner:
                contents = [c for c in contents if c[0] != "Owner"]
            children.append(("Contents", contents))
    return build("ListBucketResult", children, xmlns="http://s3.amazonaws.com/doc/2006-03-01/")


def _contents(key: str, record: ObjectRecord, enc) -> list:
    return [
        ("Key", enc(key)),
        ("LastModified", iso_time(record.last_modified)),
        ("ETag", f'"{record.etag}"'),
        ("Size", record.size),
        ("Owner", _owner()),
        ("StorageClass", record.storage_class),
    ]


def delete_result(deleted: Iterable[str], errors: Iterable[tuple[str, str, str]], encode: bool = False) -> bytes:
    enc = url_encode if encode else (lambda s: s)
    children: list = [("Deleted", [("Key", enc(key))]) for key in deleted]
    children += [("Error", [("Key", enc(key)), ("Code", code), ("Message", message)]) for key, code, message in errors]
    return build("DeleteResult", children)


def copy_object_result(record: ObjectRecord) -> bytes:
    return build(
        "CopyObjectResult",
        [("ETag", f'"{record.etag}"'), ("CRC64", str(record.crc64)), ("LastModified", iso_time(record.last_modified))],
    )


def copy_part_result(record: ObjectRecord) -> bytes:
    return build(
        "CopyPartResult",
        [("ETag", f'"{record.etag}"'), ("CRC64", str(record.crc64)), ("LastModified", iso_time(record.last_modified))],
    )


def initiate_result(bucket: str, key: str, upload_id: str, encode: bool) -> bytes:
    enc = url_encode if encode else (lambda s: s)
    return build("InitiateMultipartUploadResult", [("Bucket", bucket), ("Key", enc(key)), ("UploadId", upload_id)])


def complete_result(location: str, bucket: str, key: str, etag: str) -> bytes:
    return build(
        "CompleteMultipartUploadResult",
        [("Location", location), ("Bucket", bucket), ("Key", key), ("ETag", f'"{etag}"')],
        xmlns="http://www.qcloud.com/document/product/436/7751",
    )


def list_parts_result(bucket: str, upload: Upload, marker: int, max_parts: int, numbers: list[int],
                      truncated: bool, encode: bool) -> bytes:
    enc = url_encode if encode else (lambda s: s)
    children: list = [("Bucket", bucket)]
    if encode:
        children.append(("EncodingType", "url"))
    children += [
        ("Key", enc(upload.key)),
        ("UploadId", upload.upload_id),
        ("Initiator", _owner()),
        ("Owner", _owner()),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", numbers[-1] if numbers else marker),
        ("StorageClass", upload.storage_class),
        ("MaxParts", max_parts),
        ("IsTruncated", truncated),
    ]
    for number in numbers:
        part = upload.parts[number]
        children.append(
            ("Part", [("PartNumber", number), ("LastModified", iso_time(part.last_modified)),
                      ("ETag", f'"{part.etag}"'), ("Size", part.size), ("CRC64", str(part.crc64))])
        )
    return build("ListPartsResult", children)


def list_uploads_result(bucket: str, prefix: str, delimiter: str, key_marker: str, upload_id_marker: str,
                        max_uploads: int, uploads: list[Upload], prefixes: list[str], truncated: bool,
                        encode: bool) -> bytes:
    enc = url_encode if encode else (lambda s: s)
    children: list = [("Bucket", bucket)]
    if encode:
        children.append(("EncodingType", "url"))
    children += [("KeyMarker", enc(key_marker)), ("UploadIdMarker", upload_id_marker)]
    if truncated and uploads:
        children += [("NextKeyMarker", enc(uploads[-1].key)), ("NextUploadIdMarker", uploads[-1].upload_id)]
    children += [("MaxUploads", max_uploads), ("IsTruncated", truncated), ("Prefix", enc(prefix))]
    if delimiter:
        children.append(("Delimiter", enc(delimiter)))
    for upload in uploads:
        children.append(
            ("Upload", [("Key", enc(upload.key)), ("UploadId", upload.upload_id),
                        ("StorageClass", upload.storage_class), ("Initiator", _owner()), ("Owner", _owner()),
                        ("Initiated", iso_time(upload.initiated))])
        )
    children += [("CommonPrefixes", [("Prefix", enc(p))]) for p in prefixes]
    return build("ListMultipartUploadsResult", children)


def list_buckets_result(buckets: list[tuple[str, float]], marker: str = "", next_marker: str | None = None,
                        max_keys: int | None = None) -> bytes:
    children: list = [
        ("Owner", _owner()),
        ("Buckets", [("Bucket", [("Name", name), ("Location", "ap-guangzhou"), ("CreationDate", iso_time(created)),
                                 ("BucketType", "cos")])
                     for name, created in buckets]),
    ]
    if max_keys is not None:
        children += [("Marker", marker), ("IsTruncated", next_marker is not None)]
        if next_marker is not None:
            children.append(("NextMarker", next_marker))
    return build("ListAllMyBucketsResult", children)
