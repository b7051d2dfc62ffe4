"""`ThreadedTransport`: the client's HTTP/1.1 connections, with the socket work in worker threads.

Why: httpx's own transport runs on the trio thread, and every body byte crosses h11, httpcore
and httpx as chunk objects there, competing with FUSE for the one thread that answers the
kernel. Here a request is sent and its response head read in one worker thread
(`trio.to_thread`), a Content-Length body is received with `recv_into` straight into buffers
of `piece_bytes` in worker threads, and a request body goes out with one `sendall`: socket I/O
and TLS release the GIL, so the second core does the bulk work while the trio thread serves
the mount. httpx stays the client above it (signing, retries, errors are unchanged); this is
only the transport (the same shape as s3ql's own small HTTP layer on h11).

Protocol: h11 writes the request head and parses the response head; a body framed by
Content-Length is read directly, any other (chunked, or up to the close) through h11.

Invariants:
- A pooled connection is idle, its last response read to the end, with no bytes pending: a
  connection found readable when taken from the pool (the server closed it, or sent
  something unasked) is closed instead of used.
- A connection whose exchange did not finish (an error, a cancellation, a body not read to
  its end) is closed, never pooled. On cancellation the socket is shut down, so an abandoned
  worker thread returns at once; the thread that last used a socket closes it.
- At most `max_connections` exchanges are open at once (a response holds its slot until its
  stream is closed).

Scope: plain HTTP and HTTPS; a proxy is left to httpx's transport (the client picks).
"""

from __future__ import annotations

import math
import select
import socket
import ssl
import threading
from collections.abc import AsyncIterator

import h11
import httpx
import trio

from cosfs.cos import http1

# Requests sent again, once, on a new connection when a pooled one turns out dropped by the
# server before it answered (POSTs: a multipart Complete, an append, a multi-delete are not).
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# A response head larger than this is refused (COS heads are a few hundred bytes).
MAX_HEAD_BYTES = 64 * 1024
# Body pieces handed up per worker-thread trip: large enough that the trip costs nothing per
# byte, small enough to bound a stream's memory.
PIECE_BYTES = 1024 * 1024
# A body is pooled after a short unread rest is read through; a longer one closes the socket.
RECV_BYTES = 256 * 1024


