"""Fixtures for tests/cos: `cos_server`/`server_factory` as in tests/conftest.py, but closing each
stopped server's stdout pipe (otherwise its ResourceWarning fails the run under
filterwarnings=error), and clients configured for a server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cosfs.config import CosConfig
from cosfs.cos.auth import Credentials
from cosfs.cos.client import CosClient
from cosfs.credentials import StaticCredentials
from tests.conftest import ServerProcess, start_server


def _stop(server: ServerProcess) -> None:
    server.stop()
    if server.process.stdout is not None:
        server.process.stdout.close()


@pytest.fixture
def cos_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(tmp_path / "server-root", access_log=tmp_path / "access.log")
    try:
        yield server
    finally:
        _stop(server)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    started: list[ServerProcess] = []

    def factory(*extra_args: str, **kwargs) -> ServerProcess:
        root = kwargs.pop("root", None) or tmp_path / f"server-root-{len(started)}"
        kwargs.setdefault("access_log", tmp_path / f"access-{len(started)}.log")
        server = start_server(root, *extra_args, **kwargs)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            _stop(server)


def client_for(server: ServerProcess, *, secret_key: str | None = None, bucket: str | None = None,
               **config) -> CosClient:
    """A CosClient for `server` with fast retries (tests stay quick)."""
    config.setdefault("retries", 5)
    config.setdefault("retry_base_delay_s", 0.005)
    config.setdefault("retry_max_delay_s", 0.05)
    cfg = CosConfig(bucket=bucket or server.bucket, endpoint_url=server.endpoint, **config)
    creds = StaticCredentials(Credentials(server.secret_id, secret_key or server.secret_key))
    return CosClient(cfg, creds)


@pytest.fixture
async def client(cos_server):
    async with client_for(cos_server) as c:
        yield c
