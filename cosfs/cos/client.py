"""`CosClient`: the `ObjectStore` over HTTP (httpx on trio), with signing, retries, error
mapping and end-to-end integrity checks.

One `httpx.AsyncClient` per `CosClient`, with a bounded connection pool. Every attempt of a
request is signed again with a fresh time (and fresh credentials from the provider).

Retries (policy in `cosfs.cos.retry`): 5xx, SlowDown, RequestTimeout, transport errors and
truncated bodies are retried with jittered exponential backoff, up to `config.retries` more
attempts; an expired signature or `RequestTimeTooSkewed` is re-signed once (the clock offset is
corrected from the server's `Date` header); an expired/invalid session token makes the client
call `credentials.refresh()` once. Other 4xx fail at once. Retries are logged at DEBUG, from
the third attempt on at WARNING, and a finally failed request gets one log line (WARNING, or
the exception's own level: DEBUG for not-found) with op, key, status, code and RequestId.

Non-idempotent operations and ambiguous failures: when an attempt may have taken effect (the
connection broke after the request was sent) the retry can fail with a code that actually
means "done": DELETE of a missing key always counts as success; Abort after a retry accepts
`NoSuchUpload`; APPEND after a retry that gets `AppendPositionErr` HEADs the object and
accepts it when its size is position + len(body); Complete after a retry that gets
`NoSuchUpload` HEADs the key and accepts it when the CRC64 (or, without CRCs, the `-N` ETag
suffix) matches the parts.

Integrity: PUT, APPEND, Upload Part and the XML bodies carry Content-MD5 (unless
`config.content_md5` is off); PUT and Upload Part compare the returned CRC64 with the local
one; whole-object GETs and streams are checked against `x-cos-hash-crc64ecma`; Complete
checks the returned CRC64 against the combination of the parts' CRCs when all are known.
A server without CRC64 (S3-compatible, not COS) is never failed for it: an MD5-shaped ETag
of a PUT or part must then be the MD5 of the bytes sent (unless the object is encrypted),
and GETs go unchecked. Bodies are read raw (no content decoding: `Accept-Encoding:
identity`, and an object stored with `Content-Encoding: gzip` comes back byte for byte).

Versions: a reply to a request with If-Match whose ETag is another one (a server that
ignores If-Match) is `Stale`, as a 412 would be, never data.

Range reads: a 206 must be exactly the range asked for (shorter only at the object's end),
Content-Range and body length alike, or it is refused (ProtocolError, EIO), so no cache
keeps other bytes as the ones asked for. A 416 for a range whose first byte is at or beyond
the object's size (one HEAD tells) is an empty read, not an error. A server that ignores
Range (RFC 9110 allows it) answers 200 with the whole object: the slice is taken from it as
it streams, and the rest is not read. A 200 that carries a Content-Range (rclone answers
ranged GETs so) is the range when the Content-Range names exactly the bytes asked for, the
whole object when it names all of it, and refused otherwise.

Dialects (`endpoint.Dialect`): SigV4 mounts speak S3. Requests are built with `x-cos-*`
names; in the S3 dialect every one with an S3 equivalent is sent as `x-amz-*` (copy source,
its conditions and range, metadata directive as COPY/REPLACE, meta-*, storage class, SSE,
ACL, security token), and replies are read under either prefix (`x-amz-meta-*` and
`x-cos-meta-*` are both user metadata). A server that does not know the copy headers takes a
copy for an upload of its empty body, over the destination: so a copy whose headers the
dialect cannot express is never sent (Unsupported), and a copy reply that is not a copy
result, or whose ETag is the MD5 of nothing for a source with bytes, is a ProtocolError
(logged at ERROR when the destination may have been emptied), never success. rclone's empty
`<CopyObjectResult>` (a copy onto itself) is followed by a HEAD for the new version. After
Complete in the S3 dialect one HEAD gives the committed version: an S3 server need not
answer HEAD and GET with the ETag Complete returned (rclone: `<md5>-N`, then the MD5).

Listings: keys and common prefixes outside the prefix asked for, or not after the marker,
are dropped with one warning per listing, so that no caller walks (or renames) names a
listing cannot contain.

Encryption (COSFS's use_sse): SSE-COS and SSE-KMS headers go on the requests that create an
object (PUT, Initiate, Copy, first Append); an SSE-C key goes on those, on every part, GET and
HEAD, and as the copy source's key on copies. ahbe_conf headers join the creating requests.
TLS (CA bundle, hostname check, client certificate, ciphers), the proxy and the local address
all come from `config`: httpx reads no environment (trust_env=False).

Secrets: Authorization and the session token live only in request headers; exceptions and
log records carry op, key, status, code, message and RequestId, never headers or keys.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import email.utils
import hashlib
import logging
import random
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

import httpcore
import httpx
import trio

from cosfs.cos import auth, crc64
from cosfs.cos import xml as cosxml
from cosfs.cos.endpoint import COPY_SUFFIXES, EMPTY_MD5, Addressing, Dialect, addressing_for, dialect_for
from cosfs.cos.retry import Decision, RetryPolicy, classify_status, is_transient_exception
from cosfs.cos.store import (
    MAX_DELETE_KEYS,
    MAX_LIST_KEYS,
    AppendResult,
    CopyResult,
    DeleteFailure,
    DeleteResult,
    ListPage,
    ObjectMeta,
    PartInfo,
    PutResult,
    UploadInfo,
    WriteOptions,
)
from cosfs.errors import (
    ConfigError,
    CosError,
    CosfsError,
    IntegrityError,
    InvalidName,
    ProtocolError,
    Stale,
    TransientError,
    Unsupported,
    cos_error,
)

# httpcore reads a socket 64 KiB at a time, and every read costs a trip through h11, httpcore
# and httpx in Python. Larger reads cut that per-byte overhead (about +15% cold sequential
# reads through the mount here); the value is a class attribute meant to be tuned.
httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = 1024 * 1024

if TYPE_CHECKING:
    from cosfs.config import CosConfig
    from cosfs.credentials import CredentialProvider

log = logging.getLogger(__name__)

# Bodies at least this big are hashed in a worker thread (hashlib releases the GIL).
THREAD_HASH_BYTES = 1024 * 1024
# A stream closed with at most this much left unread is read to its end (cheaper than a new
# connection, and httpx's generators then end cleanly); longer ones are cut off.
DRAIN_LIMIT_BYTES = 256 * 1024
# Reads that unwind a body's generators after its connection was closed (see _close_current).
UNWIND_READS = 3
# A part copy done by GET and Upload Part (server without Upload Part - Copy) holds the part in
# memory: bigger parts are refused.
MAX_PART_COPY_BY_HAND_BYTES = 64 * 1024 * 1024
# Retries up to this attempt number are logged at DEBUG, later ones at WARNING.
QUIET_RETRIES = 2

_STATUS_FOR_CODE = {
    "NoSuchKey": 404, "NoSuchBucket": 404, "NoSuchUpload": 404, "NoSuchCopySource": 404,
    "AccessDenied": 403, "SignatureDoesNotMatch": 403, "InvalidAccessKeyId": 403,
    "PreconditionFailed": 412, "InternalError": 500, "SlowDown": 503, "ServiceUnavailable": 503,
}


@dataclasses.dataclass
class _Call:
    """One logical request (attempts share it)."""

    op: str
    method: str
    key: str | None
    params: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # lower-case names
    body: bytes = b""
    payload_sha256: str | None = None
    timeout: httpx.Timeout | None = None
    # Request body streams of this call's attempts, released when the call ends (see _send).
    streams: list[_BodyStream] = dataclasses.field(default_factory=list)

    def what(self) -> str:
        return f"{self.op} {self.key!r}" if self.key is not None else self.op


@dataclasses.dataclass
class RequestStats:
    """What the client did, for `cosfs status` and metrics: attempts, retries and final
    failures by operation, and body bytes sent and announced received."""

    requests: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    retries: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    bytes_out: int = 0
    bytes_in: int = 0


@dataclasses.dataclass
class _Reply:
    response: httpx.Response
    body: bytes | None  # None for a stream left open
    attempts: int
    error: CosError | None = None  # set when an accepted error code ended the call


async def _raw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as sent (no content decoding). A response built in memory with bytes content
    (httpx.MockTransport) has been read already; its content is those bytes."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


class _BodyStream(httpx.AsyncByteStream):
    """A request body of one bytes chunk, iterated without an async generator: when a send
    fails half-way, httpx abandons the iterator, and trio warns about abandoned generators.

    httpx's request and response objects reference each other, so a finished request lives
    until the cyclic garbage collector runs, which counts objects, not bytes: `release`
    drops the body at once, or every part of a big upload would linger in memory."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def release(self) -> None:
        self._body = b""

    def __aiter__(self) -> _OneChunk:  # type: ignore[override]
        return _OneChunk(self._body)

    async def aclose(self) -> None:
        return None


