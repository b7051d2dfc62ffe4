"""Request routing of `cosfs serve`: addressing, authentication, faults, dispatch, errors, access log.

Addressing: virtual-hosted when the first label of the Host header names an existing bucket or
looks like ``<name>-<appid>`` (``bucket.cos.region.anything``, ``bucket.localhost``); otherwise
path-style (``/bucket/key``). Every response carries ``x-cos-request-id`` and
``Server: tencent-cos``; errors are COS error XML (bare for HEAD).

Who may do what: a signed request (verified by `authn`) is the owner and may do anything. A
request with no signature at all is anonymous: routing names its operation first
(`bucket_operation`, `object_operation`), and `authorize_anonymous` lets it through only where
`ANONYMOUS_OPERATIONS` and the bucket's or object's ACL allow (`acl.anonymous_may`); it may
never set an ACL, copy, or use ``response-*`` overrides. OPTIONS is a CORS preflight, answered
from the bucket's CORS rules without a signature; a request with an allowed ``Origin`` gets the
rule's Access-Control-* headers on its answer.

Access log (``--access-log FILE``), one line per response, space separated::

    TIME METHOD PATH QUERY STATUS BYTES DURATION REQUEST-ID
    2026-11-24T07:00:00.123Z GET /examplebucket-1250000000/key prefix=a/ 200 1234 1.2ms 5f1c...

TIME is UTC ISO 8601 with milliseconds; PATH is the request path as sent (percent-encoded,
never containing spaces); QUERY is the raw query string with the values of signatures and
security tokens replaced by ``REDACTED`` (``q-signature``, ``sign``, ``X-Amz-Signature``,
``x-cos-security-token``, ``X-Amz-Security-Token``), or ``-`` when empty; BYTES counts
response body bytes sent; DURATION is in milliseconds with an ``ms`` suffix. A request that
could not be parsed is logged with METHOD and PATH ``-``. No header is logged (so no
Authorization value), and `main` creates the file with mode 0600.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import time
from typing import TextIO
from urllib.parse import unquote_plus, unquote_to_bytes

import h11
import trio

from cosfs import errors
from cosfs.server import buckets, multipart, objects
from cosfs.server.acl import acl_from_headers, anonymous_may
from cosfs.server.authn import Authenticator, parse_query
from cosfs.server.common import BUCKET_RE, CosError, Ctx, Query
from cosfs.server.cors import cors_headers, cors_match, preflight
from cosfs.server.faults import FaultInjector
from cosfs.server.http import BodyTimeout, ClientGone, FileBody, Request, ResetConnection, Response, invalid_header
from cosfs.server.responses import error_xml, http_date
from cosfs.server.storage import Storage

log = logging.getLogger(__name__)

LOCATION_XML = b'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint>ap-guangzhou</LocationConstraint>'

# Query parameters whose values let a reader of the access log replay a request.
SECRET_PARAMS = frozenset({"q-signature", "sign", "x-amz-signature", "x-cos-security-token", "x-amz-security-token"})


class App:
    def __init__(self, storage: Storage, authenticator: Authenticator, faults: FaultInjector | None = None,
                 access_log: TextIO | None = None) -> None:
        self.storage = storage
        self.auth = authenticator
        self.faults = faults
        self.access_log = access_log
        self._id_prefix = secrets.token_hex(4)
        self._counter = 0

    # --- plumbing used by the HTTP layer ------------------------------------------------

    def new_request_id(self) -> str:
        self._counter += 1
        return f"{self._id_prefix}{self._counter:08x}{secrets.token_hex(4)}"

    def base_headers(self, request_id: str) -> list[tuple[str, str]]:
        return [("Server", "tencent-cos"), ("Date", http_date(time.time())),
                ("x-cos-request-id", request_id)]

    def error_response(self, status: int, code: str, message: str, resource: str = "/",
                       request_id: str | None = None, head: bool = False,
                       extra: list[tuple[str, str]] | None = None) -> Response:
        request_id = request_id or self.new_request_id()
        headers = self.base_headers(request_id) + [("x-cos-trace-id", request_id)] + (extra or [])
        if head or status == 304:
            return Response(status, headers + [("Content-Length", "0")] if status != 304 else headers)
        body = error_xml(code, message, resource, request_id)
        headers += [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
        return Response(status, headers, body)

    def after_response(self, request: Request | None, response: Response, duration_s: float) -> None:
        if self.access_log is None:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        if request is None:
            method, path, query = "-", "-", "-"
        else:
            method = request.method
            path, _, query = request.target.partition("?")
            query = redact_query(query) if query else "-"
            path = path or "-"
        request_id = next((v for n, v in response.headers if n == "x-cos-request-id"), "-")
        line = (f"{stamp} {method} {path} {query} {response.status} {response.sent_bytes} "
                f"{duration_s * 1000:.1f}ms {request_id}\n")
        try:
            self.access_log.write(line)
            self.access_log.flush()
        except OSError as exc:
            log.warning("access log write failed: %s", exc)

    # --- request handling -----------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        request_id = self.new_request_id()
        ctx: Ctx | None = None
        try:
            ctx = self.parse(request, request_id)
            response = await self.dispatch(ctx)
            _check_headers(response)
        except errors.CosError as exc:
            response = self.error_response(exc.status, exc.code, exc.message,
                                           ctx.resource if ctx else "/", request_id,
                                           head=request.method == "HEAD", extra=getattr(exc, "headers", None))
        except (ClientGone, ResetConnection, h11.RemoteProtocolError, BodyTimeout):
            raise
        except Exception:
            log.exception("internal error on %s %s", request.method, request.target.partition("?")[0])
            response = self.error_response(500, "InternalError", "We encountered an internal error.",
                                           ctx.resource if ctx else "/", request_id, head=request.method == "HEAD")
        else:
            response.headers[:0] = self.base_headers(request_id)
        if ctx is not None and ctx.bucket is not None and ctx.bucket.cors and ctx.method != "OPTIONS":
            response.headers += _cors_response_headers(ctx)
        if not any(name.lower() == "content-length" for name, _ in response.headers):
            if isinstance(response.body, bytes):
                response.headers.append(("Content-Length", str(len(response.body))))
        return response

    def parse(self, request: Request, request_id: str) -> Ctx:
        raw_path, _, raw_query = request.target.partition("?")
        if not raw_path.startswith("/"):
            if raw_path.startswith("http://") or raw_path.startswith("https://"):
                raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
            else:
                raise CosError("InvalidURI", "Could not parse the specified URI.")
        try:
            path = unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError:
            raise CosError("InvalidURI", "Could not parse the specified URI.") from None
        params = parse_query(raw_query)
        query = Query(params)
        if len(query) != len(params):
            raise CosError("InvalidArgument", "A query parameter is given more than once.")
        host = request.headers.get("host", "")
        hostname = _hostname(host)
        label = hostname.split(".", 1)[0]
        virtual = False
        bucket_name: str | None
        if label and not _is_ip(hostname) and (label in self.storage.buckets or
                                                ("." in hostname and BUCKET_RE.fullmatch(label))):
            virtual = True
            bucket_name = label
            key = path[1:]
        else:
            segment, _, key = path[1:].partition("/")
            bucket_name = segment or None
        ctx = Ctx(request=request, request_id=request_id, raw_path=raw_path, raw_query=raw_query, path=path,
                  params=params, query=query, bucket_name=bucket_name, key=key, virtual_host=virtual, host=host)
        return ctx

    async def dispatch(self, ctx: Ctx) -> Response:
        if ctx.bucket_name is not None:
            await self._inject_faults()
        method = ctx.method
        if method == "OPTIONS":
            return self._preflight(ctx)
        anonymous = self.auth.is_anonymous(ctx)
        if not anonymous:
            self.auth.check(ctx)
        if ctx.bucket_name is None:
            if method == "GET":
                _deny_if(anonymous)
                return buckets.list_buckets(ctx, self.storage)
            raise CosError("MethodNotAllowed", "The specified method is not allowed against this resource.")
        if not BUCKET_RE.fullmatch(ctx.bucket_name):
            if method == "PUT" and not ctx.key:
                raise CosError("InvalidBucketName", "The specified bucket is not valid.")
            raise CosError("NoSuchBucket", "The specified bucket does not exist.")
        bucket = self.storage.get(ctx.bucket_name)
        if not ctx.key:
            if method == "PUT" and not ctx.query:
                _deny_if(anonymous)
                return await buckets.create_bucket(ctx, self.storage)
            if bucket is None:
                _deny_if(anonymous)
                raise CosError("NoSuchBucket", "The specified bucket does not exist.")
            ctx.bucket = bucket
            op = bucket_operation(ctx)
            if anonymous:
                authorize_anonymous(ctx, op, bucket)
            return await self._bucket_op(ctx, bucket, op)
        if bucket is None:
            _deny_if(anonymous)
            raise CosError("NoSuchBucket", "The specified bucket does not exist.")
        ctx.bucket = bucket
        objects.check_key(ctx.key)
        op = object_operation(ctx)
        if anonymous:
            authorize_anonymous(ctx, op, bucket)
        return await self._object_op(ctx, bucket, op)

    def _preflight(self, ctx: Ctx) -> Response:
        """OPTIONS: a CORS preflight, answered by the bucket's CORS rules (no signature)."""
        if ctx.bucket_name is None:
            raise CosError("MethodNotAllowed", "The specified method is not allowed against this resource.")
        bucket = self.storage.get(ctx.bucket_name)
        if bucket is None:
            raise CosError("NoSuchBucket", "The specified bucket does not exist.")
        if ctx.key:
            objects.check_key(ctx.key)
        headers = preflight(bucket.cors, ctx.headers.get("origin"),
                            ctx.headers.get("access-control-request-method"),
                            ctx.headers.get("access-control-request-headers"))
        return Response(200, headers + [("Content-Length", "0")])

    async def _inject_faults(self) -> None:
        if self.faults is None:
            return
        spec = self.faults.spec
        if spec.delay_s:
            await trio.sleep(spec.delay_s)
        choice = self.faults.choose()
        if choice == "503":
            raise CosError("SlowDown", "Please reduce your request rate.")
        if choice == "500":
            raise CosError("InternalError", "We encountered an internal error. Please try again.")
        if choice == "reset":
            raise ResetConnection()

    async def _bucket_op(self, ctx: Ctx, bucket, op: str) -> Response:
        if op == "head_bucket":
            return buckets.head_bucket(bucket)
        if op == "list_uploads":
            return await multipart.list_uploads(ctx, bucket)
        if op == "get_location":
            return Response(200, [("Content-Type", "application/xml")], LOCATION_XML)
        if op == "get_bucket_acl":
            return buckets.get_bucket_acl(bucket)
        if op == "put_bucket_acl":
            return await buckets.put_bucket_acl(ctx, bucket)
        if op == "get_cors":
            return buckets.get_cors(bucket)
        if op == "put_cors":
            return await buckets.put_cors(ctx, bucket)
        if op == "delete_cors":
            return await buckets.delete_cors(bucket)
        if op == "list_objects":
            return await buckets.list_objects(ctx, bucket)
        if op == "delete_multiple":
            return await buckets.delete_multiple(ctx, bucket)
        if op == "delete_bucket":
            return await buckets.delete_bucket(ctx, self.storage, bucket)
        if op == "create_bucket":
            raise CosError("BucketAlreadyOwnedByYou", "The bucket you tried to create already exists and you own it.")
        if op == "not_implemented":
            raise CosError("NotImplemented", "This bucket sub-resource is not implemented by cosfs serve.")
        raise CosError("MethodNotAllowed", "The specified method is not allowed against this resource.")

    async def _object_op(self, ctx: Ctx, bucket, op: str) -> Response:
        if op == "upload_part_copy":
            return await multipart.upload_part_copy(ctx, bucket, self.storage)
        if op == "upload_part":
            return await multipart.upload_part(ctx, bucket)
        if op == "put_object_acl":
            return await buckets.put_object_acl(ctx, bucket)
        if op == "get_object_acl":
            return buckets.get_object_acl(ctx, bucket)
        if op == "copy_object":
            return await objects.copy_object(ctx, bucket, self.storage)
        if op == "put_object":
            return await objects.put_object(ctx, bucket)
        if op == "list_parts":
            return await multipart.list_parts(ctx, bucket)
        if op == "get_object":
            truncate = self.faults is not None and self.faults.truncate()
            return await objects.get_object(ctx, bucket, truncate)
        if op == "head_object":
            return await objects.head_object(ctx, bucket)
        if op == "abort":
            return await multipart.abort(ctx, bucket)
        if op == "delete_object":
            return await objects.delete_object(ctx, bucket)
        if op == "initiate":
            return await multipart.initiate(ctx, bucket)
        if op == "complete":
            return await multipart.complete(ctx, bucket)
        if op == "append_object":
            return await objects.append_object(ctx, bucket)
        if op == "not_implemented":
            raise CosError("NotImplemented", "This object sub-resource is not implemented by cosfs serve.")
        raise CosError("MethodNotAllowed", "The specified method is not allowed against this resource.")


