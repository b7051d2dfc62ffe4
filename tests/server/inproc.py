"""`cosfs serve` inside the test's own trio loop, for tests that must reach into it (pause a
worker thread, watch fsync calls) or restart it on the same root: `async with
in_process_server(root) as server:` gives an object CosHttp accepts, like tests/conftest.py's
ServerProcess; `server.restart()` loads the root again as a new process would."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from cosfs.server.app import App
from cosfs.server.authn import Authenticator
from cosfs.server.common import BUCKET_RE
from cosfs.server.http import Connection, Limits, serve_listener
from cosfs.server.storage import Storage

BUCKET = "examplebucket-1250000000"


@dataclasses.dataclass
class InProcessServer:
    root: Path
    endpoint: str
    secret_id: str
    secret_key: str
    app: App
    buckets: list[str]

    @property
    def bucket(self) -> str:
        return self.buckets[0]

    @property
    def storage(self) -> Storage:
        return self.app.storage

    def restart(self) -> None:
        """Forget everything in memory and load the root again (what a new process sees)."""
        storage = Storage(self.root)
        storage.load(BUCKET_RE)
        self.app.storage = storage


@contextlib.asynccontextmanager
async def in_process_server(root: Path, buckets: tuple[str, ...] = (BUCKET,)) -> AsyncIterator[InProcessServer]:
    storage = Storage(root)
    storage.load(BUCKET_RE)
    for name in buckets:
        storage.create_bucket(name)
    secret_id, secret_key = "AKIDinproc" + secrets.token_hex(4), secrets.token_hex(16)
    app = App(storage, Authenticator({secret_id: secret_key}))
    limits = Limits()

    def make_connection(stream) -> Connection:
        return Connection(stream, app.handle, lambda status, code, message: app.error_response(status, code, message),
                          app.after_response, limits)

    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with listener, trio.open_nursery() as nursery:
        await nursery.start(serve_listener, listener, make_connection, trio.Semaphore(64))
        yield InProcessServer(root, f"http://127.0.0.1:{port}", secret_id, secret_key, app, list(buckets))
        nursery.cancel_scope.cancel()
