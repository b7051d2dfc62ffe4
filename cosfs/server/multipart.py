"""Multipart upload handlers of `cosfs serve`: initiate, part, part copy, complete, abort, lists."""

from __future__ import annotations

import hashlib
import os
import re
import time

import trio

from cosfs.cos import crc64, rules
from cosfs.server import request_rules, responses
from cosfs.server.common import (
    MAX_PART_BYTES,
    MAX_PART_NUMBER,
    MAX_XML_BODY_BYTES,
    CosError,
    Ctx,
    acl_from_request,
    metadata_from_request,
)
from cosfs.server.http import BodyTooLarge, Response
from cosfs.server.objects import copy_source, receive_into
from cosfs.server.storage import Bucket, ObjectRecord, Storage, Upload, _crc_of_range

_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d+)\s*-\s*(\d+)\s*")


def _int_param(ctx: Ctx, name: str, default: int, low: int, high: int) -> int:
    value = ctx.query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise CosError("InvalidArgument", f"{name} must be an integer.") from None
    if number < low or number > high:
        raise CosError("InvalidArgument", f"{name} must be within {low}..{high}.")
    return number


def _encoding(ctx: Ctx) -> bool:
    value = ctx.query.get("encoding-type")
    if value is None or value == "":
        return False
    if value.lower() != "url":
        raise CosError("InvalidArgument", "encoding-type must be url.")
    return True


async def read_xml_body(ctx: Ctx) -> bytes:
    """An XML request body, which is held in memory: one larger than MAX_XML_BODY_BYTES is
    refused, by its Content-Length before reading any of it. `request_rules` and friends parse it."""
    too_large = CosError("EntityTooLarge", f"The XML body is larger than {MAX_XML_BODY_BYTES} bytes.")
    declared = ctx.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_XML_BODY_BYTES:
        raise too_large
    try:
        return await ctx.request.body.read_all(MAX_XML_BODY_BYTES)
    except BodyTooLarge:
        raise too_large from None


async def initiate(ctx: Ctx, bucket: Bucket) -> Response:
    content_type, stored, storage_class = metadata_from_request(ctx.headers)
    acl = acl_from_request(ctx.headers)
    upload = await bucket.create_upload(ctx.key, content_type, stored, storage_class, acl)
    body = responses.initiate_result(bucket.name, ctx.key, upload.upload_id, False)
    return Response(200, [("Content-Type", "application/xml")], body)


def _part_number(ctx: Ctx) -> int:
    return _int_param(ctx, "partNumber", -1, 1, MAX_PART_NUMBER)


async def upload_part(ctx: Ctx, bucket: Bucket) -> Response:
    number = _part_number(ctx)
    upload = _upload(ctx, bucket)
    length = ctx.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_PART_BYTES:
        raise CosError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed part size.")
    temp = bucket.new_temp()
    try:
        md5_hex = await receive_into(ctx, temp, MAX_PART_BYTES)
        record = ObjectRecord(key=upload.key, size=temp.size, etag=md5_hex, crc64=temp.crc,
                              last_modified=time.time())
    except BaseException:
        temp.discard()
        raise
    await bucket.commit_part(upload, number, temp, record)
    return Response(200, [("ETag", f'"{record.etag}"'), ("x-cos-hash-crc64ecma", str(record.crc64)),
                          ("Content-Length", "0")])