class _OneChunk:
    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body if body else None

    def __aiter__(self) -> _OneChunk:
        return self

    async def __anext__(self) -> bytes:
        body, self._body = self._body, None
        if body is None:
            raise StopAsyncIteration
        return body


class _Truncated(Exception):
    """A body shorter than its Content-Length."""


def _bytes_spec(byte_range: tuple[int, int]) -> str:
    """`bytes=first-last` (inclusive) for Range and x-cos-copy-source-range."""
    first, last = byte_range
    if first < 0 or last < first:
        raise ValueError(f"bad byte range {byte_range}")
    return f"bytes={first}-{last}"


def _quote_etag(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def _http_time(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return 0.0


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """(first, last, total) of `bytes a-b/total` (total None for `*`)."""
    if not value or not value.startswith("bytes "):
        return None
    spec = value[6:].strip()
    try:
        span, _, total = spec.partition("/")
        first, _, last = span.partition("-")
        return int(first), int(last), (None if total.strip() in ("", "*") else int(total))
    except ValueError:
        return None


def _content_length(response: httpx.Response) -> int | None:
    text = response.headers.get("content-length", "").strip()
    return int(text) if text.isdigit() else None


def _etag_of(response: httpx.Response) -> str:
    return response.headers.get("etag", "").strip().strip('"')


def _span_problem(span: tuple[int, int, int | None] | None, first: int, last: int | None,
                  length: int | None) -> str | None:
    """Why a 206 reply does not carry bytes [first, last] (`last` None: to the object's end),
    or None when it does. It may stop short of `last` only at the object's end, and its body
    (Content-Length, when given) must be exactly the span: anything else would put other
    bytes where the ones asked for belong, and caches would keep them."""
    if span is None:
        return "206 without a usable Content-Range"
    got_first, got_last, total = span
    if total is None:
        end = last
    else:
        end = total - 1 if last is None else min(last, total - 1)
    shown = f"bytes {got_first}-{got_last}/{'*' if total is None else total}"
    if got_first != first or got_last != end:
        return f"asked for bytes {first}-{'' if last is None else last}, got Content-Range {shown}"
    if length is not None and length != got_last - got_first + 1:
        return f"Content-Range {shown} with a body of {length} bytes"
    return None


def _reply_shape(response: httpx.Response, first: int, last: int | None,
                 length: int | None) -> tuple[tuple[int, int, int | None] | None, str | None]:
    """What a 200/206 GET reply holds, for a request of bytes [first, last] (`last` None: to
    the end; (0, None) is a whole-object GET): (span, None) when it is exactly that range
    (`span` its Content-Range), (None, None) when it is the whole object, from which the
    range is sliced, or (None, problem) when it is neither and must be refused.

    A 206 is the range or nothing (`_span_problem`). A 200 without Content-Range is the whole
    object (RFC 9110 lets a server ignore Range). A 200 with a Content-Range (rclone answers
    ranged GETs so) is the range when it names exactly the bytes asked for, the whole object
    when it names all of them (checked first: a whole object keeps its CRC64 check), and
    refused otherwise."""
    span = _content_range(response.headers.get("content-range"))
    if response.status_code == 206:
        return span, _span_problem(span, first, last, length)
    if span is None:
        if response.headers.get("content-range"):
            return None, f"200 with an unusable Content-Range {response.headers['content-range']!r}"
        return None, None
    got_first, got_last, total = span
    if got_first == 0 and total is not None and got_last == total - 1 and length in (None, total):
        return None, None
    problem = _span_problem(span, first, last, length)
    if problem is None:
        return span, None
    return None, f"200 with a Content-Range: {problem}"


def _ignored_if_match(if_match: str | None, etag: str) -> bool:
    """A reply to an If-Match request that names another version: the server ignored the
    condition, so what it sent belongs to a version nobody asked for."""
    return bool(if_match) and bool(etag) and etag != if_match.strip('"')


_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")


def _etag_contradicts_md5(etag: str, md5_b64: str) -> bool:
    """True when `etag` has the form of an MD5 (a single PUT's or part's ETag) but is not the
    MD5 of the bytes sent. The integrity check of last resort, for servers without CRC64."""
    return bool(_MD5_HEX.fullmatch(etag)) and etag.lower() != base64.b64decode(md5_b64).hex()


def _stray_names(page: ListPage, prefix: str, marker: str) -> tuple[ListPage, list[str]]:
    """The page without the keys and common prefixes a correct server cannot list (outside
    `prefix`, or not after `marker`), and their names: callers walk or rename what a listing
    returns, and must never act on names outside the prefix they asked for."""

    def fits(name: str) -> bool:
        return name.startswith(prefix) and name > marker

    stray = [e.key for e in page.entries if not fits(e.key)] + [p for p in page.common_prefixes if not fits(p)]
    if not stray:
        return page, stray
    kept = dataclasses.replace(
        page,
        entries=tuple(e for e in page.entries if fits(e.key)),
        common_prefixes=tuple(p for p in page.common_prefixes if fits(p)),
    )
    return kept, stray


def tls_context(config: CosConfig) -> ssl.SSLContext | bool:
    """What httpx verifies the endpoint with: False (no_check_certificate), True (certifi's
    bundle, as before), or a context built for a CA bundle, no hostname check, a client
    certificate or a cipher list."""
    if not config.verify_tls:
        return False
    if not (config.ca_bundle or not config.verify_hostname or config.client_cert or config.cipher_suites):
        return True
    import certifi

    try:
        context = ssl.create_default_context(cafile=config.ca_bundle or certifi.where())
        context.check_hostname = config.verify_hostname
        if config.client_cert:
            context.load_cert_chain(config.client_cert, config.client_key)
        if config.cipher_suites:
            context.set_ciphers(config.cipher_suites)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS settings (ca_bundle, ssl_client_cert, cipher_suites) are not usable: {exc}") from None
    return context


@dataclasses.dataclass(frozen=True)
class _SseHeaders:
    """Encryption headers by request kind: `write` on requests that create an object (PUT,
    Initiate, Copy, first Append), `part` on Upload Part (and Part Copy), `read` on GET and
    HEAD, `copy_source` naming the key of an SSE-C source."""

    write: dict[str, str]
    part: dict[str, str]
    read: dict[str, str]
    copy_source: dict[str, str]


def _sse_headers(config: CosConfig) -> _SseHeaders:
    write: dict[str, str] = {}
    customer: dict[str, str] = {}
    if config.sse_customer_key is not None:
        key = config.sse_customer_key
        customer = {"x-cos-server-side-encryption-customer-algorithm": "AES256",
                    "x-cos-server-side-encryption-customer-key": base64.b64encode(key).decode(),
                    "x-cos-server-side-encryption-customer-key-md5": _md5_b64(key)}
    if config.server_side_encryption == "SSE-C":
        write = dict(customer)
    elif config.server_side_encryption:
        write["x-cos-server-side-encryption"] = config.server_side_encryption
        if config.sse_kms_key_id:
            write["x-cos-server-side-encryption-cos-kms-key-id"] = config.sse_kms_key_id
    source = {name.replace("x-cos-", "x-cos-copy-source-", 1): value for name, value in customer.items()}
    return _SseHeaders(write=write, part=write if config.server_side_encryption == "SSE-C" else {},
                       read=customer, copy_source=source)


def _extra_headers(rules: Sequence[tuple[str, str, str]], key: str) -> dict[str, str]:
    """ahbe_conf: the headers of every rule whose suffix or "reg:" regex matches "/" + key."""
    path = "/" + key
    headers: dict[str, str] = {}
    for pattern, name, value in rules:
        if pattern.startswith("reg:") and re.search(pattern[4:], path) or path.endswith(pattern):
            headers[name.lower()] = value
    return headers


class CosClient:
    """One bucket over HTTP; implements `cosfs.cos.store.ObjectStore`.

    State: the httpx client (its pool) and a clock offset learnt from `RequestTimeTooSkewed`
    answers. Both are safe to share between trio tasks.
    """

    def __init__(
        self,
        config: CosConfig,
        credentials: CredentialProvider,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._clock = clock
        self._clock_offset_s = 0.0
        self._rng = rng or random.Random()
        self.stats = RequestStats()
        self._addr: Addressing = addressing_for(
            config.bucket, config.endpoint_url, path_style=config.path_style, region=config.region
        )
        self._policy = RetryPolicy(config.retries, config.retry_base_delay_s, config.retry_max_delay_s)
        self._timeout = httpx.Timeout(
            connect=config.connect_timeout_s,
            read=config.read_timeout_s,
            write=config.read_timeout_s,
            pool=config.read_timeout_s,
        )
        self._complete_timeout = httpx.Timeout(
            connect=config.connect_timeout_s,
            read=config.complete_timeout_s,
            write=config.read_timeout_s,
            pool=config.read_timeout_s,
        )
        limits = httpx.Limits(max_connections=config.max_connections,
                              max_keepalive_connections=config.max_connections)
        self._http = httpx.AsyncClient(
            # config.py is the only reader of the environment: proxies and CA bundles named
            # there arrive in `config`, so httpx itself must not look (trust_env=False).
            transport=transport or httpx.AsyncHTTPTransport(
                verify=tls_context(config), limits=limits, proxy=config.proxy,
                local_address=config.local_address, trust_env=False),
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
        )
        self._sse = _sse_headers(config)
        self._dialect = dialect_for(config.signature)
        self._foreign_noted: set[str] = set()
        # Whether the server has Upload Part - Copy: COS has; in the S3 dialect a probe tells.
        self._part_copy: bool | None = None if self._dialect.name == "s3" else True
        self._part_copy_lock = trio.Lock()

    @property
    def addressing(self) -> Addressing:
        return self._addr

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> CosClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    # --- request machinery ----------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() + self._clock_offset_s

    def _build(self, call: _Call, creds: auth.Credentials | None) -> httpx.Request:
        """The signed request of one attempt; unsigned when `creds` is None (public_bucket)."""
        addr = self._addr
        headers: dict[str, str] = {"host": addr.host_header}
        headers.update(self._dialect.outgoing(call.headers)[0])
        if call.body or call.method in ("PUT", "POST"):
            headers["content-length"] = str(len(call.body))
        sigv4 = self._config.signature == "sigv4"
        if creds is not None and creds.token:
            headers["x-amz-security-token" if sigv4 else "x-cos-security-token"] = creds.token
        params = dict(call.params)
        query = "&".join(
            auth.cos_quote(k) if v == "" else f"{auth.cos_quote(k)}={auth.cos_quote(v)}" for k, v in call.params
        )
        raw_path = addr.raw_path(call.key)
        now = self._now()
        if creds is None:
            pass
        elif sigv4:
            if call.payload_sha256 is None:
                call.payload_sha256 = hashlib.sha256(call.body).hexdigest()
            request_time = auth.amz_date(now)
            headers["x-amz-date"] = request_time
            headers["x-amz-content-sha256"] = call.payload_sha256
            headers["authorization"] = auth.sigv4_authorization(
                creds, addr.region, call.method, raw_path, params, headers, call.payload_sha256, request_time
            )
        else:
            headers["authorization"] = auth.cos_authorization(
                creds, call.method, addr.sign_path(call.key), params, auth.headers_to_sign(headers), now
            )
        headers["user-agent"] = self._config.user_agent
        headers["accept-encoding"] = "identity"
        target = raw_path + ("?" + query if query else "")
        url = httpx.URL(scheme=addr.scheme, host=addr.host, port=addr.port, raw_path=target.encode("ascii"))
        stream = _BodyStream(call.body)
        call.streams.append(stream)
        return httpx.Request(
            call.method, url, headers=headers, stream=stream,
            extensions={"timeout": (call.timeout or self._timeout).as_dict()},
        )

    async def _read_body(self, response: httpx.Response, method: str) -> bytes:
        chunks = [chunk async for chunk in _raw_chunks(response)]
        body = b"".join(chunks)
        length = response.headers.get("content-length")
        if (
            method != "HEAD"
            and response.status_code not in (204, 304)
            and length is not None
            and length.strip().isdigit()
            and len(body) < int(length)
        ):
            raise _Truncated(f"body of {len(body)} bytes, Content-Length {length}")
        return body

    def _synthesised_code(self, status: int, call: _Call) -> str:
        if status == 404:
            return "NoSuchBucket" if call.key is None else "NoSuchKey"
        return {
            400: "BadRequest", 401: "AccessDenied", 403: "AccessDenied", 405: "MethodNotAllowed",
            409: "Conflict", 411: "MissingContentLength", 412: "PreconditionFailed", 416: "InvalidRange",
            500: "InternalError", 501: "NotImplemented", 503: "ServiceUnavailable",
        }.get(status, f"HTTP{status}")

    def _error(self, call: _Call, response: httpx.Response, body: bytes) -> CosError:
        info = cosxml.parse_error(body) if body else None
        status = response.status_code
        request_id = (info.request_id if info else "") or self._dialect.header(response.headers, "request-id")
        code = ((info.code if info else "") or self._dialect.header(response.headers, "error-code")
                or self._synthesised_code(status, call))
        message = info.message if info else ""
        if not message and code == "NoSuchBucket":
            message = f"no such bucket {self._config.bucket}"
        resource = (info.resource if info else "") or (call.key if call.key is not None else self._config.bucket)
        return cos_error(status, code, message, request_id, resource)

    def _error_in_200(self, call: _Call, response: httpx.Response, body: bytes) -> CosError | None:
        info = cosxml.error_in_body(body)
        if info is None:
            return None
        status = _STATUS_FOR_CODE.get(info.code, 500 if "Internal" in info.code else 400)
        request_id = info.request_id or self._dialect.header(response.headers, "request-id")
        message = (info.message + " " if info.message else "") + "(error inside a 200 reply)"
        return cos_error(status, info.code or "InternalError", message, request_id, info.resource or (call.key or ""))

    def _learn_clock(self, response: httpx.Response) -> None:
        server_s = _http_time(response.headers.get("date"))
        if server_s:
            self._clock_offset_s = server_s - self._clock()
            log.info("server clock differs by %.0f s; signing with the server's time", self._clock_offset_s)

    def _check_dialect(self, call: _Call) -> None:
        """Before anything is sent: a copy whose headers the dialect cannot express is
        refused (a server that does not know a copy header answers the PUT as an upload of
        the empty body, over the destination). Other requests carry such a header as it is
        (one INFO line per name): at worst the server ignores it."""
        sent, foreign = self._dialect.outgoing(call.headers)
        if "x-cos-copy-source" in call.headers:
            wrong = [name for name in sent if name.startswith(("x-cos-", "x-amz-"))
                     and name[6:] in COPY_SUFFIXES and not name.startswith(self._dialect.prefix)]
            if foreign or wrong or self._dialect.prefix + "copy-source" not in sent:
                raise self._final(call, Unsupported(
                    f"{call.what()}: refused to send a copy the {self._dialect.name.upper()} dialect cannot "
                    f"express (headers {sorted(foreign + wrong)}): a server that ignores them would store an "
                    f"empty object instead"), None, 0, None)
            return
        for name in foreign:
            if name not in self._foreign_noted:
                self._foreign_noted.add(name)
                log.info("%s has no %s equivalent; sent as it is", name, self._dialect.name.upper())

    async def _send(self, call: _Call, **options) -> _Reply:
        self._check_dialect(call)
        try:
            return await self._send_attempts(call, **options)
        finally:
            for body_stream in call.streams:
                body_stream.release()
            call.streams.clear()

    async def _send_attempts(
        self,
        call: _Call,
        *,
        stream: bool = False,
        check_200: bool = False,
        accept_codes: frozenset[str] | set[str] = frozenset(),
        accept_after_retry: frozenset[str] | set[str] = frozenset(),
    ) -> _Reply:
        """Send `call` with retries; return the reply or raise the mapped exception.

        `accept_codes` end the call with `_Reply.error` set instead of raising;
        `accept_after_retry` likewise, but only after an earlier attempt may have taken effect.
        `check_200` treats an `<Error>` body in a 2xx reply as that error.
        """
        attempt = 0  # failed attempts that were followed by backoff
        tries = 0
        resigned = refreshed = False
        while True:
            tries += 1
            self.stats.requests[call.op] += 1
            self.stats.bytes_out += len(call.body)
            creds = await self._credentials.get()
            request = self._build(call, creds)
            status: int | None = None
            cause: BaseException | None = None
            failure: CosfsError
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                if not is_transient_exception(exc):
                    raise ProtocolError(f"{call.what()}: {_describe(exc)}") from exc
                cause = exc
                failure = TransientError(f"{call.what()}: {_describe(exc)}")
                decision = Decision.RETRY
            else:
                status = response.status_code
                ok = 200 <= status < 300 or status == 304
                if ok:
                    length = response.headers.get("content-length", "")
                    self.stats.bytes_in += int(length) if length.isdigit() else 0
                if ok and _ignored_if_match(call.headers.get("if-match"), _etag_of(response)):
                    await response.aclose()
                    self.stats.errors[call.op] += 1
                    raise self._final(call, Stale(
                        f"{call.what()}: the server ignored If-Match {call.headers['if-match']} and answered "
                        f"ETag {_etag_of(response)!r}: the version asked for is gone"), None, tries, status)
                if ok and stream:
                    return _Reply(response, None, tries)
                try:
                    body = await self._read_body(response, call.method)
                except (httpx.TransportError, _Truncated) as exc:
                    cause = exc
                    failure = TransientError(f"{call.what()}: truncated response body ({_describe(exc)})")
                    decision = Decision.RETRY
                else:
                    error = self._error_in_200(call, response, body) if ok and check_200 else None
                    if ok and error is None:
                        log.debug("%s -> %d (try %d)", call.what(), status, tries)
                        return _Reply(response, body, tries)
                    if error is None:
                        error = self._error(call, response, body)
                    if error.code in accept_codes or (tries > 1 and error.code in accept_after_retry):
                        log.debug("%s -> %d %s (accepted)", call.what(), status, error.code)
                        return _Reply(response, body, tries, error)
                    failure = error
                    decision = classify_status(error.status, error.code, error.message)
                    if decision is Decision.RESIGN and not resigned:
                        self._learn_clock(response)
                finally:
                    await response.aclose()
            code = getattr(failure, "code", "")
            if decision is Decision.RESIGN and not resigned:
                resigned = True
                log.debug("%s: %s; signing again", call.what(), code)
                continue
            if decision is Decision.REFRESH and not refreshed:
                refreshed = True
                log.info("%s: %s; refreshing credentials", call.what(), code)
                await self._credentials.refresh()
                continue
            if decision is Decision.RETRY and self._policy.should_retry(attempt):
                delay = self._policy.delay_s(attempt, self._rng)
                level = logging.DEBUG if attempt < QUIET_RETRIES else logging.WARNING
                log.log(level, "%s failed (try %d: status=%s code=%s %s); retrying in %.2f s",
                        call.what(), tries, status, code or "-", _describe(failure), delay)
                self.stats.retries[call.op] += 1
                await trio.sleep(delay)
                attempt += 1
                continue
            self.stats.errors[call.op] += 1
            raise self._final(call, failure, cause, tries, status)

    def _final(
        self, call: _Call, failure: CosfsError, cause: BaseException | None, tries: int, status: int | None
    ) -> CosfsError:
        if tries > 1:
            suffix = f"gave up after {tries} attempts"
            if isinstance(failure, CosError):
                message = f"{failure.message} ({suffix})" if failure.message else suffix
                failure = cos_error(failure.status, failure.code, message, failure.request_id, failure.resource)
            elif isinstance(failure, TransientError):
                failure = TransientError(f"{failure} ({suffix})")
        failure.__cause__ = cause
        code = getattr(failure, "code", "-")
        request_id = getattr(failure, "request_id", "") or "-"
        log.log(failure.log_level, "%s failed: status=%s code=%s RequestId=%s: %s",
                call.what(), status, code, request_id, failure)
        return failure

    async def _digests(self, body: bytes) -> tuple[str, int, str | None]:
        """(Content-MD5, CRC64, SHA-256 hex if SigV4) of a body, in a thread when large."""
        sigv4 = self._config.signature == "sigv4"

        def compute() -> tuple[str, int, str | None]:
            return _md5_b64(body), crc64.crc64(body), hashlib.sha256(body).hexdigest() if sigv4 else None

        if len(body) >= THREAD_HASH_BYTES:
            return await trio.to_thread.run_sync(compute)
        return compute()

    def _write_headers(self, options: WriteOptions, key: str) -> dict[str, str]:
        """Headers of a request that creates `key`: type, metadata, class, encryption, and
        the ahbe_conf headers that match the key (which win over the others)."""
        headers = {"content-type": options.content_type or "application/octet-stream"}
        for name, value in options.user_meta.items():
            if not value.isascii() or not name.isascii() or "\n" in value or "\r" in value:
                raise InvalidName(f"metadata {name!r} must be printable ASCII (URL-encode other text)")
            headers[f"x-cos-meta-{name.lower()}"] = value
        storage_class = options.storage_class or self._config.storage_class
        if storage_class:
            headers["x-cos-storage-class"] = storage_class
        if options.server_side_encryption:
            headers["x-cos-server-side-encryption"] = options.server_side_encryption
        else:
            headers.update(self._sse.write)
        if options.acl:
            headers["x-cos-acl"] = options.acl
        headers.update(_extra_headers(self._config.extra_headers, key))
        return headers

    def _meta(self, key: str, response: httpx.Response, size: int | None = None) -> ObjectMeta:
        h = response.headers
        if size is None:
            length = h.get("content-length", "0").strip()
            size = int(length) if length.isdigit() else 0
        user_meta = self._dialect.user_meta(h.multi_items())
        return ObjectMeta(
            key=key,
            size_bytes=size,
            etag=h.get("etag", "").strip().strip('"'),
            last_modified_s=_http_time(h.get("last-modified")),
            content_type=h.get("content-type", "application/octet-stream"),
            crc64=crc64.parse_header(h.get("x-cos-hash-crc64ecma")),
            user_meta=user_meta,
            storage_class=self._dialect.header(h, "storage-class", "STANDARD") or "STANDARD",
            appendable=h.get("x-cos-object-type", "").lower() == "appendable",
        )

    def _parse(self, call: _Call, parser, body: bytes | None):
        try:
            return parser(body or b"")
        except ProtocolError as exc:
            raise ProtocolError(f"{call.what()}: {exc}") from None

    # --- bucket ---------------------------------------------------------------------------

    async def head_bucket(self) -> None:
        await self._send(_Call("head_bucket", "HEAD", None))

    # --- reads ----------------------------------------------------------------------------

    def _get_call(self, op: str, key: str, byte_range: tuple[int, int] | None, if_match: str | None) -> _Call:
        headers: dict[str, str] = dict(self._sse.read)
        if byte_range is not None:
            headers["range"] = _bytes_spec(byte_range)
        if if_match:
            headers["if-match"] = _quote_etag(if_match)
        return _Call(op, "GET", key, headers=headers)

    async def head_object(self, key: str, *, if_match: str | None = None) -> ObjectMeta:
        headers = dict(self._sse.read)
        if if_match:
            headers["if-match"] = _quote_etag(if_match)
        reply = await self._send(_Call("head_object", "HEAD", key, headers=headers))
        return self._meta(key, reply.response)

    async def _empty_range(self, key: str, byte_range: tuple[int, int], if_match: str | None,
                           error: CosError) -> ObjectMeta:
        """After a 416: the object's meta if the range starts at or past its end, else raise."""
        meta = await self.head_object(key, if_match=if_match)
        if byte_range[0] >= meta.size_bytes:
            return meta
        raise error

    async def get_object(
        self,
        key: str,
        *,
        byte_range: tuple[int, int] | None = None,
        if_match: str | None = None,
    ) -> tuple[ObjectMeta, bytes]:
        if byte_range is not None:
            # Streamed, so that a server which ignores Range is read only up to the slice.
            async with self._open("get_object", key, byte_range, if_match) as (meta, chunks):
                return meta, b"".join([chunk async for chunk in chunks])
        call = self._get_call("get_object", key, None, if_match)
        reply = await self._send(call)
        response, body = reply.response, reply.body or b""
        _, problem = _reply_shape(response, 0, None, len(body))
        if problem:
            raise self._final(call, ProtocolError(f"{call.what()}: {problem}"), None, reply.attempts,
                              response.status_code)
        meta = self._meta(key, response, size=len(body))
        await self._check_crc(call, meta.crc64, body)
        return meta, body

    async def _check_crc(self, call: _Call, expected: int | None, body: bytes) -> None:
        if expected is None:
            return
        if len(body) >= THREAD_HASH_BYTES:
            actual = await trio.to_thread.run_sync(crc64.crc64, body)
        else:
            actual = crc64.crc64(body)
        if actual != expected:
            raise self._final(
                call, IntegrityError(f"{call.what()}: CRC64 mismatch: server says {expected}, body has {actual}"),
                None, 1, 200,
            )

    def open_object(
        self,
        key: str,
        *,
        byte_range: tuple[int, int] | None = None,
        if_match: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[tuple[ObjectMeta, AsyncIterator[bytes]]]:
        return self._open("open_object", key, byte_range, if_match)

    @contextlib.asynccontextmanager
    async def _open(
        self, op: str, key: str, byte_range: tuple[int, int] | None, if_match: str | None
    ) -> AsyncIterator[tuple[ObjectMeta, AsyncIterator[bytes]]]:
        call = self._get_call(op, key, byte_range, if_match)
        reply = await self._send(call, stream=True, accept_codes={"InvalidRange"} if byte_range else frozenset())
        if reply.error is not None:
            assert byte_range is not None
            meta = await self._empty_range(key, byte_range, if_match, reply.error)
            yield meta, _EmptyStream()
            return
        try:
            stream = _ObjectStream(self, call, reply.response, byte_range)
        except BaseException:
            await reply.response.aclose()
            raise
        try:
            yield stream.meta, stream
        finally:
            await stream.aclose()

    # --- writes ---------------------------------------------------------------------------

    async def put_object(self, key: str, body: bytes, options: WriteOptions = WriteOptions()) -> PutResult:
        headers = self._write_headers(options, key)
        md5, local_crc, sha = await self._digests(body)
        if self._config.content_md5:
            headers["content-md5"] = md5
        call = _Call("put_object", "PUT", key, headers=headers, body=body, payload_sha256=sha)
        reply = await self._send(call)
        etag = _etag_of(reply.response)
        sse = options.server_side_encryption or self._config.server_side_encryption
        self._check_stored(call, reply.response, local_crc, md5, encrypted=bool(sse))
        return PutResult(etag=etag, crc64=local_crc)

    def _check_stored(self, call: _Call, response: httpx.Response, local_crc: int, md5: str, *,
                      encrypted: bool) -> None:
        """After a PUT or part: the server's CRC64 must be ours. A server without CRC64 (not
        COS) has checked Content-MD5; if its ETag is an MD5 it must be ours too, except for
        encrypted objects, whose ETags need not be MD5s of the data."""
        server_crc = crc64.parse_header(response.headers.get("x-cos-hash-crc64ecma"))
        if server_crc is not None:
            self._compare_crc(call, server_crc, local_crc)
        elif not encrypted and _etag_contradicts_md5(_etag_of(response), md5):
            raise self._final(call, IntegrityError(
                f"{call.what()}: no CRC64 in the reply, and ETag {_etag_of(response)} is not the MD5 of the "
                f"bytes sent"), None, 1, response.status_code)

    def _compare_crc(self, call: _Call, server_crc: int | None, local_crc: int | None) -> None:
        if server_crc is not None and local_crc is not None and server_crc != local_crc:
            raise self._final(
                call,
                IntegrityError(f"{call.what()}: CRC64 mismatch: sent {local_crc}, server stored {server_crc}"),
                None, 1, 200,
            )

    async def delete_object(self, key: str) -> None:
        await self._send(_Call("delete_object", "DELETE", key), accept_codes={"NoSuchKey"})

    async def delete_objects(self, keys: Sequence[str]) -> DeleteResult:
        deleted: list[str] = []
        failed: list[DeleteFailure] = []
        keys = list(keys)
        for start in range(0, len(keys), MAX_DELETE_KEYS):
            batch = keys[start: start + MAX_DELETE_KEYS]
            body = cosxml.build_delete(batch, quiet=False)
            md5, _, sha = await self._digests(body)
            headers = {"content-type": "application/xml", "content-md5": md5}
            call = _Call("delete_objects", "POST", None, params=[("delete", "")], headers=headers, body=body,
                         payload_sha256=sha)
            reply = await self._send(call, check_200=True)
            result = self._parse(call, cosxml.parse_delete_result, reply.body)
            deleted.extend(result.deleted)
            failed.extend(result.failed)
        return DeleteResult(deleted=tuple(deleted), failed=tuple(failed))

    async def copy_object(
        self,
        source_key: str,
        dest_key: str,
        *,
        replace_metadata: WriteOptions | None = None,
        source_if_match: str | None = None,
    ) -> CopyResult:
        headers = {"x-cos-copy-source": self._copy_source(source_key), **self._sse.copy_source}
        if replace_metadata is not None:
            headers["x-cos-metadata-directive"] = "Replaced"
            headers.update(self._write_headers(replace_metadata, dest_key))
        else:
            headers["x-cos-metadata-directive"] = "Copy"
            if self._config.storage_class:
                headers["x-cos-storage-class"] = self._config.storage_class
            headers.update(self._sse.write)
        if source_if_match:
            headers["x-cos-copy-source-if-match"] = _quote_etag(source_if_match)
        call = _Call("copy_object", "PUT", dest_key, headers=headers)
        reply = await self._send(call, check_200=True)
        result = self._copy_result(call, reply, source_if_match, etag_optional=True)
        if result.crc64 is None:
            header_crc = crc64.parse_header(reply.response.headers.get("x-cos-hash-crc64ecma"))
            if header_crc is not None:
                result = dataclasses.replace(result, crc64=header_crc)
        if not result.etag:
            # An empty <CopyObjectResult> (rclone's answer to a copy onto itself): the copy
            # was done, and a HEAD tells the version it made.
            meta = await self.head_object(dest_key)
            if meta.etag == EMPTY_MD5 and source_if_match and source_if_match.strip('"') != EMPTY_MD5:
                raise self._lost_copy(call, reply, f"the object is now empty (ETag {EMPTY_MD5})", emptied=True)
            result = CopyResult(etag=meta.etag, crc64=result.crc64 if result.crc64 is not None else meta.crc64,
                                last_modified_s=meta.last_modified_s)
        return result

    def _copy_source(self, key: str) -> str:
        return self._addr.copy_source(key, s3=self._dialect.name == "s3")

    def _copy_result(self, call: _Call, reply: _Reply, source_if_match: str | None, *,
                     etag_optional: bool = False, source_empty: bool | None = None) -> CopyResult:
        """The copy result of a copy's 200 reply, or the error that it is none. A server that
        did not take the request for a copy (copy headers it does not know) stores the empty
        request body at the destination and answers as to an upload: no CopyObjectResult,
        ETag the MD5 of nothing. That is never success; the destination may already be
        overwritten, which the error says (logged at ERROR then: it may be data loss).
        `source_empty` (default: told by `source_if_match`) lets an empty ETag be refused."""
        try:
            result = cosxml.parse_copy_result(reply.body or b"", etag_optional=etag_optional)
        except ProtocolError as exc:
            raise self._lost_copy(call, reply, str(exc)) from None
        if source_empty is None:
            source_empty = source_if_match.strip('"') == EMPTY_MD5 if source_if_match else None
        if result.etag == EMPTY_MD5 and source_empty is False:
            raise self._lost_copy(call, reply, f"the copy's ETag is {EMPTY_MD5} (no bytes) but the source has bytes")
        return result

    def _lost_copy(self, call: _Call, reply: _Reply, problem: str, *, emptied: bool | None = None) -> ProtocolError:
        etag = _etag_of(reply.response)
        emptied = etag == EMPTY_MD5 if emptied is None else emptied
        text = (f"{call.what()}: the server did not answer as to a copy ({problem}; status "
                f"{reply.response.status_code}, ETag {etag or '-'})")
        if emptied and call.op == "upload_part_copy":
            text += "; it took the part copy for an upload of an empty part"
        elif emptied:
            text += ("; it may have stored an EMPTY object at the destination instead of the copy "
                     "(a server that does not understand the copy headers)")
        failure = ProtocolError(text)
        if emptied and call.op != "upload_part_copy":  # a part is harmless until Complete
            failure.log_level = logging.ERROR
        return self._final(call, failure, None, reply.attempts, reply.response.status_code)

    async def append_object(self, key: str, position: int, body: bytes,
                            options: WriteOptions = WriteOptions()) -> AppendResult:
        headers = self._write_headers(options, key) if position == 0 else {}
        md5, _, sha = await self._digests(body)
        if self._config.content_md5:
            headers["content-md5"] = md5
        call = _Call("append_object", "POST", key, params=[("append", ""), ("position", str(position))],
                     headers=headers, body=body, payload_sha256=sha)
        reply = await self._send(call, accept_after_retry={"AppendPositionErr"})
        if reply.error is not None:
            # An earlier attempt may have appended already: accept it if the length says so.
            meta = await self.head_object(key)
            if meta.size_bytes == position + len(body):
                return AppendResult(next_position=meta.size_bytes, etag=meta.etag, crc64=meta.crc64)
            raise reply.error
        h = reply.response.headers
        next_text = h.get("x-cos-next-append-position", "").strip()
        next_position = int(next_text) if next_text.isdigit() else position + len(body)
        return AppendResult(
            next_position=next_position,
            etag=h.get("etag", "").strip().strip('"'),
            crc64=crc64.parse_header(h.get("x-cos-hash-crc64ecma")),
        )

    # --- listing --------------------------------------------------------------------------

    async def list_objects(
        self,
        prefix: str = "",
        *,
        delimiter: str = "",
        marker: str = "",
        max_keys: int = MAX_LIST_KEYS,
    ) -> ListPage:
        if not 1 <= max_keys <= MAX_LIST_KEYS:
            raise ValueError(f"max_keys must be 1..{MAX_LIST_KEYS}")
        params = []
        if delimiter:
            params.append(("delimiter", delimiter))
        params.append(("encoding-type", "url"))
        if marker:
            params.append(("marker", marker))
        params.append(("max-keys", str(max_keys)))
        if prefix:
            params.append(("prefix", prefix))
        call = _Call("list_objects", "GET", None, params=params)
        reply = await self._send(call)
        page, stray = _stray_names(self._parse(call, cosxml.parse_list_bucket, reply.body), prefix, marker)
        if stray:
            log.warning("%s: ignored %d name(s) outside prefix %r or not after marker %r, e.g. %r",
                        call.what(), len(stray), prefix, marker, stray[0])
        return page

    async def list_all(self, prefix: str = "", *, delimiter: str = "") -> AsyncIterator[ListPage]:
        marker = ""
        while True:
            page = await self.list_objects(prefix, delimiter=delimiter, marker=marker)
            yield page
            if not page.is_truncated:
                return
            next_marker = page.next_marker
            if not next_marker:
                candidates = [e.key for e in page.entries[-1:]] + list(page.common_prefixes[-1:])
                next_marker = max(candidates) if candidates else ""
            if not next_marker or next_marker <= marker:
                raise ProtocolError(f"listing of {prefix!r} is truncated but does not advance past {marker!r}")
            marker = next_marker

    # --- multipart ------------------------------------------------------------------------

    async def create_multipart_upload(self, key: str, options: WriteOptions = WriteOptions()) -> str:
        call = _Call("create_multipart_upload", "POST", key, params=[("uploads", "")],
                     headers=self._write_headers(options, key))
        reply = await self._send(call, check_200=True)
        return self._parse(call, cosxml.parse_initiate_result, reply.body)

    async def upload_part(self, key: str, upload_id: str, part_number: int, body: bytes) -> PartInfo:
        md5, local_crc, sha = await self._digests(body)
        headers = dict(self._sse.part)
        if self._config.content_md5:
            headers["content-md5"] = md5
        call = _Call("upload_part", "PUT", key,
                     params=[("partNumber", str(part_number)), ("uploadId", upload_id)],
                     headers=headers, body=body, payload_sha256=sha)
        reply = await self._send(call)
        self._check_stored(call, reply.response, local_crc, md5, encrypted=bool(self._config.server_side_encryption))
        etag = _etag_of(reply.response)
        if not etag:
            raise ProtocolError(f"{call.what()}: part {part_number} uploaded without an ETag in the reply")
        return PartInfo(part_number=part_number, etag=etag, size_bytes=len(body), crc64=local_crc)

    async def upload_part_copy(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        source_key: str,
        source_range: tuple[int, int] | None = None,
        *,
        source_if_match: str | None = None,
    ) -> PartInfo:
        if self._part_copy is None and source_range is not None:
            async with self._part_copy_lock:
                if self._part_copy is None:
                    self._part_copy = await self._probe_part_copy(key, source_key, source_range[0], source_if_match)
        if self._part_copy is False and source_range is not None:
            return await self._part_copy_by_hand(key, upload_id, part_number, source_key, source_range,
                                                 source_if_match)
        call = self._part_copy_call(key, upload_id, part_number, source_key, source_range, source_if_match)
        reply = await self._send(call, check_200=True)
        # A server without Upload Part - Copy (rclone) takes it for an upload of an empty part.
        source_empty = False if source_range is not None else None  # a range holds a byte at least
        result = self._copy_result(call, reply, source_if_match, source_empty=source_empty)
        crc = result.crc64
        if crc is None:
            crc = crc64.parse_header(reply.response.headers.get("x-cos-hash-crc64ecma"))
        size = source_range[1] - source_range[0] + 1 if source_range is not None else None
        return PartInfo(part_number=part_number, etag=result.etag, size_bytes=size, crc64=crc)

    def _part_copy_call(self, key: str, upload_id: str, part_number: int, source_key: str,
                        source_range: tuple[int, int] | None, source_if_match: str | None) -> _Call:
        headers = {"x-cos-copy-source": self._copy_source(source_key), **self._sse.part, **self._sse.copy_source}
        if source_range is not None:
            headers["x-cos-copy-source-range"] = _bytes_spec(source_range)
        if source_if_match:
            headers["x-cos-copy-source-if-match"] = _quote_etag(source_if_match)
        return _Call("upload_part_copy", "PUT", key,
                     params=[("partNumber", str(part_number)), ("uploadId", upload_id)], headers=headers)

    async def _probe_part_copy(self, key: str, source_key: str, first: int, source_if_match: str | None) -> bool:
        """Once per client in the S3 dialect, before the first Upload Part - Copy: does the
        server copy parts? A server without it (rclone) takes one for an upload of an empty
        part, and will not let that part be replaced (the upload is lost), so the question is
        asked in an upload of its own: one byte of the source is part-copied, the reply
        checked, and that upload aborted (an upload never changes the key's object)."""
        upload_id = await self.create_multipart_upload(key)
        try:
            call = self._part_copy_call(key, upload_id, 1, source_key, (first, first), source_if_match)
            reply = await self._send(call, check_200=True)
            try:
                works = cosxml.parse_copy_result(reply.body or b"").etag != EMPTY_MD5
            except ProtocolError:
                works = False
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(CosfsError):
                await self.abort_multipart_upload(key, upload_id)
        if not works:
            log.info("this server has no Upload Part - Copy (it answered one with status %d, ETag %s, no copy "
                     "result): parts are copied with a GET and an Upload Part", reply.response.status_code,
                     _etag_of(reply.response) or "-")
        return works

    async def _part_copy_by_hand(self, key: str, upload_id: str, part_number: int, source_key: str,
                                 source_range: tuple[int, int], source_if_match: str | None) -> PartInfo:
        """Upload Part - Copy for a server without it: the range is read (pinned to
        `source_if_match`) and uploaded as the part."""
        first, last = source_range
        if last - first + 1 > MAX_PART_COPY_BY_HAND_BYTES:
            raise Unsupported(f"upload_part_copy {key!r}: this server has no Upload Part - Copy, and part "
                              f"{part_number} ({last - first + 1} bytes) is too big to copy through memory")
        _, body = await self.get_object(source_key, byte_range=source_range, if_match=source_if_match)
        if len(body) != last - first + 1:
            raise ProtocolError(f"upload_part_copy {key!r}: bytes {first}-{last} of {source_key!r} are past "
                                f"its end ({len(body)} bytes read)")
        return await self.upload_part(key, upload_id, part_number, body)

    @staticmethod
    def _combined_crc(parts: Sequence[PartInfo]) -> int | None:
        if not parts or any(p.crc64 is None or p.size_bytes is None for p in parts):
            return None
        total = 0
        for part in parts:
            total = crc64.combine(total, part.crc64, part.size_bytes)  # type: ignore[arg-type]
        return total

    async def complete_multipart_upload(self, key: str, upload_id: str, parts: Sequence[PartInfo]) -> PutResult:
        ordered = sorted(parts, key=lambda p: p.part_number)
        body = cosxml.build_complete(ordered)
        md5, _, sha = await self._digests(body)
        headers = {"content-type": "application/xml"}
        if self._config.content_md5:
            headers["content-md5"] = md5
        call = _Call("complete_multipart_upload", "POST", key, params=[("uploadId", upload_id)],
                     headers=headers, body=body, payload_sha256=sha, timeout=self._complete_timeout)
        expected = self._combined_crc(ordered)
        reply = await self._send(call, check_200=True, accept_after_retry={"NoSuchUpload"})
        if reply.error is not None:
            # An earlier attempt may have completed the upload: accept what the object proves.
            meta = await self.head_object(key)
            sizes = [p.size_bytes for p in ordered]
            size_ok = None in sizes or meta.size_bytes == sum(sizes)  # type: ignore[arg-type]
            if expected is not None and meta.crc64 is not None:
                done = meta.crc64 == expected and size_ok
            else:
                done = meta.etag.endswith(f"-{len(ordered)}") and size_ok
            if done:
                return PutResult(etag=meta.etag, crc64=meta.crc64)
            raise reply.error
        result = self._parse(call, cosxml.parse_complete_result, reply.body)
        server_crc = crc64.parse_header(reply.response.headers.get("x-cos-hash-crc64ecma"))
        if server_crc is None:
            server_crc = result.crc64
        self._compare_crc(call, server_crc, expected)
        done = PutResult(etag=result.etag, crc64=server_crc if server_crc is not None else expected)
        if self._dialect.name == "s3":
            return await self._committed_version(call, done, ordered)
        return done

    async def _committed_version(self, call: _Call, done: PutResult, parts: Sequence[PartInfo]) -> PutResult:
        """After Complete on an S3 server: the version HEAD shows. The ETag a Complete answers
        need not be the one HEAD and GET answer for the object (rclone answers `<md5>-N`, then
        the whole object's MD5), and reads pin the version by ETag (If-Match), so the
        committed version is HEAD's, if HEAD shows our object (its size is the parts'). If
        not (another writer's object landed in between, or HEAD failed), Complete's ETag
        stays: the mount then sees the other version as another writer's, which it is."""
        sizes = [p.size_bytes for p in parts]
        try:
            meta = await self.head_object(call.key or "")
        except CosfsError as exc:
            log.warning("%s: could not HEAD the completed object (%s); keeping ETag %s from Complete",
                        call.what(), exc, done.etag)
            return done
        if None not in sizes and meta.size_bytes != sum(sizes):  # type: ignore[arg-type]
            log.warning("%s: the object after Complete has %d bytes, the parts %d: another writer's; "
                        "keeping ETag %s from Complete", call.what(), meta.size_bytes,
                        sum(sizes), done.etag)  # type: ignore[arg-type]
            return done
        if meta.crc64 is not None and done.crc64 is not None and meta.crc64 != done.crc64:
            log.warning("%s: the object after Complete has another CRC64: another writer's; keeping ETag %s "
                        "from Complete", call.what(), done.etag)
            return done
        if meta.etag != done.etag:
            log.debug("%s: Complete answered ETag %s, HEAD %s: the version is HEAD's",
                      call.what(), done.etag, meta.etag)
        return PutResult(etag=meta.etag or done.etag, crc64=done.crc64, last_modified_s=meta.last_modified_s)

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        call = _Call("abort_multipart_upload", "DELETE", key, params=[("uploadId", upload_id)])
        await self._send(call, accept_after_retry={"NoSuchUpload"})

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        parts: list[PartInfo] = []
        marker = 0
        while True:
            params = [("max-parts", "1000")]
            if marker:
                params.append(("part-number-marker", str(marker)))
            params.append(("uploadId", upload_id))
            call = _Call("list_parts", "GET", key, params=params)
            reply = await self._send(call)
            page = self._parse(call, cosxml.parse_list_parts, reply.body)
            parts.extend(page.parts)
            if not page.is_truncated:
                return parts
            next_marker = page.next_part_number_marker or (page.parts[-1].part_number if page.parts else 0)
            if next_marker <= marker:
                raise ProtocolError(f"{call.what()}: part listing is truncated but does not advance")
            marker = next_marker

    async def list_multipart_uploads(self, prefix: str = "") -> list[UploadInfo]:
        uploads: list[UploadInfo] = []
        key_marker = upload_id_marker = ""
        while True:
            params = [("encoding-type", "url")]
            if key_marker:
                params.append(("key-marker", key_marker))
            params.append(("max-uploads", "1000"))
            if prefix:
                params.append(("prefix", prefix))
            if upload_id_marker:
                params.append(("upload-id-marker", upload_id_marker))
            params.append(("uploads", ""))
            call = _Call("list_multipart_uploads", "GET", None, params=params)
            reply = await self._send(call)
            page = self._parse(call, cosxml.parse_list_uploads, reply.body)
            uploads.extend(page.uploads)
            if not page.is_truncated:
                return uploads
            next_key = page.next_key_marker or (page.uploads[-1].key if page.uploads else "")
            next_id = page.next_upload_id_marker or (page.uploads[-1].upload_id if page.uploads else "")
            if (next_key, next_id) <= (key_marker, upload_id_marker):
                raise ProtocolError(f"{call.what()}: upload listing is truncated but does not advance")
            key_marker, upload_id_marker = next_key, next_id


class _EmptyStream:
    def __aiter__(self) -> _EmptyStream:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration


class _ObjectStream:
    """The chunks of a GET body: exactly the bytes asked for, or an error.

    A 206 must carry the range asked for (`_span_problem`), else it is refused. A 200 with a
    Content-Range naming that range is the range too; a 200 without one (or naming the whole
    object) is the whole object: a ranged read takes its slice from it (RFC 9110 lets a server
    ignore Range) and stops reading once the slice is complete (`_reply_shape`). A broken
    connection resumes with a ranged GET pinned to the ETag (If-Match), so a stream never mixes
    two versions; the whole-object CRC64 is checked when the last byte has been delivered.

    Invariant: `_delivered` bytes of [_first, _last] have been handed out and `_crc` covers
    them; the current body holds `_skip` bytes before the next one to hand out and `_left`
    bytes in all (None: unknown); `_exact` when it is the range (a 206, or a 200 whose
    Content-Range names it), where a byte too many is an error.
    """

    def __init__(self, client: CosClient, call: _Call, response: httpx.Response,
                 byte_range: tuple[int, int] | None) -> None:
        self._client = client
        self._call = call
        self._resumes = 0
        self._delivered = 0
        self._crc = 0
        self._done = False
        self._first, self._last = byte_range if byte_range is not None else (0, None)
        self._check: int | None = None
        length = _content_length(response)
        span, problem = _reply_shape(response, self._first, self._last, length)
        if problem:
            self._refuse(problem, response.status_code)
        if span is not None:
            _, self._last, total = span
            self.meta = client._meta(call.key or "", response, size=total if total is not None else self._last + 1)
        else:
            if length is None:  # a whole object named by its Content-Range (rclone), streamed
                whole = _content_range(response.headers.get("content-range"))
                length = whole[2] if whole is not None else None
            self.meta = client._meta(call.key or "", response, size=length or 0)
            if length is not None:
                self._last = length - 1 if self._last is None else min(self._last, length - 1)
            if byte_range is None:
                self._check = self.meta.crc64
        self._expected = None if self._last is None else max(0, self._last - self._first + 1)
        self._use(response, exact=span is not None)

    def _use(self, response: httpx.Response, *, exact: bool) -> None:
        """Read on from `response`: the range starting at the next byte (`exact`: a 206, or a
        200 whose Content-Range names it), or a whole object."""
        self._response = response
        self._chunks = _raw_chunks(response)
        self._exact = exact
        self._skip = 0 if self._exact else self._first + self._delivered
        self._left = _content_length(response)
        if self._left is None and self._exact and self._expected is not None:
            self._left = self._expected - self._delivered

    def _refuse(self, problem: str, status: int) -> NoReturn:
        raise self._client._final(self._call, ProtocolError(f"{self._call.what()}: {problem}"),
                                  None, self._resumes + 1, status)

    def __aiter__(self) -> _ObjectStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            if self._expected is not None and self._delivered >= self._expected:
                await self._end_body()
                self._finish()
                break
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                if self._expected is None:
                    self._finish()
                    break
                await self._resume(_Truncated(f"body ended after {self._delivered} of {self._expected} bytes"))
                continue
            except httpx.TransportError as exc:
                if self._expected is None:
                    raise TransientError(f"{self._call.what()}: {_describe(exc)}") from exc
                await self._resume(exc)
                continue
            if self._left is not None:
                self._left -= len(chunk)
            if self._skip:
                dropped = min(self._skip, len(chunk))
                chunk = chunk[dropped:]
                self._skip -= dropped
            if self._expected is not None and len(chunk) > self._expected - self._delivered:
                if self._exact:
                    self._refuse("body longer than its Content-Range", 206)
                chunk = chunk[: self._expected - self._delivered]
            if not chunk:
                continue
            self._delivered += len(chunk)
            if self._check is not None:
                self._crc = crc64.update(self._crc, chunk)
            return chunk
        raise StopAsyncIteration

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._check is not None and self._crc != self._check:
            raise self._client._final(
                self._call,
                IntegrityError(f"{self._call.what()}: CRC64 mismatch: server says {self._check}, "
                               f"stream has {self._crc}"),
                None, 1, 200,
            )

    async def _end_body(self) -> None:
        """Everything asked for has been delivered. A short rest of the body is read (the
        connection can then be reused; in a 206 any byte there is one too many); a long rest
        (a whole object sent for a slice) is not read at all: the connection is closed."""
        if self._left is not None and self._left <= DRAIN_LIMIT_BYTES:
            if await self._drain(DRAIN_LIMIT_BYTES) and self._exact:
                self._refuse("body longer than its Content-Range", 206)
        await self._close_current()

    async def _resume(self, exc: BaseException) -> None:
        client = self._client
        call = self._call
        if not client._policy.should_retry(self._resumes):
            raise client._final(call, TransientError(f"{call.what()}: body broken ({_describe(exc)})"),
                                exc, self._resumes + 1, self._response.status_code)
        delay = client._policy.delay_s(self._resumes, client._rng)
        level = logging.DEBUG if self._resumes < QUIET_RETRIES else logging.WARNING
        log.log(level, "%s: body broken after %d bytes (%s); resuming in %.2f s",
                call.what(), self._delivered, _describe(exc), delay)
        self._resumes += 1
        await trio.sleep(delay)
        await self._close_current()
        assert self._last is not None
        start = self._first + self._delivered
        headers = dict(call.headers)
        headers["range"] = _bytes_spec((start, self._last))
        if self.meta.etag:
            headers["if-match"] = _quote_etag(self.meta.etag)
        reply = await client._send(_Call(call.op, "GET", call.key, headers=headers), stream=True)
        response = reply.response
        status = response.status_code
        span: tuple[int, int, int | None] | None = None
        if status in (200, 206):
            span, problem = _reply_shape(response, start, self._last, _content_length(response))
        else:
            problem = f"status {status}"
        if problem:
            await response.aclose()
            self._refuse(f"resuming at byte {start}: {problem}", status)
        self._use(response, exact=span is not None)

    async def _close_current(self) -> None:
        """Close the current response, read or not. httpx reads a body through a chain of
        async generators that end cleanly only by running to their end; trio warns about each
        one abandoned half-way when the garbage collector finds it. Once the connection is
        closed, a read ends the body or fails at once (after at most the bytes already
        buffered), which unwinds the whole chain."""
        await self._response.aclose()
        with contextlib.suppress(Exception):
            for _ in range(UNWIND_READS):
                await self._chunks.__anext__()
        await self._chunks.aclose()

    async def _drain(self, limit: int) -> int:
        """Read the rest of the current body, stopping past `limit` bytes (httpx's chunk
        generators end normally when read to the end; trio warns about async generators
        abandoned half-way). The number of bytes read."""
        seen = 0
        try:
            while seen <= limit:
                seen += len(await self._chunks.__anext__())
        except (StopAsyncIteration, httpx.TransportError):
            pass
        return seen

    async def aclose(self) -> None:
        if not self._done and self._left is not None and self._left <= DRAIN_LIMIT_BYTES:
            await self._drain(DRAIN_LIMIT_BYTES)
        await self._close_current()
