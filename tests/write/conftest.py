"""Fixtures of the write-path tests: real mounts (from tests/fuse) and an SDK view of the bucket."""

from __future__ import annotations

import pytest

from tests.fuse.conftest import expect_log, mount_factory  # noqa: F401  (re-exported fixtures)
from tests.write.bucket import Bucket


@pytest.fixture
def bucket(cos_server) -> Bucket:
    return Bucket(cos_server)
