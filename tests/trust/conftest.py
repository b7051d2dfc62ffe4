"""Fixtures of the trust tests: real mounts (tests/fuse), the SDK's view of the bucket, and
mounts that other local users can reach (allow_other)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuse.conftest import expect_log, mount_factory, start_mount, unmount  # noqa: F401  (re-exported)
from tests.write.bucket import Bucket


@pytest.fixture
def bucket(cos_server) -> Bucket:
    return Bucket(cos_server)


@pytest.fixture
def shared_mount(expect_log) -> Iterator:  # noqa: F811 (fixture)
    """`shared_mount(server, *options)`: a mount under a directory every local user can
    traverse (pytest's own temporary directories are private to root), so that tests can
    act as another user. Unmounted and removed at teardown; its log is checked."""
    started = []
    base = Path(tempfile.mkdtemp(prefix="cosfs-shared-", dir="/tmp"))
    base.chmod(0o755)

    def factory(server, *options: str):
        mounted = start_mount(server, base, *options, name=f"mnt{len(started)}")
        started.append(mounted)
        expect_log.watch(mounted.log_file, mounted.stderr_file)
        return mounted

    try:
        yield factory
    finally:
        for mounted in started:
            unmount(mounted.path, mounted.process)
        shutil.rmtree(base, ignore_errors=True)
