"""GET bodies as streams of chunks: exactly the bytes asked for, or an error.

Range reads: a 206 must be exactly the range asked for (shorter only at the object's end),
Content-Range and body length alike, or it is refused (ProtocolError, EIO), so no cache
keeps other bytes as the ones asked for. A server that ignores Range (RFC 9110 allows it)
answers 200 with the whole object: the slice is taken from it as it streams, and the rest is
not read. A 200 that carries a Content-Range (rclone answers ranged GETs so) is the range when
the Content-Range names exactly the bytes asked for, the whole object when it names all of it,
and refused otherwise (`codecs.reply_shape`). Whole-object streams are checked against
`x-cos-hash-crc64ecma`; broken ones resume pinned to their version (`ObjectStream`).

A stream sends and fails only through the `RequestEngine` it is given, so its resumes, log
lines and stats are the client's.
"""

from __future__ import annotations

import contextlib
import logging
from typing import NoReturn

import httpx
import trio

from cosfs.cos import crc64
from cosfs.cos.codecs import (bytes_spec, content_length, content_range, object_meta, quote_etag, reply_headers,
                               reply_shape)
from cosfs.cos.engine import Call, RequestEngine, Truncated, describe, raw_chunks, retry_log_level
from cosfs.errors import IntegrityError, ProtocolError, TransientError

# The client's log: operators filter on "cosfs.cos.client", whichever module of the client
# (operations, engine, streams) writes the record.
log = logging.getLogger("cosfs.cos.client")

# A stream closed with at most this much left unread is read to its end (cheaper than a new
# connection, and httpx's generators then end cleanly); longer ones are cut off.
DRAIN_LIMIT_BYTES = 256 * 1024
# Reads that unwind a body's generators after its connection was closed (see _close_current).
UNWIND_READS = 3


class EmptyStream:
    """The chunks of an empty read (a range at or past the object's end): none."""

    def __aiter__(self) -> EmptyStream:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration


class ObjectStream:
    """The chunks of a GET body: exactly the bytes asked for, or an error.

    A 206 must carry the range asked for (`span_problem`), else it is refused. A 200 with a
    Content-Range naming that range is the range too; a 200 without one (or naming the whole
    object) is the whole object: a ranged read takes its slice from it (RFC 9110 lets a server
    ignore Range) and stops reading once the slice is complete (`reply_shape`). A broken
    connection resumes with a ranged GET pinned to the ETag (If-Match), so a stream never mixes
    two versions; the whole-object CRC64 is checked when the last byte has been delivered.

    Invariant: `_delivered` bytes of [_first, _last] have been handed out and `_crc` covers
    them; the current body holds `_skip` bytes before the next one to hand out and `_left`
    bytes in all (None: unknown); `_exact` when it is the range (a 206, or a 200 whose
    Content-Range names it), where a byte too many is an error.
    """

    def __init__(self, engine: RequestEngine, call: Call, response: httpx.Response,
                 byte_range: tuple[int, int] | None) -> None:
        self._engine = engine
        self._call = call
        self._resumes = 0
        self._delivered = 0
        self._crc = 0
        self._done = False
        self._first: int
        self._last: int | None
        self._first, self._last = byte_range if byte_range is not None else (0, None)
        self._check: int | None = None
        key = call.key or ""
        length = content_length(response)
        span, problem = reply_shape(response, self._first, self._last, length)
        if problem:
            self._refuse(problem, response.status_code)
        if span is not None:
            _, self._last, total = span
            self.meta = object_meta(key, response, engine.dialect, size=total if total is not None else self._last + 1)
        else:
            if length is None:  # a whole object named by its Content-Range (rclone), streamed
                whole = content_range(reply_headers(response).get("content-range"))
                length = whole[2] if whole is not None else None
            self.meta = object_meta(key, response, engine.dialect, size=length or 0)
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
        self._chunks = raw_chunks(response)
        self._exact = exact
        self._skip = 0 if self._exact else self._first + self._delivered
        self._left = content_length(response)
        if self._left is None and self._exact and self._expected is not None:
            self._left = self._expected - self._delivered

    def _refuse(self, problem: str, status: int) -> NoReturn:
        raise self._engine.final_error(self._call, ProtocolError(f"{self._call.what()}: {problem}"),
                                       None, self._resumes + 1, status)

    def __aiter__(self) -> ObjectStream:
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
                await self._resume(Truncated(f"body ended after {self._delivered} of {self._expected} bytes"))
                continue
            except httpx.TransportError as exc:
                if self._expected is None:
                    raise TransientError(f"{self._call.what()}: {describe(exc)}") from exc
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
            raise self._engine.final_error(
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
        engine = self._engine
        call = self._call
        delay = engine.retry_delay_s(self._resumes)
        if delay is None:
            raise engine.final_error(call, TransientError(f"{call.what()}: body broken ({describe(exc)})"),
                                     exc, self._resumes + 1, self._response.status_code)
        log.log(retry_log_level(self._resumes), "%s: body broken after %d bytes (%s); resuming in %.2f s",
                call.what(), self._delivered, describe(exc), delay)
        self._resumes += 1
        await trio.sleep(delay)
        await self._close_current()
        assert self._last is not None
        start = self._first + self._delivered
        headers = dict(call.headers)
        headers["range"] = bytes_spec((start, self._last))
        if self.meta.etag:
            headers["if-match"] = quote_etag(self.meta.etag)
        reply = await engine.send(Call(call.op, "GET", call.key, headers=headers), stream=True)
        response = reply.response
        status = response.status_code
        span: tuple[int, int, int | None] | None = None
        if status in (200, 206):
            span, problem = reply_shape(response, start, self._last, content_length(response))
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