UNSUPPORTED_BUCKET = frozenset({"lifecycle", "policy", "tagging", "versioning", "website", "logging", "replication",
                                "inventory", "referer", "domain", "encryption", "object-lock"})


def bucket_operation(ctx: Ctx) -> str:
    """The operation a bucket-level request asks for (pure routing)."""
    method, query = ctx.method, set(ctx.query)
    if method == "HEAD":
        return "head_bucket"
    if method == "GET":
        if "uploads" in query:
            return "list_uploads"
        if "location" in query:
            return "get_location"
        if "acl" in query:
            return "get_bucket_acl"
        if "cors" in query:
            return "get_cors"
        if UNSUPPORTED_BUCKET & query:
            return "not_implemented"
        return "list_objects"
    if method == "PUT":
        if "acl" in query:
            return "put_bucket_acl"
        if "cors" in query:
            return "put_cors"
        return "create_bucket" if not query else "not_implemented"
    if method == "POST" and "delete" in query:
        return "delete_multiple"
    if method == "DELETE":
        if "cors" in query:
            return "delete_cors"
        if not query:
            return "delete_bucket"
        if UNSUPPORTED_BUCKET & query:
            return "not_implemented"
    return "method_not_allowed"


def object_operation(ctx: Ctx) -> str:
    """The operation an object-level request asks for (pure routing)."""
    method, query = ctx.method, ctx.query
    copy = "x-cos-copy-source" in ctx.headers or "x-amz-copy-source" in ctx.headers
    if method == "PUT":
        if "uploadId" in query or "partNumber" in query:
            return "upload_part_copy" if copy else "upload_part"
        if "acl" in query:
            return "put_object_acl"
        if {"tagging", "restore", "retention"} & set(query):
            return "not_implemented"
        return "copy_object" if copy else "put_object"
    if method == "GET":
        if "uploadId" in query:
            return "list_parts"
        if "acl" in query:
            return "get_object_acl"
        if "tagging" in query:
            return "not_implemented"
        return "get_object"
    if method == "HEAD":
        return "head_object"
    if method == "DELETE":
        return "abort" if "uploadId" in query else "delete_object"
    if method == "POST":
        if "uploads" in query:
            return "initiate"
        if "uploadId" in query:
            return "complete"
        if "append" in query:
            return "append_object"
    return "method_not_allowed"


