"""Fixtures for tests/cos: clients configured for a `cosfs serve` process (tests/conftest.py)."""

from __future__ import annotations

import pytest

from cosfs.config import CosConfig
from cosfs.cos.auth import Credentials
from cosfs.cos.client import CosClient
from cosfs.credentials import StaticCredentials
from tests.conftest import ServerProcess


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
