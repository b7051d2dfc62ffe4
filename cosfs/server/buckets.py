"""Bucket handlers of `cosfs serve`: PUT/HEAD/DELETE Bucket, GET Bucket (V1 and V2), POST ?delete."""

from __future__ import annotations

import hashlib
import shutil

import trio

from cosfs.server import responses
from cosfs.server.common import MAX_KEY_BYTES, CosError, Ctx
from cosfs.server.http import Response
from cosfs.server.multipart import _encoding, _int_param, read_xml
from cosfs.server.storage import Bucket, Storage, md5_base64_matches

MAX_DELETE_KEYS = 1000
XML = ("Content-Type", "application/xml")


async def create_bucket(ctx: Ctx, storage: Storage) -> Response:
    assert ctx.bucket_name is not None
    if storage.get(ctx.bucket_name) is not None:
        raise CosError("BucketAlreadyOwnedByYou", "The bucket you tried to create already exists and you own it.")
    await trio.to_thread.run_sync(storage.create_bucket, ctx.bucket_name)
    return Response(200, [("Content-Length", "0")])


async def delete_bucket(ctx: Ctx, storage: Storage, bucket: Bucket) -> Response:
    if bucket.records or bucket.uploads:
        raise CosError("BucketNotEmpty", "The bucket you tried to delete is not empty.")
    storage.buckets.pop(bucket.name, None)
    doomed = bucket.path.with_name(f".deleted-{bucket.name}")
    bucket.path.rename(doomed)
    await trio.to_thread.run_sync(lambda: shutil.rmtree(doomed, ignore_errors=True))
    return Response(204, [])


def head_bucket(bucket: Bucket) -> Response:
    return Response(200, [("x-cos-bucket-region", "ap-guangzhou"), ("Content-Length", "0")])


async def list_objects(ctx: Ctx, bucket: Bucket) -> Response:
    encode = _encoding(ctx)
    prefix = ctx.query.get("prefix", "")
    delimiter = ctx.query.get("delimiter", "")
    max_keys = min(_int_param(ctx, "max-keys", 1000, 0, 1 << 31), 1000)
    if ctx.query.get("list-type") == "2":
        token = ctx.query.get("continuation-token")
        start_after = ctx.query.get("start-after")
        if token:
            from urllib.parse import unquote

            marker = unquote(token)
        else:
            marker = start_after or ""
        result = bucket.list(prefix, delimiter, marker, max_keys)
        body = responses.list_bucket_v2(bucket.name, prefix, delimiter, start_after, token, max_keys, encode,
                                        ctx.query.get("fetch-owner") == "true", result, bucket.records)
    else:
        marker = ctx.query.get("marker", "")
        result = bucket.list(prefix, delimiter, marker, max_keys)
        body = responses.list_bucket_v1(bucket.name, prefix, delimiter, marker, max_keys, encode, result,
                                        bucket.records)
    return Response(200, [XML, ("x-cos-bucket-region", "ap-guangzhou")], body)


async def delete_multiple(ctx: Ctx, bucket: Bucket) -> Response:
    body, root = await read_xml(ctx)
    content_md5 = ctx.headers.get("content-md5")
    if content_md5 is not None:
        matches = md5_base64_matches(content_md5, hashlib.md5(body).hexdigest())
        if matches is None:
            raise CosError("InvalidDigest", "The Content-MD5 you specified is not valid.")
        if not matches:
            raise CosError("BadDigest", "The Content-MD5 you specified did not match what we received.")
    if root.tag != "Delete":
        raise CosError("MalformedXML", "The root element must be Delete.")
    quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
    objects = root.findall("Object")
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise CosError("MalformedXML", f"Delete needs 1 to {MAX_DELETE_KEYS} objects.")
    deleted: list[str] = []
    errors: list[tuple[str, str, str]] = []
    for element in objects:
        key_element = element.find("Key")
        if key_element is None or not key_element.text:
            raise CosError("MalformedXML", "Every Object needs a Key.")
        key = key_element.text
        if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            errors.append((key, "KeyTooLong", "Your key is too long."))
            continue
        bucket.delete(key)
        if not quiet:
            deleted.append(key)
    return Response(200, [XML], responses.delete_result(deleted, errors))


def list_buckets(storage: Storage) -> Response:
    buckets = sorted((b.name, b.created) for b in storage.buckets.values())
    return Response(200, [XML], responses.list_buckets_result(buckets))
