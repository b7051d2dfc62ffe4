"""Bucket handlers of `cosfs serve`: PUT/HEAD/DELETE Bucket, GET Bucket (V1 and V2), POST ?delete,
GET/PUT ?acl, GET/PUT/DELETE ?cors, and GET Service (the list of buckets)."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

from cosfs.cos import rules
from cosfs.server import responses
from cosfs.server.acl import Acl, acl_from_headers, acl_xml, parse_acl_xml
from cosfs.server.common import CosError, Ctx
from cosfs.server.cors import cors_xml, parse_cors_xml
from cosfs.server.http import Response
from cosfs.server.multipart import _encoding, _int_param, read_xml_body
from cosfs.server.request_rules import parse_delete
from cosfs.server.storage import Bucket, Storage, md5_base64_matches

XML = ("Content-Type", "application/xml")
MAX_SERVICE_KEYS = 2000


async def create_bucket(ctx: Ctx, storage: Storage) -> Response:
    assert ctx.bucket_name is not None
    acl = acl_from_headers(ctx.headers, for_object=False)
    bucket = await storage.put_bucket(ctx.bucket_name)
    if acl is not None:
        await bucket.save_config(acl=acl)
    return Response(200, [("Content-Length", "0")])


async def delete_bucket(ctx: Ctx, storage: Storage, bucket: Bucket) -> Response:
    await storage.delete_bucket(bucket)
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
        marker = unquote(token) if token else (start_after or "")
        result = bucket.list(prefix, delimiter, marker, max_keys)
        body = responses.list_bucket_v2(bucket.name, prefix, delimiter, start_after, token, max_keys, encode,
                                        ctx.query.get("fetch-owner") == "true", result, bucket.records)
    else:
        marker = ctx.query.get("marker", "")
        result = bucket.list(prefix, delimiter, marker, max_keys)
        body = responses.list_bucket_v1(bucket.name, prefix, delimiter, marker, max_keys, encode, result,
                                        bucket.records)
    return Response(200, [XML, ("x-cos-bucket-region", "ap-guangzhou")], body)


def _check_md5(ctx: Ctx, body: bytes) -> None:
    content_md5 = ctx.headers.get("content-md5")
    if content_md5 is not None:
        matches = md5_base64_matches(content_md5, hashlib.md5(body).hexdigest())
        if matches is None:
            raise CosError("InvalidDigest", "The Content-MD5 you specified is not valid.")
        if not matches:
            raise CosError("BadDigest", "The Content-MD5 you specified did not match what we received.")


async def delete_multiple(ctx: Ctx, bucket: Bucket) -> Response:
    body = await read_xml_body(ctx)
    _check_md5(ctx, body)
    keys, quiet = parse_delete(body)
    deleted: list[str] = []
    errors: list[tuple[str, str, str]] = []
    doomed: list[str] = []
    for key in keys:
        if rules.key_bytes(key) > rules.MAX_KEY_BYTES:
            errors.append((key, "KeyTooLong", "Your key is too long."))
            continue
        doomed.append(key)
        if not quiet:
            deleted.append(key)
    await bucket.delete(*doomed)
    return Response(200, [XML], responses.delete_result(deleted, errors))


def list_buckets(ctx: Ctx, storage: Storage) -> Response:
    """GET Service: the buckets, by name after `marker`, at most `max-keys` (<= 2000); a
    `region` other than this server's lists none."""
    marker = ctx.query.get("marker", "")
    max_keys = min(_int_param(ctx, "max-keys", MAX_SERVICE_KEYS, 1, 1 << 31), MAX_SERVICE_KEYS)
    region = ctx.query.get("region")
    names = sorted((b.name, b.created) for b in storage.buckets.values() if b.name > marker)
    if region and region != "ap-guangzhou":
        names = []
    page, rest = names[:max_keys], names[max_keys:]
    next_marker = page[-1][0] if rest else None
    paged = "max-keys" in ctx.query or "marker" in ctx.query
    body = responses.list_buckets_result(page, marker, next_marker, max_keys if paged else None)
    return Response(200, [XML], body)


# --- ACL ---------------------------------------------------------------------------------------


async def read_acl_request(ctx: Ctx, *, for_object: bool) -> Acl:
    """The ACL a PUT ?acl asks for: from x-cos-acl / x-cos-grant-* headers or from an
    AccessControlPolicy body (not both)."""
    from_headers = acl_from_headers(ctx.headers, for_object=for_object)
    body = await read_xml_body(ctx)
    if body.strip():
        if from_headers is not None:
            raise CosError("InvalidRequest", "Give the ACL in headers or in the body, not both.")
        _check_md5(ctx, body)
        return parse_acl_xml(body, for_object=for_object)
    if from_headers is None:
        raise CosError("InvalidRequest", "PUT ?acl needs x-cos-acl, x-cos-grant-* or an AccessControlPolicy body.")
    return from_headers


def acl_response(acl: Acl, *, default: bool = False) -> Response:
    headers = [XML]
    if default:
        headers.append(("x-cos-acl", "default"))
    return Response(200, headers, acl_xml(acl, responses.OWNER_ACL_ID))


async def put_bucket_acl(ctx: Ctx, bucket: Bucket) -> Response:
    acl = await read_acl_request(ctx, for_object=False)
    await bucket.save_config(acl=acl)
    return Response(200, [("Content-Length", "0")])


def get_bucket_acl(bucket: Bucket) -> Response:
    return acl_response(bucket.acl)


async def put_object_acl(ctx: Ctx, bucket: Bucket) -> Response:
    if bucket.head(ctx.key) is None:
        raise CosError("NoSuchKey", "The specified key does not exist.")
    acl = await read_acl_request(ctx, for_object=True)
    await bucket.set_object_acl(ctx.key, acl)
    return Response(200, [("Content-Length", "0")])


def get_object_acl(ctx: Ctx, bucket: Bucket) -> Response:
    record = bucket.head(ctx.key)
    if record is None:
        raise CosError("NoSuchKey", "The specified key does not exist.")
    acl = record.object_acl
    if acl is None or (acl.canned == "default" and not acl.grants):
        # a `default` object shows the owner's grant only, and says so in x-cos-acl
        return acl_response(Acl("private"), default=True)
    return acl_response(acl)


# --- CORS --------------------------------------------------------------------------------------


async def put_cors(ctx: Ctx, bucket: Bucket) -> Response:
    body = await read_xml_body(ctx)
    _check_md5(ctx, body)
    await bucket.save_config(cors=parse_cors_xml(body))
    return Response(200, [("Content-Length", "0")])


def get_cors(bucket: Bucket) -> Response:
    if not bucket.cors:
        raise CosError("NoSuchCORSConfiguration", "The CORS configuration does not exist.")
    return Response(200, [XML], cors_xml(bucket.cors))


async def delete_cors(bucket: Bucket) -> Response:
    await bucket.save_config(cors=None)
    return Response(204, [])
