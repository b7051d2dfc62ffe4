"""The HTTP/1.1 connection loop of `cosfs serve` (trio + h11).

One task per connection; requests on a connection are served one after another (keep-alive),
connections concurrently. Request bodies are streamed to the handler (`Body`), with
`Expect: 100-continue` answered when the handler first reads, and chunked request bodies
decoded by h11. Response bodies are bytes or a `FileBody`, which is sent with os.sendfile
straight from the object file (zero copy), optionally cut short (fault injection).
"""

from __future__ import annotations

import dataclasses
import http
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable

import h11
import trio

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
RECEIVE_BYTES = 1024 * 1024
SENDFILE_CHUNK = 16 * 1024 * 1024
IDLE_TIMEOUT_S = 300.0
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024
DRAIN_TIMEOUT_S = 5.0


class ClientGone(Exception):
    """The peer closed or broke the connection in the middle of a request."""


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
    # set by the connection after sending: bytes of body actually sent
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


Handler = Callable[[Request], Awaitable[Response]]
ErrorResponder = Callable[[int, str, str], Response]
AfterResponse = Callable[[Request | None, Response, float], None]


class Connection:
    """One client connection: h11 state, socket, and the request/response cycle."""

    def __init__(self, stream: trio.SocketStream, handler: Handler, error_response: ErrorResponder,
                 after_response: AfterResponse) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.handler = handler
        self.error_response = error_response
        self.after_response = after_response

    async def _receive_more(self) -> None:
        try:
            data = await self.stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as exc:
            raise ClientGone(str(exc)) from None
        self.conn.receive_data(data)

    async def _next_event(self):
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                await self._receive_more()
                continue
            return event

    async def receive_body_chunk(self) -> bytes:
        if self.conn.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))
        while True:
            event = await self._next_event()
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
        data = self.conn.send(event)
        if data:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as exc:
                raise ClientGone(str(exc)) from None

    async def _sendfile(self, body: FileBody) -> int:
        """Send the file range directly with os.sendfile; return bytes sent."""
        # h11 counts the body through a placeholder of the right length (send_with_data_passthrough)
        self.conn.send_with_data_passthrough(h11.Data(data=body))  # type: ignore[arg-type]
        sock = self.stream.socket
        fd = sock.fileno()
        offset = body.offset
        remaining = body.length if body.truncate_at is None else min(body.length, body.truncate_at)
        sent = 0
        while remaining > 0:
            try:
                n = os.sendfile(fd, body.fd, offset, min(remaining, SENDFILE_CHUNK))
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            except OSError as exc:
                raise ClientGone(str(exc)) from None
            if n == 0:
                raise ClientGone("file shorter than expected")
            offset += n
            remaining -= n
            sent += n
            await trio.lowlevel.checkpoint()
        return sent

    async def send_response(self, request: Request | None, response: Response) -> None:
        reason = b""
        try:
            reason = http.HTTPStatus(response.status).phrase.encode()
        except ValueError:
            pass
        headers = [(name.encode("latin-1"), value.encode("latin-1", "replace")) for name, value in response.headers]
        body = response.body
        try:
            await self._send(h11.Response(status_code=response.status, headers=headers, reason=reason))
            is_head = request is not None and request.method == "HEAD"
            if isinstance(body, FileBody):
                if not is_head and body.length:
                    response.sent_bytes = await self._sendfile(body)
                    if body.truncate_at is not None and body.truncate_at < body.length:
                        raise ClientGone("body truncated on purpose (fault injection)")
            elif body and not is_head:
                await self._send(h11.Data(data=body))
                response.sent_bytes = len(body)
            await self._send(h11.EndOfMessage())
        finally:
            if isinstance(body, FileBody):
                os.close(body.fd)

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
        try:
            self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    async def serve(self) -> None:
        try:
            await self._serve()
        except ClientGone:
            pass
        except ResetConnection:
            self._reset()
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
                with trio.fail_after(IDLE_TIMEOUT_S) if self.conn.their_state is h11.IDLE else _null():
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
            except h11.RemoteProtocolError as exc:
                await self._protocol_error(exc, request)
                return
            try:
                await self.send_response(request, response)
            finally:
                self.after_response(request, response, trio.current_time() - start)
            if self.conn.our_state is h11.MUST_CLOSE:
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

    async def _protocol_error(self, exc: h11.RemoteProtocolError, request: Request | None = None) -> None:
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = exc.error_status_hint or 400
        if status == 431 or "exceeds" in str(exc) or "too long" in str(exc).lower():
            code, message = "RequestHeaderSectionTooLarge", "Your request header section exceeds the maximum allowed size."
            status = 400
        else:
            code, message = "InvalidRequest", f"Bad HTTP request: {exc}"
            status = 400
        response = self.error_response(status, code, message)
        response.headers.append(("Connection", "close"))
        try:
            await self.send_response(None, response)
        except (ClientGone, h11.LocalProtocolError):
            pass
        finally:
            self.after_response(request, response, 0.0)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")  # lossless; echoed back with the same bytes
        if key in headers:
            headers[key] = headers[key] + "," + text
        else:
            headers[key] = text
    return headers


async def serve_listener(listener: trio.SocketListener, make_connection: Callable[[trio.SocketStream], Connection],
                         task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Accept connections forever; each one runs in its own task."""
    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # e.g. EMFILE: back off instead of spinning
                log.warning("accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(make_connection(stream).serve, name="http-connection")