# What an unsigned request needs, by operation: (permission, on the object?) — READ of an
# object is its own ACL's unless that is `default`; writing objects is the bucket's WRITE.
# Operations not listed (ACL changes, bucket creation and deletion, CORS configuration,
# copies, GET Service, ...) are never anonymous, whatever the ACL grants.
ANONYMOUS_OPERATIONS: dict[str, tuple[str, bool]] = {
    "get_object": ("READ", True),
    "head_object": ("READ", True),
    "get_object_acl": ("READ_ACP", True),
    "list_objects": ("READ", False),
    "head_bucket": ("READ", False),
    "list_uploads": ("READ", False),
    "get_bucket_acl": ("READ_ACP", False),
    "put_object": ("WRITE", False),
    "append_object": ("WRITE", False),
    "delete_object": ("WRITE", False),
    "delete_multiple": ("WRITE", False),
    "initiate": ("WRITE", False),
    "upload_part": ("WRITE", False),
    "complete": ("WRITE", False),
    "abort": ("WRITE", False),
    "list_parts": ("WRITE", False),
}


def _deny_if(anonymous: bool) -> None:
    if anonymous:
        raise CosError("AccessDenied", "Access Denied.")


def authorize_anonymous(ctx: Ctx, op: str, bucket) -> None:
    """Let an unsigned request through only where an ACL allows it (AccessDenied otherwise,
    also for a missing object the bucket does not let anyone list)."""
    needed = ANONYMOUS_OPERATIONS.get(op)
    if needed is None:
        raise CosError("AccessDenied", "Access Denied.")
    permission, on_object = needed
    if any(param.startswith("response-") for param in ctx.query):
        raise CosError("AccessDenied", "response-* parameters need a signed request.")
    if acl_from_headers(ctx.headers, for_object=True) is not None:
        raise CosError("AccessDenied", "Only signed requests may set an ACL.")
    object_acl = None
    if on_object:
        record = bucket.head(ctx.key)
        if record is None:
            # as S3: NoSuchKey only to whoever may list the bucket
            if anonymous_may("READ", bucket.acl):
                return
            raise CosError("AccessDenied", "Access Denied.")
        object_acl = record.object_acl
    if not anonymous_may(permission, bucket.acl, object_acl):
        raise CosError("AccessDenied", "Access Denied.")


