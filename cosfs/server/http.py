"""The HTTP/1.1 connection loop of `cosfs serve` (trio + h11).

One task per connection; requests on a connection are served one after another (keep-alive),
connections concurrently, at most `Limits.max_connections` at a time (more wait in the listen
backlog). Request bodies are streamed to the handler (`Body`), with `Expect: 100-continue`
answered when the handler first reads, and chunked request bodies decoded by h11. Response
bodies are bytes or a `FileBody`, which is sent with os.sendfile straight from the object file
(zero copy; over TLS, read and sent in pieces), optionally cut short (fault injection). The
stream is a plain TCP one or trio's SSLStream (`cosfs serve --tls-cert`), whose handshake
runs within the first read, under the idle timeout.

Slow clients are bounded by `Limits`: the next request's head must arrive within the idle
timeout, and every wait for more of a body, or for the client to take more of a response,
within the I/O timeout. Whatever goes wrong on one connection closes that connection only.
"""

from __future__ import annotations

import dataclasses
import http
import logging
import math
import os
import re
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable

import h11
import trio

from cosfs.server.faults import FaultInjector, Pacer

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
RECEIVE_BYTES = 1024 * 1024
SENDFILE_CHUNK = 16 * 1024 * 1024
FILE_PIECE_BYTES = 1024 * 1024
COALESCE_BYTES = 256 * 1024  # a body up to this size is sent with its head in one send
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024
DRAIN_TIMEOUT_S = 5.0


# h11's rule for a header value (RFC 7230 field-content, no surrounding white space): h11
# raises on anything else, and only when the response is already being sent.
_FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one client may hold: a connection slot, and the server's patience."""

    idle_timeout_s: float = 300.0  # for the whole head of the next request on a connection
    io_timeout_s: float = 60.0  # for each piece of a request body, and each write of a response
    max_connections: int = 256


class ClientGone(Exception):
    """The peer closed or broke the connection in the middle of a request."""


class BodyTimeout(Exception):
    """The client sent nothing of the request body it announced for `Limits.io_timeout_s`."""


class ResetConnection(Exception):
    """Raised by a handler to drop the connection without answering (fault injection)."""


@dataclasses.dataclass
class FileBody:
    """`length` bytes of the open file `fd` from `offset`; the connection closes fd after sending."""

    fd: int
    offset: int
    length: int
    truncate_at: int | None = None  # send only this many bytes, then drop the connection

    def __len__(self) -> int:
        return self.length


@dataclasses.dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes | FileBody = b""
    # counted by the connection as the body goes out (a reply cut short logs what went out)
    sent_bytes: int = 0


@dataclasses.dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ","
    body: "Body"
    http_version: str = "1.1"


class Body:
    """The request body as a stream of chunks; `b''` marks its end."""

    def __init__(self, connection: "Connection") -> None:
        self._connection = connection
        self.done = False
        self.received = 0

    async def receive(self) -> bytes:
        if self.done:
            return b""
        chunk = await self._connection.receive_body_chunk()
        if not chunk:
            self.done = True
        self.received += len(chunk)
        return chunk

    def __aiter__(self) -> "Body":
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.receive()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def read_all(self, limit: int) -> bytes:
        """The whole body, refusing more than `limit` bytes (raises BodyTooLarge)."""
        parts: list[bytes] = []
        total = 0
        async for chunk in self:
            total += len(chunk)
            if total > limit:
                raise BodyTooLarge(limit)
            parts.append(chunk)
        return b"".join(parts)


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


def encode_header_value(value: str) -> bytes:
    return value.encode("latin-1", "replace")


def invalid_header(headers: list[tuple[str, str]]) -> str | None:
    """The name of the first header whose value HTTP/1.1 cannot carry (CR, LF, NUL...), or None."""
    for name, value in headers:
        if not _FIELD_VALUE.fullmatch(encode_header_value(value)):
            return name
    return None


Handler = Callable[[Request], Awaitable[Response]]
ErrorResponder = Callable[[int, str, str], Response]
AfterResponse = Callable[[Request | None, Response, float], None]


