"""Object handlers of `cosfs serve`: PUT, GET, HEAD, DELETE, PUT-Copy, APPEND."""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import time
from urllib.parse import unquote

from cosfs.server.common import (
    BUCKET_RE,
    MAX_KEY_BYTES,
    MAX_OBJECT_BYTES,
    CosError,
    Ctx,
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
    StorageError,
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


def storage_error(exc: StorageError) -> CosError:
    return CosError(exc.code, exc.message)


# --- conditionals and ranges (pure) ------------------------------------------------------


def _etag_matches(header: str, etag: str) -> bool:
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate.strip('"').lower() == etag.lower():
            return True
    return False


def _parse_http_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed.timestamp()


def check_conditions(headers, record: ObjectRecord, prefix: str = "") -> int | None:
    """412, 304 or None (proceed) for If-* headers (or x-cos-copy-source-If-* with a prefix)."""
    etag = record.etag
    modified = int(record.last_modified)
    if_match = headers.get(prefix + "if-match")
    if if_match is not None and not _etag_matches(if_match, etag):
        return 412
    if if_match is None:
        since = headers.get(prefix + "if-unmodified-since")
        if since is not None:
            when = _parse_http_date(since)
            if when is not None and modified > when:
                return 412
    if_none = headers.get(prefix + "if-none-match")
    if if_none is not None and _etag_matches(if_none, etag):
        return 304
    if if_none is None:
        since = headers.get(prefix + "if-modified-since")
        if since is not None:
            when = _parse_http_date(since)
            if when is not None and modified <= when:
                return 304
    return None


_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")


def parse_range(value: str | None, size: int) -> tuple[int, int] | None | str:
    """(first, last) inclusive; None for "whole object"; "invalid" for an unsatisfiable range.

    Multiple or unparseable ranges are ignored (whole object), as S3 does.
    """
    if value is None:
        return None
    match = _RANGE_RE.fullmatch(value)
    if not match:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            return "invalid"
        return (max(0, size - suffix), size - 1)
    first = int(first_text)
    if last_text:
        last = int(last_text)
        if last < first:
            return None
    else:
        last = size - 1
    if first >= size:
        return "invalid"
    return (first, min(last, size - 1))


# --- handlers ----------------------------------------------------------------------------


def check_key(key: str) -> None:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise CosError("KeyTooLong", "Your key is too long.")
    if "\x00" in key:
        raise CosError("InvalidObjectName", "Object keys must not contain NUL.")


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
    try:
        await absorb_stream(temp, ctx.request.body, limit)
    except StorageError as exc:
        raise storage_error(exc) from None
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
    temp = bucket.new_temp()
    try:
        md5_hex = await receive_into(ctx, temp, MAX_OBJECT_BYTES)
        record = ObjectRecord(
            key=ctx.key, size=temp.size, etag=md5_hex, crc64=temp.crc, last_modified=time.time(),
            content_type=content_type, headers=stored, storage_class=storage_class,
        )
    except BaseException:
        temp.discard()
        raise
    await bucket.commit(temp, record)
    return Response(200, write_headers(record) + [("Content-Length", "0")])


def _record_headers(ctx: Ctx, record: ObjectRecord) -> list[tuple[str, str]]:
    headers = object_headers(record)
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
        span = parse_range(ctx.headers.get("range"), record.size)
        if span == "invalid":
            raise CosError("InvalidRange", "The requested range is not satisfiable.",
                           headers=[("Content-Range", f"bytes */{record.size}")])
        headers = _record_headers(ctx, record)
        if span is None:
            first, length, status = 0, record.size, 200
        else:
            first, last = span  # type: ignore[misc]
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
    bucket.delete(ctx.key)
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
    directive = (ctx.headers.get("x-cos-metadata-directive") or ctx.headers.get("x-amz-metadata-directive")
                 or "Copy").strip().lower()
    if directive not in ("copy", "replaced", "replace"):
        raise CosError("InvalidArgument", "x-cos-metadata-directive must be Copy or Replaced.")
    replace = directive != "copy"
    if source_bucket is bucket and source_key == ctx.key and not replace:
        raise CosError("InvalidRequest", "This copy request is illegal because it is trying to copy an object "
                       "to itself without changing the object's metadata.")
    if replace:
        content_type, stored, storage_class = metadata_from_request(ctx.headers)
    else:
        storage_class = (ctx.headers.get("x-cos-storage-class") or "STANDARD").upper()
        content_type, stored = "", {}

    def make(source: ObjectRecord) -> ObjectRecord:
        if source.size > MAX_OBJECT_BYTES:
            raise CosError("InvalidRequest", "The source is larger than 5 GB; use Upload Part - Copy.")
        return ObjectRecord(
            key=ctx.key, size=source.size, etag=source.etag, crc64=source.crc64, last_modified=time.time(),
            content_type=content_type if replace else source.content_type,
            headers=stored if replace else dict(source.headers),
            storage_class=storage_class, appendable=False, parts=source.parts,
        )

    try:
        record = await bucket.copy_object(source_bucket, source_key, make)
    except StorageError as exc:
        raise storage_error(exc) from None
    return Response(200, [("Content-Type", "application/xml"), ("x-cos-hash-crc64ecma", str(record.crc64))],
                    copy_object_result(record))


async def append_object(ctx: Ctx, bucket: Bucket) -> Response:
    try:
        position = int(ctx.query["position"])
        if position < 0:
            raise ValueError
    except (KeyError, ValueError):
        raise CosError("InvalidArgument", "APPEND needs a non-negative position.") from None
    _declared_length(ctx, MAX_OBJECT_BYTES)
    content_md5 = _content_md5(ctx)
    content_type, stored, storage_class = metadata_from_request(ctx.headers)

    def make(base: ObjectRecord | None, temp: TempFile) -> ObjectRecord:
        # temp.md5 covers only the appended chunk (the base was copied without hashing)
        if content_md5 is not None and not md5_base64_matches(content_md5, temp.md5.hexdigest()):
            raise CosError("BadDigest", "The Content-MD5 you specified did not match what we received.")
        # The base data was copied without MD5: the ETag of an appendable object is opaque.
        etag = hashlib.md5(f"{temp.crc}-{temp.size}".encode()).hexdigest()
        if base is None:
            return ObjectRecord(key=ctx.key, size=temp.size, etag=etag, crc64=temp.crc, last_modified=time.time(),
                                content_type=content_type, headers=stored, storage_class=storage_class,
                                appendable=True)
        return ObjectRecord(key=ctx.key, size=temp.size, etag=etag, crc64=temp.crc, last_modified=time.time(),
                            content_type=base.content_type, headers=dict(base.headers),
                            storage_class=base.storage_class, appendable=True)

    try:
        record = await bucket.append(ctx.key, position, ctx.request.body, make)
    except StorageError as exc:
        raise storage_error(exc) from None
    headers = write_headers(record) + [("x-cos-next-append-position", str(record.size)), ("Content-Length", "0")]
    return Response(200, headers)
