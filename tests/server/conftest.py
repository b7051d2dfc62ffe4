"""Server fixtures for tests/server: the shared ones from tests/conftest.py, plus closing the
stdout pipe of each stopped server (otherwise the pipe is collected later and pytest turns the
ResourceWarning into an error under filterwarnings=error)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, start_server  # the rootdir conftest


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
