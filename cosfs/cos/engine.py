"""`RequestEngine`: sends one COS request (a `Call`) until it has an answer, or the one
exception that answer means. The operations (`cosfs.cos.client`) and object streams
(`cosfs.cos.streams`) send everything through it.

One transport per engine (`cosfs.cos.wire.ThreadedTransport`, or httpx's own behind a proxy),
with a bounded connection pool, called directly with each request. Every attempt of a
request is signed again with a fresh time (and fresh credentials from the provider).
TLS (CA bundle, hostname check, client certificate, ciphers), the proxy and the local address
all come from `config`: httpx reads no environment (trust_env=False). Bodies are read raw (no
content decoding: `Accept-Encoding: identity`, and an object stored with `Content-Encoding:
gzip` comes back byte for byte).

Retries (policy in `cosfs.cos.retry`): 5xx, SlowDown, RequestTimeout, transport errors and
truncated bodies are retried with jittered exponential backoff, up to `config.retries` more
attempts; an expired signature or `RequestTimeTooSkewed` is re-signed once (the clock offset is
corrected from the server's `Date` header); an expired/invalid session token makes the engine
call `credentials.refresh()` once. Other 4xx fail at once. Retries are logged at DEBUG, from
the third attempt on at WARNING, and a finally failed request gets one log line (WARNING, or
the exception's own level: DEBUG for not-found) with op, key, status, code and RequestId.
An `<Error>` inside a 200 (where the caller asks for the check) is that error, with the status
COS gives its code (`cosfs.cos.rules.status_for`).

Versions: a reply to a request with If-Match whose ETag is another one (a server that
ignores If-Match) is `Stale`, as a 412 would be, never data.

Dialects (`endpoint.Dialect`): requests are built with `x-cos-*` names; in the S3 dialect
every one with an S3 equivalent is sent as `x-amz-*`. A server that does not know the copy
headers takes a copy for an upload of its empty body, over the destination: so a copy whose
headers the dialect cannot express is never sent (Unsupported).

Secrets: Authorization and the session token live only in request headers; exceptions and
log records carry op, key, status, code, message and RequestId, never headers or keys.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import hashlib
import itertools
import logging
import random
import ssl
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, TypeVar

import httpcore
import httpx
import trio

from cosfs.cos import auth, crc64, rules
from cosfs.cos import xml as cosxml
from cosfs.cos.codecs import (
    content_length,
    etag_of,
    http_time,
    ignored_if_match,
    md5_b64,
    reply_headers,
)
from cosfs.cos.endpoint import COPY_SUFFIXES, Addressing, addressing_for, dialect_for
from cosfs.cos.outcomes import Decision, cos_error
from cosfs.cos.retry import RetryPolicy, classify_status, is_transient_exception
from cosfs.cos.wire import ThreadedTransport
from cosfs.errors import (
    ConfigError,
    CosError,
    CosfsError,
    NotFound,
    ProtocolError,
    Stale,
    TransientError,
    Unsupported,
)

# Through a proxy, httpx's transport reads a socket 64 KiB at a time, and every read costs a
# trip through h11, httpcore and httpx in Python; larger reads cut that per-byte overhead.
httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = 1024 * 1024

if TYPE_CHECKING:
    from cosfs.config import CosConfig
    from cosfs.credentials import CredentialProvider

# The client's log: operators filter on "cosfs.cos.client", whichever module of the client
# (operations, engine, streams) writes the record.
log = logging.getLogger("cosfs.cos.client")
wire_log = logging.getLogger("cosfs.http")  # curldbg: one line per request and its status

# Bodies at least this big are hashed in a worker thread (hashlib releases the GIL).
THREAD_HASH_BYTES = 1024 * 1024
# Request bodies up to this size are sent on the trio thread (see `_send_attempts`).
INLINE_BODY_BYTES = 256 * 1024
# Retries up to this attempt number are logged at DEBUG, later ones at WARNING.
QUIET_RETRIES = 2

_T = TypeVar("_T")


@dataclasses.dataclass
class Call:
    """One logical request (attempts share it)."""

    op: str
    method: str
    key: str | None
    params: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # lower-case names
    body: bytes = b""
    payload_sha256: str | None = None
    timeout: httpx.Timeout | None = None
    # Request body streams of this call's attempts, released when the call ends (see send).
    streams: list[BodyStream] = dataclasses.field(default_factory=list)

    def what(self) -> str:
        return f"{self.op} {self.key!r}" if self.key is not None else self.op


# Upper bounds (seconds) of the latency histogram's buckets, as Prometheus clients use them
# (an observation counts in every bucket whose bound it does not exceed; +Inf is `count`).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclasses.dataclass
class LatencyHistogram:
    """Durations of one operation's attempts, in LATENCY_BUCKETS_S: enough for Prometheus'
    histogram_quantile (p50, p99) without keeping each duration. `counts[i]` holds the
    observations in (bound i-1, bound i]; the last slot those above the last bound."""

    counts: list[int] = dataclasses.field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    sum_s: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.sum_s += seconds
        self.count += 1

    def buckets(self) -> list[tuple[float, int]]:
        """(bound, observations at most it) for each finite bound, cumulative as Prometheus
        exposes them; the +Inf bucket is `count`."""
        return list(zip(LATENCY_BUCKETS_S, itertools.accumulate(self.counts[:-1])))

    def copy(self) -> LatencyHistogram:
        return LatencyHistogram(list(self.counts), self.sum_s, self.count)


@dataclasses.dataclass
class RequestStats:
    """What the client did, for `cosfs status` and metrics, by operation: attempts
    (`requests`), `retries`, `errors`, and `latency`; body bytes sent and received.

    `errors` counts calls that end in an exception for their caller, whatever sent them
    (the engine, or a stream or operation that refuses a reply through `final_error`),
    except a 404 to a HEAD or GET: "no such object" is the answer a lookup of a new name
    expects (creating 20 files asks 20 of them), not a fault. A code the caller accepts
    (`accept_codes`) is an answer too.

    `bytes_in` counts reply body bytes as they are read: a HEAD's Content-Length announces
    a body that never comes, and a streamed GET may be closed before its end.
    `latency` times each attempt from sending it to its reply's head (or its transport
    failure): the service's answer time plus the upload of any request body, without the
    download of a reply body (`bytes_in` measures that) or the backoff between retries.
    """

    requests: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    retries: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    latency: collections.defaultdict = dataclasses.field(
        default_factory=lambda: collections.defaultdict(LatencyHistogram))
    bytes_out: int = 0
    bytes_in: int = 0

    def count_failure(self, call: Call, failure: CosfsError) -> None:
        if not (isinstance(failure, NotFound) and call.method in ("HEAD", "GET")):
            self.errors[call.op] += 1


@dataclasses.dataclass
class Reply:
    """How a call ended without an exception."""

    response: httpx.Response
    body: bytes | None  # None for a stream left open
    attempts: int
    error: CosError | None = None  # set when an accepted error code ended the call


class BodyStream(httpx.AsyncByteStream):
    """A request body of one bytes chunk, iterated without an async generator: when a send
    fails half-way, httpx abandons the iterator, and trio warns about abandoned generators.

    httpx's request and response objects reference each other, so a finished request lives
    until the cyclic garbage collector runs, which counts objects, not bytes: `release`
    drops the body at once, or every part of a big upload would linger in memory."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def release(self) -> None:
        self._body = b""

    def __aiter__(self) -> _OneChunk:
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


