"""Object handlers of `cosfs serve`: PUT, GET, HEAD, DELETE, PUT-Copy, APPEND."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from urllib.parse import unquote

from cosfs.cos import rules
from cosfs.server import request_rules
from cosfs.server.common import (
    BUCKET_RE,
    MAX_OBJECT_BYTES,
    CosError,
    Ctx,
    acl_from_request,
    metadata_from_request,
    object_headers,
    quoted,
)
from cosfs.server.http import FileBody, Response
from cosfs.server.responses import copy_object_result
from cosfs.server.storage import (
    Bucket,
    ObjectRecord,
    Storage,
    TempFile,
    absorb_stream,
    md5_base64_matches,
)

RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def check_conditions(headers, record: ObjectRecord, prefix: str = "") -> int | None:
    """412, 304 or None for the If-* headers against a stored version (`request_rules.check_conditions`)."""
    return request_rules.check_conditions(headers, record.etag, record.last_modified, prefix)


# --- handlers ----------------------------------------------------------------------------


check_key = rules.check_key


def _content_md5(ctx: Ctx) -> str | None:
    value = ctx.headers.get("content-md5")
    if value is not None and md5_base64_matches(value, "0" * 32) is None:
        raise CosError("InvalidDigest", "The Content-MD5 you specified is not valid.")
    return value


def _declared_length(ctx: Ctx, limit: int) -> int | None:
    value = ctx.headers.get("content-length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise CosError("InvalidArgument", "Content-Length is not a number.") from None
    if length > limit:
        raise CosError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.")
    return length


async def receive_into(ctx: Ctx, temp: TempFile, limit: int) -> str:
    """Stream the request body into `temp`, verify Content-MD5 / x-amz-content-sha256; md5 hex."""
    content_md5 = _content_md5(ctx)
    if ctx.expected_sha256:
        temp.sha256 = hashlib.sha256()
    await absorb_stream(temp, ctx.request.body, limit)
    md5_hex = temp.md5.hexdigest()
    if content_md5 is not None and not md5_base64_matches(content_md5, md5_hex):
        raise CosError("BadDigest", "The Content-MD5 you specified did not match what we received.")
    if ctx.expected_sha256 and temp.sha256 is not None and temp.sha256.hexdigest() != ctx.expected_sha256:
        raise CosError("XAmzContentSHA256Mismatch", "The provided x-amz-content-sha256 does not match the body.")
    return md5_hex


def write_headers(record: ObjectRecord) -> list[tuple[str, str]]:
    headers = [("ETag", quoted(record.etag)), ("x-cos-hash-crc64ecma", str(record.crc64))]
    sse = record.headers.get("x-cos-server-side-encryption")
    if sse:
        headers.append(("x-cos-server-side-encryption", sse))
    if record.storage_class != "STANDARD":
        headers.append(("x-cos-storage-class", record.storage_class))
    return headers


async def put_object(ctx: Ctx, bucket: Bucket) -> Response:
    _declared_length(ctx, MAX_OBJECT_BYTES)
    content_type, stored, storage_class = metadata_from_request(ctx.headers)
    acl = acl_from_request(ctx.headers)
    temp = bucket.new_temp()
    try:
        md5_hex = await receive_into(ctx, temp, MAX_OBJECT_BYTES)
        record = ObjectRecord(
            key=ctx.key, size=temp.size, etag=md5_hex, crc64=temp.crc, last_modified=time.time(),
            content_type=content_type, headers=stored, storage_class=storage_class,
            acl=acl.to_json() if acl is not None else None,
        )
    except BaseException:
        temp.discard()
        raise
    await bucket.commit(temp, record)
    return Response(200, write_headers(record) + [("Content-Length", "0")])


def _record_headers(ctx: Ctx, record: ObjectRecord) -> list[tuple[str, str]]:
    headers = object_headers(record)
    if not ctx.query:
        return headers
    overrides = {header: ctx.query[param] for param, header in RESPONSE_OVERRIDES.items() if param in ctx.query}
    if overrides:
        lowered = {name.lower() for name in overrides}
        headers = [(n, v) for n, v in headers if n.lower() not in lowered] + list(overrides.items())
    return headers


def _conditional_response(ctx: Ctx, record: ObjectRecord) -> Response | None:
    outcome = check_conditions(ctx.headers, record)
    if outcome == 412:
        raise CosError("PreconditionFailed", "At least one of the preconditions you specified did not hold.")
    if outcome == 304:
        return Response(304, [("ETag", quoted(record.etag)), ("x-cos-hash-crc64ecma", str(record.crc64)),
                              ("Last-Modified", object_headers(record)[2][1])])
    return None


def no_such_key() -> CosError:
    return CosError("NoSuchKey", "The specified key does not exist.")


async def head_object(ctx: Ctx, bucket: Bucket) -> Response:
    record = bucket.head(ctx.key)
    if record is None:
        raise no_such_key()
    early = _conditional_response(ctx, record)
    if early is not None:
        return early
    return Response(200, _record_headers(ctx, record) + [("Content-Length", str(record.size))])


async def get_object(ctx: Ctx, bucket: Bucket, truncate: bool) -> Response:
    opened = bucket.open_object(ctx.key)
    if opened is None:
        raise no_such_key()
    fd, record = opened
    try:
        early = _conditional_response(ctx, record)
        if early is not None:
            os.close(fd)
            return early
        span = request_rules.parse_range(ctx.headers.get("range"), record.size)
        if span == "invalid":
            raise CosError("InvalidRange", "The requested range is not satisfiable.",
                           headers=[("Content-Range", f"bytes */{record.size}")])
        headers = _record_headers(ctx, record)
        if span is None:
            first, length, status = 0, record.size, 200
        else:
            first, last = span
            length = last - first + 1
            status = 206
            headers.append(("Content-Range", f"bytes {first}-{last}/{record.size}"))
        headers.append(("Content-Length", str(length)))
    except BaseException:
        os.close(fd)
        raise
    body = FileBody(fd, first, length, truncate_at=length // 2 if truncate and length > 0 else None)
    return Response(status, headers, body)


async def delete_object(ctx: Ctx, bucket: Bucket) -> Response:
    await bucket.delete(ctx.key)
    return Response(204, [])


def parse_copy_source(value: str) -> tuple[str, str]:
    """(bucket, key) of an x-cos-copy-source header: 'bucket.cos.region.host/key' or '/bucket/key'."""
    source = value.strip()
    source = source.split("?versionId=", 1)[0]
    for scheme in ("http://", "https://"):
        if source.startswith(scheme):
            source = source[len(scheme):]
    if source.startswith("/"):
        bucket, sep, encoded_key = source[1:].partition("/")
    else:
        host, sep, encoded_key = source.partition("/")
        label = host.split(".", 1)[0]
        if BUCKET_RE.fullmatch(label):
            bucket = label
        else:  # "host/bucket/key"
            bucket, sep, encoded_key = encoded_key.partition("/")
    if not sep or not bucket or not encoded_key:
        raise CosError("InvalidArgument", "x-cos-copy-source is not a valid bucket/key.")
    try:
        key = unquote(encoded_key, errors="strict")
    except UnicodeDecodeError:
        raise CosError("InvalidArgument", "x-cos-copy-source is not valid UTF-8.") from None
    return bucket, key


def copy_source(ctx: Ctx, storage: Storage) -> tuple[Bucket, str, ObjectRecord]:
    value = ctx.headers.get("x-cos-copy-source") or ctx.headers.get("x-amz-copy-source") or ""
    bucket_name, key = parse_copy_source(value)
    check_key(key)
    source_bucket = storage.get(bucket_name)
    if source_bucket is None:
        raise CosError("NoSuchBucket", "The specified copy source bucket does not exist.")
    record = source_bucket.head(key)
    if record is None:
        raise CosError("NoSuchKey", "The specified copy source key does not exist.")
    for prefix in ("x-cos-copy-source-", "x-amz-copy-source-"):
        if check_conditions(ctx.headers, record, prefix) is not None:
            raise CosError("PreconditionFailed", "At least one of the copy source preconditions did not hold.")
    return source_bucket, key, record


async def copy_object(ctx: Ctx, bucket: Bucket, storage: Storage) -> Response:
    source_bucket, source_key, _ = copy_source(ctx, storage)
    replace = request_rules.replaces_metadata(ctx.headers.get("x-cos-metadata-directive")
                                              or ctx.headers.get("x-amz-metadata-directive"))
    same = source_bucket is bucket and source_key == ctx.key
    if replace:
        content_type, stored, storage_class = metadata_from_request(ctx.headers)
    else:
        storage_class = rules.storage_class(ctx.headers.get("x-cos-storage-class"))
        content_type, stored = "", {}
    # the copy gets the ACL the request asks for, else the bucket's (never the source's)
    acl = acl_from_request(ctx.headers)

    def make(source: ObjectRecord) -> ObjectRecord:
        rules.check_copy(same, replace, source.size)
        return ObjectRecord(
            key=ctx.key, size=source.size, etag=source.etag, crc64=source.crc64, last_modified=time.time(),
            content_type=content_type if replace else source.content_type,
            headers=stored if replace else dict(source.headers),
            storage_class=storage_class, appendable=False, parts=source.parts,
            acl=acl.to_json() if acl is not None else None,
        )

    record = await bucket.copy_object(source_bucket, source_key, make)
    return Response(200, [("Content-Type", "application/xml"), ("x-cos-hash-crc64ecma", str(record.crc64))],
                    copy_object_result(record))


async def append_object(ctx: Ctx, bucket: Bucket) -> Response:
    try:
        position = int(ctx.query["position"])
    except (KeyError, ValueError):
        raise CosError("InvalidArgument", "APPEND needs a non-negative position.") from None
    if position < 0:
        raise CosError("InvalidArgument", "APPEND needs a non-negative position.")
    _declared_length(ctx, MAX_OBJECT_BYTES)
    content_md5 = _content_md5(ctx)
    content_type, stored, storage_class = metadata_from_request(ctx.headers)
    acl = acl_from_request(ctx.headers)

    def make(base: ObjectRecord | None, temp: TempFile) -> ObjectRecord:
        # temp.md5 covers only the appended chunk (the base was copied without hashing)
        if content_md5 is not None and not md5_base64_matches(content_md5, temp.md5.hexdigest()):
            raise CosError("BadDigest", "The Content-MD5 you specified did not match what we received.")
        etag = rules.append_etag(temp.crc, temp.size)
        if base is None:
            return ObjectRecord(key=ctx.key, size=temp.size, etag=etag, crc64=temp.crc, last_modified=time.time(),
                                content_type=content_type, headers=stored, storage_class=storage_class,
                                appendable=True, acl=acl.to_json() if acl is not None else None)
        return dataclasses.replace(base, size=temp.size, etag=etag, crc64=temp.crc, last_modified=time.time())

    record = await bucket.append(ctx.key, position, ctx.request.body, make)
    headers = write_headers(record) + [("x-cos-next-append-position", str(record.size)), ("Content-Length", "0")]
    return Response(200, headers)