class _Connection:
    """One socket to one origin; used by one exchange at a time."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self.sock: socket.socket | None = None
        self.pending = bytearray()  # received after the response head, not yet handed up
        self._lock = threading.Lock()
        self._in_thread = False
        self._killed = False

    def run(self, function, *args):
        """Worker thread: call `function` with this connection in use; close the socket if it
        was killed meanwhile (the trio side only shuts it down)."""
        with self._lock:
            self._in_thread = True
        try:
            return function(*args)
        finally:
            with self._lock:
                self._in_thread = False
                if self._killed and self.sock is not None:
                    self.sock.close()

    def kill(self) -> None:
        """Make the socket unusable now; closed here, or by the thread still using it."""
        with self._lock:
            self._killed = True
            if self.sock is None:
                return
            if self._in_thread:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            else:
                self.sock.close()

    def stale(self) -> bool:
        """An idle connection with something to read: closed by the server, or out of step."""
        if self.sock is None:
            return True
        poller = select.poll()  # not select.select: descriptors above 1023 are normal here
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    return request.extensions.get("timeout", {})


def _connect(conn: _Connection, tls: ssl.SSLContext | None, local_address: str | None,
             connect_s: float | None) -> None:
    """Worker thread: open the connection's socket (TCP, then TLS for https)."""
    scheme, host, port = conn.origin
    try:
        sock = socket.create_connection((host, port), timeout=connect_s,
                                        source_address=(local_address, 0) if local_address else None)
    except socket.timeout as exc:
        raise httpx.ConnectTimeout(f"connecting to {host}:{port}: timed out") from exc
    except OSError as exc:
        raise httpx.ConnectError(f"connecting to {host}:{port}: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if scheme == "https":
        assert tls is not None
        try:
            sock = tls.wrap_socket(sock, server_hostname=host)
        except socket.timeout as exc:
            sock.close()
            raise httpx.ConnectTimeout(f"TLS handshake with {host}:{port}: timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise httpx.ConnectError(f"TLS handshake with {host}:{port}: {exc}") from exc
    conn.sock = sock


class _Exchange:
    """Worker-thread half of one request and response on one connection."""

    def __init__(self, conn: _Connection, request: httpx.Request, body: list[bytes], tls: ssl.SSLContext | None,
                 local_address: str | None) -> None:
        self.conn = conn
        self.request = request
        self.body = body
        self.tls = tls
        self.local_address = local_address
        timeouts = _timeouts(request)
        self.connect_s = timeouts.get("connect")
        self.read_s = timeouts.get("read")
        self.write_s = timeouts.get("write")
        self.h11: h11.Connection | None = None
        self.answered = False  # a byte of the reply has come
        self.left: int | None = None  # Content-Length bytes still to hand up; None: h11 frames
        self.done = False
        self.reusable = False

    # --- head ------------------------------------------------------------------------------

    def connect(self) -> None:
        _connect(self.conn, self.tls, self.local_address, self.connect_s)

    def send_and_read_head(self) -> h11.Response:
        if self.conn.sock is None:
            self.connect()
        sock = self.conn.sock
        assert sock is not None
        request = self.request
        protocol = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.h11 = protocol
        try:
            head = protocol.send(h11.Request(method=request.method, target=request.url.raw_path,
                                             headers=list(request.headers.raw)))
            pieces = [head]
            for chunk in filter(None, self.body):
                data = protocol.send_with_data_passthrough(h11.Data(data=chunk))
                assert data is not None  # None only for ConnectionClosed
                pieces.extend(data)
            pieces.append(protocol.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        sock.settimeout(self.write_s)
        try:
            for piece in pieces:
                if piece:
                    sock.sendall(piece)
        except socket.timeout as exc:
            raise httpx.WriteTimeout("sending the request: timed out") from exc
        except OSError as exc:
            # A server may answer (403, 413...) and close before reading the whole body:
            # its answer says more than the broken pipe.
            self.body = []
            try:
                response = self._read_head(protocol)
            except (httpx.TransportError, OSError):
                raise httpx.WriteError(f"sending the request: {exc}") from exc
            self.reusable = False
            return response
        self.body = []
        return self._read_head(protocol)

    def _read_head(self, protocol: h11.Connection) -> h11.Response:
        sock = self.conn.sock
        assert sock is not None
        sock.settimeout(self.read_s)
        received = bytearray()
        while True:
            end = received.find(b"\r\n\r\n")
            if end >= 0:
                head, rest = bytes(received[:end + 4]), received[end + 4:]
                protocol.receive_data(head)
                event = self._next_event(protocol)
                if isinstance(event, h11.InformationalResponse):  # 100 Continue and the like
                    received = rest
                    continue
                if not isinstance(event, h11.Response):
                    raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__} instead of a response")
                self._frame(event, rest)
                return event
            if len(received) > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError(f"response head longer than {MAX_HEAD_BYTES} bytes")
            try:
                data = self._recv(RECV_BYTES)
            except httpx.ReadError as exc:
                if not received and not self.answered:
                    raise _Unanswered(str(exc)) from exc
                raise
            if not data:
                if not received and not self.answered:
                    raise _Unanswered("the server closed the connection without sending a response")
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            received += data
            self.answered = True

    @staticmethod
    def _next_event(protocol: h11.Connection):
        try:
            return protocol.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc

    def _frame(self, response: h11.Response, rest: bytearray) -> None:
        """Choose how the body is read: by Content-Length directly, else through h11."""
        headers = {name.lower(): value for name, value in response.headers}
        no_body = self.request.method == "HEAD" or response.status_code in (204, 304)
        length = headers.get(b"content-length")
        if no_body or (length is not None and b"transfer-encoding" not in headers):
            if no_body:
                self.left = 0
            else:
                assert length is not None  # the condition above
                self.left = int(length)  # h11 has checked it is a number
            self.conn.pending = rest
            self.reusable = (response.http_version == b"1.1"
                             and b"close" not in headers.get(b"connection", b"").lower())
            if self.left == 0:
                self._finish()
        else:
            self.left = None
            assert self.h11 is not None
            if rest:  # (h11 takes receive_data(b"") for the end of the stream)
                self.h11.receive_data(bytes(rest))

    # --- body ------------------------------------------------------------------------------

    def read_piece(self) -> bytes | bytearray:
        """The next piece of the body (b"" at its end)."""
        if self.done:
            return b""
        if self.left is None:
            return self._h11_piece()
        size = min(self.left, PIECE_BYTES)
        piece = bytearray(size)
        view = memoryview(piece)
        pending = self.conn.pending
        filled = min(len(pending), size)
        view[:filled] = pending[:filled]
        del pending[:filled]
        sock = self.conn.sock
        assert sock is not None
        while filled < size:
            count = self._recv_into(view[filled:])
            if count == 0:
                raise httpx.RemoteProtocolError(
                    f"peer closed connection without sending complete message body "
                    f"(received {filled} of {size} bytes of this piece, {self.left - filled} short)")
            filled += count
        self.left -= size
        if self.left == 0:
            self._finish()
        return piece

    def _h11_piece(self) -> bytes:
        assert self.h11 is not None
        while True:
            event = self._next_event(self.h11)
            if event is h11.NEED_DATA:
                self.h11.receive_data(self._recv(RECV_BYTES))
                continue
            if isinstance(event, h11.Data):
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage):
                self.reusable = self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE
                self._finish()
                return b""
            if isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    def _finish(self) -> None:
        self.done = True
        if self.conn.pending:  # bytes beyond the response: the connection is out of step
            self.reusable = False

    def drain(self, limit: int) -> bool:
        """Read the rest of the body if at most `limit` bytes remain; whether it ended."""
        if self.left is None or self.left > limit:
            return False
        while not self.done:
            self.read_piece()
        return True

    def _recv(self, size: int) -> bytes:
        return self._receive(lambda sock: sock.recv(size))

    def _recv_into(self, view: memoryview) -> int:
        return self._receive(lambda sock: sock.recv_into(view))

    def _receive(self, call):
        """One receive on the socket, its failures as httpx's transport errors."""
        sock = self.conn.sock
        assert sock is not None
        try:
            return call(sock)
        except socket.timeout as exc:
            raise httpx.ReadTimeout("reading the response: timed out") from exc
        except OSError as exc:
            raise httpx.ReadError(f"reading the response: {exc}") from exc


async def _send_inline(sock: socket.socket, pieces: list[bytes]) -> None:
    """sendall on a non-blocking socket (plain or TLS), waiting in trio."""
    for piece in pieces:
        view = memoryview(piece)
        while view:
            try:
                sent = sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                await trio.lowlevel.wait_writable(sock)
                continue
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError as exc:
                raise httpx.WriteError(f"sending the request: {exc}") from exc
            view = view[sent:]


async def _recv_inline(sock: socket.socket, size: int) -> bytes:
    """One recv on a non-blocking socket (plain or TLS), waiting in trio."""
    while True:
        try:
            return sock.recv(size)
        except (BlockingIOError, ssl.SSLWantReadError):
            await trio.lowlevel.wait_readable(sock)
        except ssl.SSLWantWriteError:
            await trio.lowlevel.wait_writable(sock)
        except OSError as exc:
            raise httpx.ReadError(f"reading the response: {exc}") from exc


async def _exchange_inline(sock: socket.socket, method: str, head: bytes, body: bytes,
                           read_s: float | None, write_s: float | None) -> http1.ResponseReader:
    """One whole request and response on the trio thread (a small exchange: a thread trip
    would cost more than the socket calls), framed by `http1`; the body read to its end.
    `write_s` bounds the sending, `read_s` the wait for each piece of the reply."""
    sock.setblocking(False)
    with trio.move_on_after(math.inf if write_s is None else write_s) as scope:
        await _send_inline(sock, [head + body] if len(body) < 65536 else [head, body])
    if scope.cancelled_caught:
        raise httpx.WriteTimeout("sending the request: timed out")
    reader = http1.ResponseReader(method)
    read_timeout = math.inf if read_s is None else read_s
    received = 0
    while not reader.done:
        with trio.move_on_after(read_timeout) as scope:
            try:
                data = await _recv_inline(sock, RECV_BYTES)
            except httpx.ReadError as exc:
                if not received:
                    raise _Unanswered(str(exc)) from exc
                raise
        if scope.cancelled_caught:
            raise httpx.ReadTimeout("reading the response: timed out")
        if not data and not received:
            raise _Unanswered("the server closed the connection without sending a response")
        received += len(data)
        try:
            reader.feed(data)  # b"": the server closed the connection
        except http1.FramingError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
    return reader


class _Unanswered(httpx.RemoteProtocolError):
    """The connection closed before any byte of a reply (a server that dropped an idle
    keep-alive connection as the request went out, or a request it never read)."""


class _ResponseBody(httpx.AsyncByteStream):
    """The body of one response, read in worker threads; its connection back to the pool
    when it was read to the end."""

    def __init__(self, transport: ThreadedTransport, exchange: _Exchange) -> None:
        self._transport = transport
        self._exchange = exchange
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        exchange = self._exchange
        while not exchange.done:
            if exchange.left is not None and exchange.left <= len(exchange.conn.pending):
                piece = exchange.read_piece()  # received with the head: no socket call, no trip
            else:
                piece = await self._transport._in_thread(exchange, exchange.read_piece)
            if not piece:
                return
            yield piece  # type: ignore[misc]  # a bytearray piece saves a copy; its readers take any bytes-like

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        exchange = self._exchange
        try:
            if not exchange.done and exchange.reusable:
                # A short unread rest costs less than a new connection.
                await self._transport._in_thread(exchange, exchange.drain, RECV_BYTES)
        except (httpx.TransportError, OSError):
            pass
        finally:
            self._transport._release(exchange)


class ThreadedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over sockets driven by worker threads (see the module docstring)."""

    def __init__(self, *, tls: ssl.SSLContext | bool = True, max_connections: int = 32,
                 local_address: str | None = None) -> None:
        if tls is True:
            tls = ssl.create_default_context()
            import certifi

            tls.load_verify_locations(certifi.where())
        elif tls is False:
            tls = ssl.create_default_context()
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        self._tls = tls
        self._local_address = local_address
        self._slots = trio.Semaphore(max_connections)
        self._threads = trio.CapacityLimiter(max_connections)
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        assert isinstance(request.stream, httpx.AsyncByteStream)  # an async transport's request
        body = [bytes(chunk) if not isinstance(chunk, bytes) else chunk async for chunk in request.stream]
        await self._slots.acquire()
        try:
            conn = self._take(origin)
            reused = conn.sock is not None
            while True:
                exchange = _Exchange(conn, request, body, self._tls, self._local_address)
                try:
                    response = await self._in_thread(exchange, exchange.send_and_read_head)
                except (_Unanswered, httpx.WriteError):
                    conn.kill()
                    if reused and request.method in IDEMPOTENT:
                        conn, reused = _Connection(origin), False  # a pooled connection the server dropped
                        continue
                    raise
                except BaseException:
                    conn.kill()
                    raise
                break
        except BaseException:
            self._slots.release()
            raise
        return httpx.Response(
            response.status_code,
            headers=[(bytes(name), bytes(value)) for name, value in response.headers],
            stream=_ResponseBody(self, exchange),
            extensions={"http_version": b"HTTP/" + response.http_version, "reason_phrase": response.reason},
            request=request,
        )

    async def exchange(self, origin: tuple[str, str, int], method: str, target: str, headers: dict[str, str],
                       body: bytes, *, connect_s: float | None, read_s: float | None,
                       write_s: float | None) -> httpx.Response:
        """A small exchange, whole on the trio thread (connecting, when needed, in a thread),
        without httpx's request model: the engine's signed target and headers go out as
        they are, the reply comes back read to its end."""
        try:
            head = http1.request_head(method, target, list(headers.items()))
        except http1.FramingError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        async with self._slots:
            conn = self._take(origin)
            reused = conn.sock is not None
            while True:
                try:
                    if conn.sock is None:
                        await trio.to_thread.run_sync(conn.run, _connect, conn, self._tls, self._local_address,
                                                      connect_s, abandon_on_cancel=True, limiter=self._threads)
                    assert conn.sock is not None
                    reader = await _exchange_inline(conn.sock, method, head, body, read_s, write_s)
                except (_Unanswered, httpx.WriteError):
                    conn.kill()
                    if reused and method in IDEMPOTENT:
                        # A pooled connection the server had dropped: once more on a new one.
                        # (The engine's retries and their logs are for failures of the server.)
                        conn, reused = _Connection(origin), False
                        continue
                    raise
                except BaseException:
                    conn.kill()
                    raise
                break
            if reader.reusable and not self._closed:
                self._idle.setdefault(conn.origin, []).append(conn)
            else:
                conn.kill()
        response_head = reader.head
        assert response_head is not None
        return httpx.Response(response_head.status, headers=response_head.headers,
                              stream=httpx.ByteStream(bytes(reader.body)),
                              extensions={"http_version": b"HTTP/1.%d" % response_head.http_minor,
                                          "reason_phrase": response_head.reason.encode("latin-1")})

    def _take(self, origin: tuple[str, str, int]) -> _Connection:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.stale():
                return conn
            conn.kill()
        return _Connection(origin)

    async def _in_thread(self, exchange: _Exchange, function, *args):
        try:
            return await trio.to_thread.run_sync(exchange.conn.run, function, *args,
                                                 abandon_on_cancel=True, limiter=self._threads)
        except trio.Cancelled:
            exchange.conn.kill()
            exchange.reusable = False
            raise

    def _release(self, exchange: _Exchange) -> None:
        """An exchange is over: its connection to the pool (if clean) or closed, its slot free."""
        conn = exchange.conn
        if exchange.done and exchange.reusable and not self._closed:
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            conn.kill()
        self._slots.release()

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.kill()
        self._idle.clear()
