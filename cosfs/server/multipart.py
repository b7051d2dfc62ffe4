"""Multipart upload handlers of `cosfs serve`: initiate, part, part copy, complete, abort, lists."""

from __future__ import annotations

import hashlib
import os
import re
import time

import trio

from cosfs.cos import crc64, xml
from cosfs.errors import ProtocolError
from cosfs.server import responses
from cosfs.server.common import (
    MAX_PART_BYTES,
    MAX_PART_NUMBER,
    MAX_XML_BODY_BYTES,
    MIN_PART_BYTES,
    CosError,
    Ctx,
    metadata_from_request,
)
from cosfs.server.http import BodyTooLarge, Response
from cosfs.server.objects import copy_source, receive_into, storage_error
from cosfs.server.storage import Bucket, ObjectRecord, Storage, StorageError, Upload, _crc_of_range

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


async def read_xml(ctx: Ctx):
    """(body, parsed root) of an XML request body, which is held in memory: one larger than
    MAX_XML_BODY_BYTES is refused, by its Content-Length before reading any of it."""
    too_large = CosError("EntityTooLarge", f"The XML body is larger than {MAX_XML_BODY_BYTES} bytes.")
    declared = ctx.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_XML_BODY_BYTES:
        raise too_large
    try:
        body = await ctx.request.body.read_all(MAX_XML_BODY_BYTES)
    except BodyTooLarge:
        raise too_large from None
    try:
        return body, xml.parse(body)
    except ProtocolError:
        raise CosError("MalformedXML", "The XML you provided was not well-formed or did not validate.") from None


async def initiate(ctx: Ctx, bucket: Bucket) -> Response:
    content_type, stored, storage_class = metadata_from_request(ctx.headers)
    upload = await bucket.create_upload(ctx.key, content_type, stored, storage_class)
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
    try:
        await bucket.commit_part(upload, number, temp, record)
    except StorageError as exc:
        raise storage_error(exc) from None
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
    try:
        await bucket.commit_part(upload, number, temp, record)
    except StorageError as exc:
        raise storage_error(exc) from None
    return Response(200, [("Content-Type", "application/xml"), ("x-cos-hash-crc64ecma", str(record.crc64))],
                    responses.copy_part_result(record))


def _upload(ctx: Ctx, bucket: Bucket) -> Upload:
    try:
        return bucket.get_upload(ctx.query.get("uploadId", ""), ctx.key)
    except StorageError as exc:
        raise storage_error(exc) from None


def parse_complete(root) -> list[tuple[int, str]]:
    """(part number, etag) pairs of a CompleteMultipartUpload document, in document order."""
    if root.tag != "CompleteMultipartUpload":
        raise CosError("MalformedXML", "The root element must be CompleteMultipartUpload.")
    parts: list[tuple[int, str]] = []
    for element in root.findall("Part"):
        number_text = xml.text(element, "PartNumber")
        etag = xml.child_text(element, "ETag", "Etag")
        try:
            number = int(number_text)
        except ValueError:
            raise CosError("MalformedXML", "PartNumber must be an integer.") from None
        parts.append((number, etag.strip().strip('"').lower()))
    if not parts:
        raise CosError("MalformedXML", "CompleteMultipartUpload needs at least one Part.")
    if len(parts) > MAX_PART_NUMBER:
        raise CosError("MalformedXML", "Too many parts.")
    return parts


def check_parts(upload: Upload, wanted: list[tuple[int, str]]) -> None:
    previous = 0
    for number, _ in wanted:
        if number <= previous:
            raise CosError("InvalidPartOrder", "The list of parts was not in ascending order.")
        previous = number
    for index, (number, etag) in enumerate(wanted):
        part = upload.parts.get(number)
        if part is None or part.etag != etag:
            raise CosError("InvalidPart", f"Part {number} was not uploaded or its ETag does not match.")
        if index < len(wanted) - 1 and part.size < MIN_PART_BYTES:
            raise CosError("EntityTooSmall", f"Part {number} is smaller than the minimum of 1 MB.")


async def complete(ctx: Ctx, bucket: Bucket) -> Response:
    upload = _upload(ctx, bucket)
    _, root = await read_xml(ctx)
    wanted = parse_complete(root)
    upload = _upload(ctx, bucket)  # may have been aborted while the body arrived
    check_parts(upload, wanted)
    numbers = [number for number, _ in wanted]
    digest = hashlib.md5(b"".join(bytes.fromhex(upload.parts[n].etag) for n in numbers)).hexdigest()
    size = sum(upload.parts[n].size for n in numbers)
    crc = upload.parts[numbers[0]].crc64
    for n in numbers[1:]:
        crc = crc64.combine(crc, upload.parts[n].crc64, upload.parts[n].size)
    record = ObjectRecord(
        key=upload.key, size=size, etag=f"{digest}-{len(numbers)}", crc64=crc, last_modified=time.time(),
        content_type=upload.content_type, headers=dict(upload.headers), storage_class=upload.storage_class,
        parts=len(numbers),
    )
    try:
        await bucket.complete_upload(upload, numbers, record)
    except StorageError as exc:
        raise storage_error(exc) from None
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


def select_uploads(uploads: list[Upload], prefix: str, delimiter: str, key_marker: str, upload_id_marker: str,
                   max_uploads: int) -> tuple[list[Upload], list[str], bool]:
    """List Multipart Uploads paging over uploads sorted by (key, upload id) (pure)."""
    chosen: list[Upload] = []
    prefixes: list[str] = []
    count = 0
    for upload in sorted(uploads, key=lambda u: (u.key, u.upload_id)):
        if not upload.key.startswith(prefix):
            continue
        if key_marker:
            if upload.key < key_marker:
                continue
            if upload.key == key_marker and (not upload_id_marker or upload.upload_id <= upload_id_marker):
                continue
        if delimiter:
            pos = upload.key.find(delimiter, len(prefix))
            if pos >= 0:
                common = upload.key[: pos + len(delimiter)]
                if (prefixes and prefixes[-1] == common) or (key_marker and common <= key_marker):
                    continue
                if count == max_uploads:
                    return chosen, prefixes, True
                prefixes.append(common)
                count += 1
                continue
        if count == max_uploads:
            return chosen, prefixes, True
        chosen.append(upload)
        count += 1
    return chosen, prefixes, False


async def list_uploads(ctx: Ctx, bucket: Bucket) -> Response:
    max_uploads = _int_param(ctx, "max-uploads", 1000, 1, 1000)
    encode = _encoding(ctx)
    prefix = ctx.query.get("prefix", "")
    delimiter = ctx.query.get("delimiter", "")
    key_marker = ctx.query.get("key-marker", "")
    upload_id_marker = ctx.query.get("upload-id-marker", "")
    chosen, prefixes, truncated = select_uploads(list(bucket.uploads.values()), prefix, delimiter, key_marker,
                                                 upload_id_marker, max_uploads)
    body = responses.list_uploads_result(bucket.name, prefix, delimiter, key_marker, upload_id_marker, max_uploads,
                                         chosen, prefixes, truncated, encode)
    return Response(200, [("Content-Type", "application/xml")], body)