async def upload_part_copy(ctx: Ctx, bucket: Bucket, storage: Storage) -> Response:
    number = _part_number(ctx)
    upload = _upload(ctx, bucket)
    source_bucket, source_key, _ = copy_source(ctx, storage)
    opened = source_bucket.open_object(source_key)
    if opened is None:
        raise CosError("NoSuchKey", "The specified copy source key does not exist.")
    fd, source = opened
    temp = bucket.new_temp()
    try:
        range_header = ctx.headers.get("x-cos-copy-source-range") or ctx.headers.get("x-amz-copy-source-range")
        if range_header:
            match = _RANGE_RE.fullmatch(range_header)
            if not match:
                raise CosError("InvalidArgument", "x-cos-copy-source-range must be bytes=first-last.")
            first, last = int(match.group(1)), int(match.group(2))
            if first > last or last >= source.size:
                raise CosError("InvalidArgument", "The x-cos-copy-source-range is not within the source object.")
        else:
            first, last = 0, source.size - 1
        length = last - first + 1
        if length > MAX_PART_BYTES:
            raise CosError("EntityTooLarge", "A copied part may not exceed 5 GB.")

        def copy() -> tuple[int, str]:
            crc, md5_hex = _crc_of_range(fd, first, length) if length > 0 else (0, hashlib.md5().hexdigest())
            temp.append_from(fd, first, length, crc)
            return crc, md5_hex

        crc, md5_hex = await trio.to_thread.run_sync(copy)
        record = ObjectRecord(key=upload.key, size=length, etag=md5_hex, crc64=crc, last_modified=time.time())
    except BaseException:
        temp.discard()
        raise
    finally:
        os.close(fd)
    await bucket.commit_part(upload, number, temp, record)
    return Response(200, [("Content-Type", "application/xml"), ("x-cos-hash-crc64ecma", str(record.crc64))],
                    responses.copy_part_result(record))


def _upload(ctx: Ctx, bucket: Bucket) -> Upload:
    return bucket.get_upload(ctx.query.get("uploadId", ""), ctx.key)


async def complete(ctx: Ctx, bucket: Bucket) -> Response:
    _upload(ctx, bucket)
    wanted = request_rules.parse_complete(await read_xml_body(ctx))
    upload = _upload(ctx, bucket)  # may have been aborted while the body arrived

    def make(parts: list[ObjectRecord]) -> ObjectRecord:
        # called under the upload's lock with the checked parts (`rules.check_complete`)
        crc = parts[0].crc64
        for part in parts[1:]:
            crc = crc64.combine(crc, part.crc64, part.size)
        return ObjectRecord(
            key=upload.key, size=sum(p.size for p in parts), etag=rules.multipart_etag([p.etag for p in parts]),
            crc64=crc, last_modified=time.time(), content_type=upload.content_type, headers=dict(upload.headers),
            storage_class=upload.storage_class, parts=len(parts), acl=upload.acl,
        )

    record = await bucket.complete_upload(upload, wanted, make)
    host = ctx.headers.get("host", "")
    location = f"http://{host}/{ctx.key}" if ctx.virtual_host else f"http://{host}/{bucket.name}/{ctx.key}"
    body = responses.complete_result(location, bucket.name, ctx.key, record.etag)
    return Response(200, [("Content-Type", "application/xml"), ("x-cos-hash-crc64ecma", str(record.crc64))], body)


async def abort(ctx: Ctx, bucket: Bucket) -> Response:
    upload = _upload(ctx, bucket)
    await bucket.abort_upload(upload)
    return Response(204, [])


async def list_parts(ctx: Ctx, bucket: Bucket) -> Response:
    upload = _upload(ctx, bucket)
    max_parts = min(_int_param(ctx, "max-parts", 1000, 0, 1 << 31), 1000)
    marker = _int_param(ctx, "part-number-marker", 0, 0, 1 << 31)
    encode = _encoding(ctx)
    numbers = sorted(n for n in upload.parts if n > marker)
    truncated = len(numbers) > max_parts
    numbers = numbers[:max_parts]
    body = responses.list_parts_result(bucket.name, upload, marker, max_parts, numbers, truncated, encode)
    return Response(200, [("Content-Type", "application/xml")], body)


async def list_uploads(ctx: Ctx, bucket: Bucket) -> Response:
    max_uploads = _int_param(ctx, "max-uploads", 1000, 1, 1000)
    encode = _encoding(ctx)
    prefix = ctx.query.get("prefix", "")
    delimiter = ctx.query.get("delimiter", "")
    key_marker = ctx.query.get("key-marker", "")
    upload_id_marker = ctx.query.get("upload-id-marker", "")
    chosen, prefixes, truncated = request_rules.select_uploads(list(bucket.uploads.values()), prefix, delimiter,
                                                               key_marker, upload_id_marker, max_uploads)
    body = responses.list_uploads_result(bucket.name, prefix, delimiter, key_marker, upload_id_marker, max_uploads,
                                         chosen, prefixes, truncated, encode)
    return Response(200, [("Content-Type", "application/xml")], body)

