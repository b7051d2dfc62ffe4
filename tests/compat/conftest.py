"""Fixtures of the compatibility tests: real mounts and their log check (tests/fuse)."""

from tests.fuse.conftest import expect_log, mount_factory  # noqa: F401  (re-exported fixtures)
