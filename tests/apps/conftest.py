"""Fixtures of the application tests: real mounts (from tests/fuse) and an SDK view of the bucket.

Every application test runs twice: against `cosfs serve` as it is, and with its replies
re-framed the ways deployed servers and proxies write them (chunked and split anywhere,
extensions and trailers, 100 Continue, keep-alive connections closed without notice:
cosfs/server/framing.py), so that the mount is checked against each framing end to end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ServerProcess, start_server
from tests.fuse.conftest import expect_log, mount_factory  # noqa: F401  (re-exported fixtures)
from tests.write.bucket import Bucket

REFRAMED = "frame=chunked+extensions+split+continue+idle-close,seed=11"


@pytest.fixture(params=["plain", "reframed"])
def cos_server(request, tmp_path) -> Iterator[ServerProcess]:
    extra = () if request.param == "plain" else ("--fault", REFRAMED)
    server = start_server(tmp_path / "server-root", *extra, access_log=tmp_path / "access.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(cos_server) -> Bucket:
    return Bucket(cos_server)