class Connection:
    """One client connection: h11 state, socket, and the request/response cycle."""

    def __init__(self, stream: trio.abc.Stream, handler: Handler, error_response: ErrorResponder,
                 after_response: AfterResponse, limits: Limits, faults: FaultInjector | None = None) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.handler = handler
        self.error_response = error_response
        self.after_response = after_response
        self.limits = limits
        # `frame=` fault injection: responses re-framed, and whether to close after this one
        self._reframe = faults if faults is not None and faults.spec.frame else None
        self._close_after = False
        # `rate=` fault injection: this connection's bytes, each way, at most so many per second
        self._pacers = ((Pacer(faults.spec.rate_bps), Pacer(faults.spec.rate_bps))
                        if faults is not None and faults.spec.rate_bps else None)

    async def _paced(self, direction: int, nbytes: int) -> None:
        """Wait as a link of the `rate=` bandwidth would (0: received, 1: sent)."""
        if self._pacers is not None and nbytes:
            await trio.sleep(self._pacers[direction].delay_s(nbytes, trio.current_time()))

    async def _receive_more(self, timeout_s: float) -> None:
        with trio.move_on_after(timeout_s):
            try:
                data = await self.stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as exc:
                raise ClientGone(str(exc)) from None
            self.conn.receive_data(bytes(data))  # bytes already from a socket: no copy
            await self._paced(0, len(data))
            return
        raise BodyTimeout()

    async def _next_event(self, timeout_s: float = math.inf):
        """The next h11 event, each receive waiting at most `timeout_s` (else BodyTimeout)."""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                await self._receive_more(timeout_s)
                continue
            return event

    async def receive_body_chunk(self) -> bytes:
        if self.conn.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))
        while True:
            event = await self._next_event(self.limits.io_timeout_s)
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data) if not isinstance(event.data, bytes) else event.data
                continue
            if isinstance(event, h11.EndOfMessage):
                return b""
            if isinstance(event, h11.ConnectionClosed):
                raise ClientGone("connection closed in the middle of the request body")
            raise ClientGone(f"unexpected {type(event).__name__} in a request body")

    async def _send(self, event) -> None:
        await self._send_events(event)

    async def _send_events(self, *events) -> None:
        data = b"".join(self.conn.send(event) or b"" for event in events)
        if not data:
            return
        with trio.move_on_after(self.limits.io_timeout_s):
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as exc:
                raise ClientGone(str(exc)) from None
            await self._paced(1, len(data))
            return
        raise ClientGone("the client stopped reading the response")

    async def _wait_writable(self, sock: trio.socket.SocketType) -> None:
        with trio.move_on_after(self.limits.io_timeout_s):
            await trio.lowlevel.wait_writable(sock)
            return
        raise ClientGone("the client stopped reading the response")

    def _socket(self) -> trio.socket.SocketType | None:
        """The TCP socket under the stream (through TLS), or None."""
        stream = self.stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        return stream.socket if isinstance(stream, trio.SocketStream) else None

    async def _send_file_pieces(self, body: FileBody, response: Response) -> None:
        """Send a file range through a stream that cannot take sendfile (TLS): pread + send."""
        offset = body.offset
        remaining = body.length if body.truncate_at is None else min(body.length, body.truncate_at)
        while remaining > 0:
            data = await trio.to_thread.run_sync(os.pread, body.fd, min(remaining, FILE_PIECE_BYTES), offset)
            if not data:
                raise ClientGone("file shorter than expected")
            await self._send(h11.Data(data=data))
            offset += len(data)
            remaining -= len(data)
            response.sent_bytes += len(data)

    async def _sendfile(self, body: FileBody, response: Response) -> None:
        """Send the file range directly with os.sendfile, counting in `response.sent_bytes`
        what has gone out so far (so a reply the client cut short is logged with its bytes)."""
        if not isinstance(self.stream, trio.SocketStream):
            await self._send_file_pieces(body, response)
            return
        # h11 counts the body through a placeholder of the right length (send_with_data_passthrough)
        self.conn.send_with_data_passthrough(h11.Data(data=body))  # type: ignore[arg-type]  # h11 only takes its len()
        sock = self.stream.socket
        fd = sock.fileno()
        offset = body.offset
        remaining = body.length if body.truncate_at is None else min(body.length, body.truncate_at)
        # Paced, a chunk is what the link carries in 20 ms (a cap shapes the flow, not bursts).
        chunk = SENDFILE_CHUNK
        if self._pacers is not None:
            chunk = max(1, min(SENDFILE_CHUNK, int(self._pacers[1].rate_bps / 50)))
        while remaining > 0:
            try:
                n = os.sendfile(fd, body.fd, offset, min(remaining, chunk))
            except BlockingIOError:
                await self._wait_writable(sock)
                continue
            except OSError as exc:
                raise ClientGone(str(exc)) from None
            if n == 0:
                raise ClientGone("file shorter than expected")
            offset += n
            remaining -= n
            response.sent_bytes += n
            if self._pacers is None:
                await trio.lowlevel.checkpoint()
            else:
                await self._paced(1, n)

    async def send_response(self, request: Request | None, response: Response) -> None:
        reason = b""
        try:
            reason = http.HTTPStatus(response.status).phrase.encode()
        except ValueError:
            pass
        headers = [(name.encode("latin-1"), encode_header_value(value)) for name, value in response.headers]
        body = response.body
        if self._reframe is not None:
            await self._send_reframed(request, response, reason, headers)
            return
        try:
            is_head = request is not None and request.method == "HEAD"
            head = h11.Response(status_code=response.status, headers=headers, reason=reason)
            if isinstance(body, bytes) and body and not is_head and len(body) <= COALESCE_BYTES:
                # A small body goes out with its head in one send (one packet, one wake-up).
                await self._send_events(head, h11.Data(data=body), h11.EndOfMessage())
                response.sent_bytes = len(body)
                return
            await self._send(head)
            if isinstance(body, FileBody):
                if not is_head and body.length:
                    await self._sendfile(body, response)
                    if body.truncate_at is not None and body.truncate_at < body.length:
                        raise ClientGone("body truncated on purpose (fault injection)")
            elif body and not is_head:
                await self._send(h11.Data(data=body))
                response.sent_bytes = len(body)
            await self._send(h11.EndOfMessage())
        finally:
            if isinstance(body, FileBody):
                os.close(body.fd)

    async def _send_reframed(self, request: Request | None, response: Response, reason: bytes,
                             headers: list[tuple[bytes, bytes]]) -> None:
        """`frame=` fault injection: the response h11 would send, written as framing.py says
        (h11 is still told it, so its state machine stays in step)."""
        assert self._reframe is not None
        body = response.body
        bodiless = (request is not None and request.method == "HEAD") or response.status in (204, 304)
        try:
            if isinstance(body, FileBody):
                data = b"" if bodiless else await trio.to_thread.run_sync(os.pread, body.fd, body.length, body.offset)
            else:
                data = b"" if bodiless else (body or b"")
        finally:
            if isinstance(body, FileBody):
                os.close(body.fd)
        self.conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        if data:
            self.conn.send(h11.Data(data=data))
        self.conn.send(h11.EndOfMessage())
        pieces, self._close_after = self._reframe.framed(
            response.status, reason.decode("latin-1"), [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
            data, bodiless)
        for number, piece in enumerate(pieces):
            if number:
                await trio.sleep(0.001 if number == 1 else 0)
            with trio.move_on_after(self.limits.io_timeout_s):
                try:
                    await self.stream.send_all(piece)
                except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as exc:
                    raise ClientGone(str(exc)) from None
                await self._paced(1, len(piece))
                continue
            raise ClientGone("the client stopped reading the response")
        response.sent_bytes = len(data)

    async def _drain(self) -> bool:
        """Discard the rest of an unread request body so the connection can be reused."""
        if self.conn.they_are_waiting_for_100_continue:
            return False
        drained = 0
        with trio.move_on_after(DRAIN_TIMEOUT_S):
            while self.conn.their_state is h11.SEND_BODY:
                event = await self._next_event()
                if isinstance(event, h11.Data):
                    drained += len(event.data)
                    if drained > DRAIN_LIMIT_BYTES:
                        return False
                elif isinstance(event, h11.ConnectionClosed):
                    return False
            return True
        return False

    def _reset(self) -> None:
        sock = self._socket()
        if sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    async def serve(self) -> None:
        try:
            await self._serve()
        except ClientGone:
            pass
        except ResetConnection:
            self._reset()
        except Exception:
            # Whatever one request breaks costs its own connection only: raised further, it
            # would end serve_listener's nursery and with it every connection and the server.
            log.exception("closing a connection after an unexpected error")
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self.stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    async def _serve(self) -> None:
        while True:
            start = trio.current_time()
            try:
                with trio.fail_after(self.limits.idle_timeout_s):
                    event = await self._next_event()
            except trio.TooSlowError:
                return
            except h11.RemoteProtocolError as exc:
                await self._protocol_error(exc)
                return
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                return
            start = trio.current_time()
            if sum(len(name) + len(value) + 4 for name, value in event.headers) + len(event.target) > MAX_HEADER_BYTES:
                await self._protocol_error(h11.RemoteProtocolError("header section exceeds the limit", 431))
                return
            request = Request(
                method=event.method.decode("ascii", "replace"),
                target=event.target.decode("latin-1"),
                headers=_headers(event.headers),
                body=Body(self),
                http_version=event.http_version.decode("ascii", "replace"),
            )
            try:
                response = await self.handler(request)
            except (h11.RemoteProtocolError, BodyTimeout) as exc:
                await self._protocol_error(exc, request)
                return
            try:
                await self.send_response(request, response)
            finally:
                self.after_response(request, response, trio.current_time() - start)
            if self.conn.our_state is h11.MUST_CLOSE or self._close_after:
                return
            if self.conn.their_state is h11.SEND_BODY:
                try:
                    if not await self._drain():
                        return
                except h11.RemoteProtocolError:
                    return
            if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                self.conn.start_next_cycle()
            else:
                return

    async def _protocol_error(self, exc: h11.RemoteProtocolError | BodyTimeout,
                              request: Request | None = None) -> None:
        """Answer a request that cannot be read to its end (400), then close the connection."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        if isinstance(exc, BodyTimeout):
            code, message = "RequestTimeout", ("Your socket connection to the server was not read from or written "
                                               "to within the timeout period.")
        elif exc.error_status_hint == 431 or "exceeds" in str(exc) or "too long" in str(exc).lower():
            code = "RequestHeaderSectionTooLarge"
            message = "Your request header section exceeds the maximum allowed size."
        else:
            code, message = "InvalidRequest", f"Bad HTTP request: {exc}"
        response = self.error_response(400, code, message)
        response.headers.append(("Connection", "close"))
        try:
            await self.send_response(None, response)
        except (ClientGone, h11.LocalProtocolError):
            pass
        finally:
            self.after_response(request, response, 0.0)


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")  # lossless; echoed back with the same bytes
        if key in headers:
            headers[key] = headers[key] + "," + text
        else:
            headers[key] = text
    return headers


async def serve_listener(listener: trio.abc.Listener, make_connection: Callable[[trio.abc.Stream], Connection],
                         slots: trio.Semaphore, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Accept connections forever, each in its own task holding one of `slots` (shared by all
    listeners): at the limit the server stops accepting and new clients wait in the backlog."""
    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            await slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:  # e.g. EMFILE: back off instead of spinning
                slots.release()
                log.warning("accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(_serve_connection, make_connection(stream), slots, name="http-connection")


async def _serve_connection(connection: Connection, slots: trio.Semaphore) -> None:
    try:
        await connection.serve()
    finally:
        slots.release()