def redact_query(raw_query: str) -> str:
    """The raw query with the values of signatures and tokens replaced by REDACTED.

    Names are compared decoded and in any case, as the server reads them (parse_qsl splits on
    '&' only)."""
    parts = []
    for part in raw_query.split("&"):
        name, _, _ = part.partition("=")
        parts.append(f"{name}=REDACTED" if unquote_plus(name).lower() in SECRET_PARAMS else part)
    return "&".join(parts)


def _cors_response_headers(ctx: Ctx) -> list[tuple[str, str]]:
    """Access-Control-* headers for a request from a browser (Origin) that a CORS rule allows."""
    origin = ctx.headers.get("origin")
    if not origin or ctx.bucket is None or not ctx.bucket.cors:
        return []
    rule = cors_match(ctx.bucket.cors, origin, ctx.method)
    return cors_headers(rule, origin, preflight=False) if rule is not None else []


def _check_headers(response: Response) -> None:
    """Refuse a response whose headers HTTP/1.1 cannot carry: some values come from the request
    (``response-content-type=...%0D%0A...``), and h11 would only fail once sending."""
    name = invalid_header(response.headers)
    if name is not None:
        if isinstance(response.body, FileBody):
            os.close(response.body.fd)
        raise CosError("InvalidArgument", f"The value of the {name} header cannot be sent in HTTP.")


def _hostname(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


def _is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True
