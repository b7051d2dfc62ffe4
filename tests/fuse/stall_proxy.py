"""A TCP proxy in front of a server that can be told to stall: from then on it takes
connections and bytes and answers nothing (a broken load balancer, a firewall that swallows
packets). Threads only: the test process has no trio loop."""

from __future__ import annotations

import select
import socket
import threading


class StallProxy:
    def __init__(self, upstream: str) -> None:
        host, port = upstream.split("://", 1)[1].rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.stalled = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            if self.stalled.is_set():
                continue  # held open, never read from nor answered
            upstream = socket.create_connection(self._upstream)
            self._sockets.append(upstream)
            thread = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while not self._closed.is_set():
            readable, _, _ = select.select(list(peers), [], [], 0.1)
            if self.stalled.is_set():
                continue  # bytes stay in the kernel's buffers; nothing moves any more
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                peers[sock].sendall(data)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for thread in self._threads[1:]:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()