class _CountedBody(httpx.AsyncByteStream):
    """A reply body that adds each chunk read to `stats.bytes_in`. Its own iterator, not an
    async generator (see BodyStream): a stream closed half-way abandons it."""

    def __init__(self, inner: httpx.AsyncByteStream, stats: RequestStats) -> None:
        self._inner = inner
        self._stats = stats
        self._chunks: AsyncIterator[bytes] | None = None

    def __aiter__(self) -> _CountedBody:
        self._chunks = self._inner.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        assert self._chunks is not None
        chunk = await self._chunks.__anext__()
        self._stats.bytes_in += len(chunk)
        return chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class Truncated(Exception):
    """A body shorter than its Content-Length."""


async def raw_chunks(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """The body as sent (no content decoding). A response built in memory with bytes content
    (httpx.MockTransport) has been read already; its content is those bytes."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


def describe(exc: BaseException) -> str:
    """An exception in one short line for messages and logs: its type and (cut) text."""
    text = str(exc).strip()
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def retry_log_level(attempt: int) -> int:
    """The level a retry after failed attempt `attempt` (0-based) is logged at: the first few
    are routine (DEBUG), the rest worth an operator's eye (WARNING)."""
    return logging.DEBUG if attempt < QUIET_RETRIES else logging.WARNING


async def compute_hash(body: bytes, compute: Callable[[], _T]) -> _T:
    """`compute()`, a hash of `body`: in a worker thread when `body` is large, so a big upload
    does not stall the trio loop."""
    if len(body) >= THREAD_HASH_BYTES:
        return await trio.to_thread.run_sync(compute)
    return compute()


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


def _transport(config: CosConfig) -> httpx.AsyncBaseTransport:
    """Bodies move through worker threads (cosfs.cos.wire); httpx's own transport is kept
    for a proxy. config.py is the only reader of the environment: proxies and CA bundles
    named there arrive in `config`, so httpx itself must not look (trust_env=False)."""
    if config.proxy:
        limits = httpx.Limits(max_connections=config.max_connections,
                              max_keepalive_connections=config.max_connections)
        return httpx.AsyncHTTPTransport(verify=tls_context(config), limits=limits, proxy=config.proxy,
                                        local_address=config.local_address, trust_env=False)
    return ThreadedTransport(tls=tls_context(config), max_connections=config.max_connections,
                             local_address=config.local_address)


def _timeout(config: CosConfig, *, read_s: float) -> httpx.Timeout:
    """The timeouts of a request whose reply may take `read_s` seconds to come."""
    return httpx.Timeout(connect=config.connect_timeout_s, read=read_s, write=config.read_timeout_s,
                         pool=config.read_timeout_s)


class RequestEngine:
    """Sends calls to one bucket: signs each attempt, retries, and maps failures to exceptions.

    State: the transport (its pool), a clock offset learnt from `RequestTimeTooSkewed`
    answers, the header names already noted as foreign to the dialect, and `stats`. All are
    safe to share between trio tasks.
    """

    def __init__(
        self,
        config: CosConfig,
        credentials: CredentialProvider,
        *,
        clock: Callable[[], float],
        transport: httpx.AsyncBaseTransport | None,
        rng: random.Random,
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._clock = clock
        self._clock_offset_s = 0.0
        self._rng = rng
        self.stats = RequestStats()
        self.addressing: Addressing = addressing_for(
            config.bucket, config.endpoint_url, path_style=config.path_style, region=config.region
        )
        self._policy = RetryPolicy(config.retries, config.retry_base_delay_s, config.retry_max_delay_s)
        self._timeout = _timeout(config, read_s=config.read_timeout_s)
        # Complete answers only once COS has joined the parts: its reply may take much longer.
        self.complete_timeout = _timeout(config, read_s=config.complete_timeout_s)
        # Requests go straight to the transport: httpx's AsyncClient around it would add
        # nothing we use (no redirects, cookies, auth flows or default headers: every request
        # is built and signed whole in `_build`) and cost ~90 us of the trio thread per request.
        self.transport = transport or _transport(config)
        # Where small exchanges go straight to our own transport (None: through httpx's).
        addr = self.addressing
        self._origin = ((addr.scheme, addr.host, addr.port or (443 if addr.scheme == "https" else 80))
                        if isinstance(self.transport, ThreadedTransport) else None)
        self._origin_url = f"{addr.scheme}://{addr.host_header}"
        self.dialect = dialect_for(config.signature)
        self._foreign_noted: set[str] = set()

    async def aclose(self) -> None:
        await self.transport.aclose()

    def retry_delay_s(self, attempt: int) -> float | None:
        """The backoff before another attempt after failed attempt `attempt` (0-based), or
        None when the policy allows no more."""
        if not self._policy.should_retry(attempt):
            return None
        return self._policy.delay_s(attempt, self._rng)

    @typing.overload
    async def digests(self, body: bytes) -> tuple[str, int, str | None]: ...

    @typing.overload
    async def digests(self, body: bytes, *, md5: bool) -> tuple[str | None, int, str | None]: ...

    async def digests(self, body: bytes, *, md5: bool = True) -> tuple[str | None, int, str | None]:
        """(Content-MD5 unless not `md5`, CRC64, SHA-256 hex if SigV4) of a body, in a thread
        when large."""
        sigv4 = self._config.signature == "sigv4"

        def compute() -> tuple[str | None, int, str | None]:
            return (md5_b64(body) if md5 else None, crc64.crc64(body),
                    hashlib.sha256(body).hexdigest() if sigv4 else None)

        return await compute_hash(body, compute)

    async def send(self, call: Call, **options) -> Reply:
        """Send `call` (see `_send_attempts` for `options`); its request bodies are released
        when it ends, however it ends."""
        self._check_dialect(call)
        try:
            return await self._send_attempts(call, **options)
        finally:
            for body_stream in call.streams:
                body_stream.release()
            call.streams.clear()

    def final_error(
        self, call: Call, failure: CosfsError, cause: BaseException | None, tries: int, status: int | None
    ) -> CosfsError:
        """The exception that ends `call` (saying how many attempts it took), logged and
        counted (`RequestStats`) once."""
        if tries > 1:
            suffix = f"gave up after {tries} attempts"
            if isinstance(failure, CosError):
                message = f"{failure.message} ({suffix})" if failure.message else suffix
                failure = cos_error(failure.status, failure.code, message, failure.request_id, failure.resource)
            elif isinstance(failure, TransientError):
                failure = TransientError(f"{failure} ({suffix})")
        failure.__cause__ = cause
        self.stats.count_failure(call, failure)
        code = getattr(failure, "code", "-")
        request_id = getattr(failure, "request_id", "") or "-"
        log.log(failure.log_level, "%s failed: status=%s code=%s RequestId=%s: %s",
                call.what(), status, code, request_id, failure)
        return failure

    # --- one attempt ------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() + self._clock_offset_s

    def _signed(self, call: Call, creds: auth.Credentials | None) -> tuple[str, dict[str, str]]:
        """(raw target, headers) of one attempt, signed with a fresh time; unsigned when
        `creds` is None (public_bucket)."""
        addr = self.addressing
        headers: dict[str, str] = {"host": addr.host_header}
        headers.update(self.dialect.outgoing(call.headers)[0])
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
        return raw_path + ("?" + query if query else ""), headers

    def _build(self, call: Call, creds: auth.Credentials | None) -> httpx.Request:
        """The signed httpx request of one attempt (see `_signed`)."""
        target, headers = self._signed(call, creds)
        addr = self.addressing
        url = httpx.URL(scheme=addr.scheme, host=addr.host, port=addr.port, raw_path=target.encode("ascii"))
        stream = BodyStream(call.body)
        call.streams.append(stream)
        return httpx.Request(call.method, url, headers=headers, stream=stream,
                             extensions={"timeout": (call.timeout or self._timeout).as_dict()})

    async def _timed_exchange(self, call: Call, creds: auth.Credentials | None, inline: bool) -> httpx.Response:
        """`_exchange`, its time to the reply's head (or to its transport failure) recorded in
        `stats.latency`."""
        started = trio.current_time()
        try:
            response = await self._exchange(call, creds, inline)
        except httpx.TransportError:
            self.stats.latency[call.op].observe(trio.current_time() - started)
            raise
        self.stats.latency[call.op].observe(trio.current_time() - started)
        return response

    def _count_received(self, response: httpx.Response) -> None:
        """Count a streamed body's bytes in `stats.bytes_in` as its reader takes them (one
        built in memory, already read, at once)."""
        if response.is_stream_consumed:
            self.stats.bytes_in += len(response.content)
        else:
            assert isinstance(response.stream, httpx.AsyncByteStream)  # an async transport's reply
            response.stream = _CountedBody(response.stream, self.stats)

    async def _exchange(self, call: Call, creds: auth.Credentials | None, inline: bool) -> httpx.Response:
        """One attempt: small exchanges whole on the trio thread (`ThreadedTransport.exchange`),
        others as an httpx request through the transport."""
        if inline:
            transport = self.transport
            assert isinstance(transport, ThreadedTransport) and self._origin is not None  # as `inline` requires
            target, headers = self._signed(call, creds)
            timeout = call.timeout or self._timeout
            response = await transport.exchange(
                self._origin, call.method, target, headers, call.body, connect_s=timeout.connect, read_s=timeout.read,
                write_s=timeout.write)
            if wire_log.isEnabledFor(logging.INFO):
                wire_log.info("%s %s%s -> %d %s", call.method, self._origin_url, target, response.status_code,
                              response.reason_phrase)
            return response
        request = self._build(call, creds)
        response = await self.transport.handle_async_request(request)
        response.request = request
        if wire_log.isEnabledFor(logging.INFO):
            wire_log.info("%s %s -> %d %s", request.method, request.url, response.status_code,
                          response.reason_phrase)
        return response

    async def _read_body(self, response: httpx.Response, method: str) -> bytes:
        chunks = [chunk async for chunk in raw_chunks(response)]
        body = b"".join(chunks)
        self.stats.bytes_in += len(body)
        length = content_length(response)
        if (
            method != "HEAD"
            and response.status_code not in (204, 304)
            and length is not None
            and len(body) < length
        ):
            raise Truncated(f"body of {len(body)} bytes, Content-Length {length}")
        return body

    def _synthesised_code(self, status: int, call: Call) -> str:
        if status == 404:
            return "NoSuchBucket" if call.key is None else "NoSuchKey"
        return {
            400: "BadRequest", 401: "AccessDenied", 403: "AccessDenied", 405: "MethodNotAllowed",
            409: "Conflict", 411: "MissingContentLength", 412: "PreconditionFailed", 416: "InvalidRange",
            500: "InternalError", 501: "NotImplemented", 503: "ServiceUnavailable",
        }.get(status, f"HTTP{status}")

    def _error(self, call: Call, response: httpx.Response, body: bytes) -> CosError:
        info = cosxml.parse_error(body) if body else None
        status = response.status_code
        request_id = (info.request_id if info else "") or self.dialect.header(reply_headers(response), "request-id")
        code = ((info.code if info else "") or self.dialect.header(reply_headers(response), "error-code")
                or self._synthesised_code(status, call))
        message = info.message if info else ""
        if not message and code == "NoSuchBucket":
            message = f"no such bucket {self._config.bucket}"
        resource = (info.resource if info else "") or (call.key if call.key is not None else self._config.bucket)
        return cos_error(status, code, message, request_id, resource)

    def _error_in_200(self, call: Call, response: httpx.Response, body: bytes) -> CosError | None:
        info = cosxml.error_in_body(body)
        if info is None:
            return None
        status = rules.status_for(info.code)
        request_id = info.request_id or self.dialect.header(reply_headers(response), "request-id")
        message = (info.message + " " if info.message else "") + "(error inside a 200 reply)"
        return cos_error(status, info.code or "InternalError", message, request_id, info.resource or (call.key or ""))

    def _learn_clock(self, response: httpx.Response) -> None:
        server_s = http_time(reply_headers(response).get("date"))
        if server_s:
            self._clock_offset_s = server_s - self._clock()
            log.info("server clock differs by %.0f s; signing with the server's time", self._clock_offset_s)

    def _check_dialect(self, call: Call) -> None:
        """Before anything is sent: a copy whose headers the dialect cannot express is
        refused (a server that does not know a copy header answers the PUT as an upload of
        the empty body, over the destination). Other requests carry such a header as it is
        (one INFO line per name): at worst the server ignores it."""
        sent, foreign = self.dialect.outgoing(call.headers)
        if "x-cos-copy-source" in call.headers:
            wrong = [name for name in sent if name.startswith(("x-cos-", "x-amz-"))
                     and name[6:] in COPY_SUFFIXES and not name.startswith(self.dialect.prefix)]
            if foreign or wrong or self.dialect.prefix + "copy-source" not in sent:
                raise self.final_error(call, Unsupported(
                    f"{call.what()}: refused to send a copy the {self.dialect.name.upper()} dialect cannot "
                    f"express (headers {sorted(foreign + wrong)}): a server that ignores them would store an "
                    f"empty object instead"), None, 0, None)
            return
        for name in foreign:
            if name not in self._foreign_noted:
                self._foreign_noted.add(name)
                log.info("%s has no %s equivalent; sent as it is", name, self.dialect.name.upper())

    async def _send_attempts(
        self,
        call: Call,
        *,
        stream: bool = False,
        check_200: bool = False,
        accept_codes: frozenset[str] | set[str] = frozenset(),
        accept_after_retry: frozenset[str] | set[str] = frozenset(),
    ) -> Reply:
        """Send `call` with retries; return the reply or raise the mapped exception.

        `stream` leaves a 2xx body unread (the caller reads and closes it);
        `accept_codes` end the call with `Reply.error` set instead of raising;
        `accept_after_retry` likewise, but only after an earlier attempt may have taken effect.
        `check_200` treats an `<Error>` body in a 2xx reply as that error.
        """
        # Small exchanges cost less on the trio thread than a worker-thread trip; object data
        # (streamed GETs, whole-object GETs, large bodies) goes through the worker threads.
        inline = (self._origin is not None and not stream and len(call.body) <= INLINE_BODY_BYTES
                  and not (call.method == "GET" and call.key and not call.params))
        attempt = 0  # failed attempts that were followed by backoff
        tries = 0
        resigned = refreshed = False
        while True:
            tries += 1
            self.stats.requests[call.op] += 1
            self.stats.bytes_out += len(call.body)
            creds = await self._credentials.get()
            status: int | None = None
            cause: BaseException | None = None
            failure: CosfsError
            try:
                response = await self._timed_exchange(call, creds, inline)
            except httpx.TransportError as exc:
                if not is_transient_exception(exc):
                    broken = ProtocolError(f"{call.what()}: {describe(exc)}")
                    self.stats.count_failure(call, broken)
                    raise broken from exc
                cause = exc
                failure = TransientError(f"{call.what()}: {describe(exc)}")
                decision = Decision.RETRY
            else:
                status = response.status_code
                ok = 200 <= status < 300 or status == 304
                if ok and ignored_if_match(call.headers.get("if-match"), etag_of(response)):
                    await response.aclose()
                    raise self.final_error(call, Stale(
                        f"{call.what()}: the server ignored If-Match {call.headers['if-match']} and answered "
                        f"ETag {etag_of(response)!r}: the version asked for is gone"), None, tries, status)
                if ok and stream:
                    self._count_received(response)
                    return Reply(response, None, tries)
                try:
                    body = await self._read_body(response, call.method)
                except (httpx.TransportError, Truncated) as exc:
                    cause = exc
                    failure = TransientError(f"{call.what()}: truncated response body ({describe(exc)})")
                    decision = Decision.RETRY
                else:
                    error = self._error_in_200(call, response, body) if ok and check_200 else None
                    if ok and error is None:
                        log.debug("%s -> %d (try %d)", call.what(), status, tries)
                        return Reply(response, body, tries)
                    if error is None:
                        error = self._error(call, response, body)
                    if error.code in accept_codes or (tries > 1 and error.code in accept_after_retry):
                        log.debug("%s -> %d %s (accepted)", call.what(), status, error.code)
                        return Reply(response, body, tries, error)
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
            delay = self.retry_delay_s(attempt) if decision is Decision.RETRY else None
            if delay is not None:
                log.log(retry_log_level(attempt), "%s failed (try %d: status=%s code=%s %s); retrying in %.2f s",
                        call.what(), tries, status, code or "-", describe(failure), delay)
                self.stats.retries[call.op] += 1
                await trio.sleep(delay)
                attempt += 1
                continue
            raise self.final_error(call, failure, cause, tries, status)
