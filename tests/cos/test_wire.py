"""ThreadedTransport against a scripted HTTP/1.1 server (raw sockets, one thread per
connection): framing, connection reuse, stale pooled connections, broken bodies, and
cancellation, as the COS client needs them."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest
import trio

from cosfs.cos.wire import PIECE_BYTES, ThreadedTransport


class ScriptedServer:
    """Answers each request with the next scripted reply: bytes to send, then what to do with
    the connection ("keep", "close"). Counts connections and records request heads."""

    def __init__(self, replies: list[tuple[bytes, str]]) -> None:
        self.replies = list(replies)
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connections = 0
        self.closed = threading.Semaphore(0)  # released each time the server closes a connection
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._exchange(conn)
        finally:
            conn.close()
            self.closed.release()

    def _exchange(self, conn: socket.socket) -> None:
        buffer = b""
        while self.replies:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                buffer += conn.recv(65536)
            self.heads.append(head)
            self.bodies.append(buffer[:length])
            buffer = buffer[length:]
            reply, then = self.replies.pop(0)
            conn.sendall(reply)
            if then == "close":
                return
            if then == "hang":
                conn.recv(1)  # until the client goes away
                return

    def url(self, path: str = "/k") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.listener.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body


@pytest.fixture
def scripted():
    servers = []

    def make(replies):
        server = ScriptedServer(replies)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


async def test_bodies_by_length_and_chunked_reuse_one_connection(scripted):
    big = bytes(range(256)) * (3 * PIECE_BYTES // 256 + 7)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n \r\n0\r\n\r\n"
    server = scripted([(ok(big), "keep"), (chunked, "keep"), (ok(b"", b"X-A: 1\r\n"), "keep")])
    async with httpx.AsyncClient(transport=ThreadedTransport()) as client:
        got = await client.get(server.url())
        assert got.content == big
        assert (await client.get(server.url())).content == b"hello "
        put = await client.put(server.url("/p?x=1"), content=b"part body")
        assert put.headers["x-a"] == "1" and put.content == b""
    assert server.connections == 1
    assert server.heads[2].startswith(b"PUT /p?x=1 HTTP/1.1") and server.bodies[2] == b"part body"


async def test_a_connection_the_server_closed_while_idle_is_not_reused(scripted):
    server = scripted([(ok(b"one"), "close"), (ok(b"two"), "keep")])
    async with httpx.AsyncClient(transport=ThreadedTransport()) as client:
        assert (await client.get(server.url())).content == b"one"
        # "close" without a Connection: close header: the pool holds a socket the server
        # has closed; it must be found stale and replaced, not fail the next request.
        await trio.to_thread.run_sync(server.closed.acquire)
        assert (await client.get(server.url())).content == b"two"
    assert server.connections == 2


async def test_connection_close_is_respected(scripted):
    server = scripted([(ok(b"one", b"Connection: close\r\n"), "close"), (ok(b"two"), "keep")])
    async with httpx.AsyncClient(transport=ThreadedTransport()) as client:
        assert (await client.get(server.url())).content == b"one"
        assert (await client.get(server.url())).content == b"two"
    assert server.connections == 2


async def test_a_body_cut_short_is_a_transport_error(scripted):
    server = scripted([(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", "close")])
    async with httpx.AsyncClient(transport=ThreadedTransport()) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await client.get(server.url())


async def test_no_response_at_all_is_a_transport_error(scripted):
    server = scripted([(b"", "close")])
    async with httpx.AsyncClient(transport=ThreadedTransport()) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.get(server.url())


async def test_a_garbled_head_is_a_protocol_error(scripted):
    server = scripted([(b"HTTP/1.1 banana\r\n\r\n", "close")])
    async with httpx.AsyncClient(transport=ThreadedTransport()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url())


async def test_a_read_timeout_is_reported_as_one(scripted):
    server = scripted([(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "hang")])
    async with httpx.AsyncClient(transport=ThreadedTransport(), timeout=httpx.Timeout(0.3)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url())


async def test_cancelling_a_body_read_closes_its_connection(scripted):
    server = scripted([(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "hang"), (ok(b"next"), "keep")])
    transport = ThreadedTransport(max_connections=1)
    async with httpx.AsyncClient(transport=transport) as client:
        with trio.move_on_after(0.3) as scope:
            async with client.stream("GET", server.url()) as response:
                await response.aread()
        assert scope.cancelled_caught
        # The one slot is free again, and the cut connection was not pooled.
        assert (await client.get(server.url())).content == b"next"
    assert server.connections == 2


async def test_a_short_unread_rest_is_drained_and_the_connection_reused(scripted):
    server = scripted([(ok(b"x" * 1000), "keep"), (ok(b"two"), "keep")])
    async with httpx.AsyncClient(transport=ThreadedTransport()) as client:
        async with client.stream("GET", server.url()) as response:
            assert response.status_code == 200  # body left unread
        assert (await client.get(server.url())).content == b"two"
    assert server.connections == 1


async def test_connect_errors_are_transport_errors():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    async with httpx.AsyncClient(transport=ThreadedTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_an_answer_sent_before_the_body_was_read_is_the_response(scripted):
    server = scripted([(b"", "close")])
    # The server reads the head only, answers 403 and closes: the rest of a large body then
    # meets a closed socket, and the 403 is what the client must see.
    refusal = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nConnection: close\r\n\r\ndenied"

    def early(conn: socket.socket) -> None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += conn.recv(65536)
        conn.sendall(refusal)
        conn.shutdown(socket.SHUT_WR)
        conn.close()

    server._exchange = early
    async with httpx.AsyncClient(transport=ThreadedTransport()) as client:
        response = await client.put(server.url(), content=b"x" * (64 * 1024 * 1024))
    assert response.status_code == 403 and response.content == b"denied"


@pytest.mark.parametrize("path", ["worker threads", "inline"])
async def test_a_pooled_connection_dropped_by_the_server_is_replaced_once_for_idempotent_requests(scripted, path):
    """A server (or load balancer) that drops an idle keep-alive connection just as a request
    goes out on it: the request is sent again on a new connection, once, without an error
    (the engine's retries are for failures of the server); a POST is never sent twice."""
    server = scripted([(ok(b"one"), "keep"), (b"", "close"), (ok(b"two"), "keep"),
                       (ok(b"three"), "keep"), (b"", "close")])
    transport = ThreadedTransport(max_connections=1)
    client = httpx.AsyncClient(transport=transport)
    origin = ("http", "127.0.0.1", server.port)

    async def get() -> bytes:
        if path == "inline":
            response = await transport.exchange(origin, "GET", "/k", {"host": "x"}, b"", connect_s=5, read_s=5,
                                                write_s=5)
            return await response.aread()
        return (await client.get(server.url())).content

    try:
        assert await get() == b"one"
        assert await get() == b"two"
        assert server.connections == 2
        assert await get() == b"three"
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await transport.exchange(origin, "POST", "/k?uploads", {"host": "x"}, b"", connect_s=5, read_s=5,
                                     write_s=5)
        assert server.connections == 2
    finally:
        await client.aclose()
