"""Fixtures of the write-path tests: real mounts (from tests/fuse) and an SDK view of the bucket."""

from __future__ import annotations

import pytest

from tests.fuse.conftest import expect_log, mount_factory  # noqa: F401  (re-exported fixtures)
from tests.logcheck import REFUSAL_IS_A_WARNING, declare_for
from tests.write.bucket import Bucket

# What tests of this directory expect in their daemon's log, declared here because their files
# could not be edited when the log check landed: move into the tests as expect_log(...).
# BUG: see REFUSAL_IS_A_WARNING. Random operations: rmdir or rename onto a non-empty directory
# may or may not be drawn.
for _test in ("test_random_operations_match_a_local_directory", "test_random_operations_with_write_back"):
    declare_for(f"tests/write/test_model.py::{_test}",
                r"^WARNING cosfs\.fuse_ops: (rmdir|rename) failed \(ENOTEMPTY\): ", required=False,
                why=REFUSAL_IS_A_WARNING)


@pytest.fixture
def bucket(cos_server) -> Bucket:
    return Bucket(cos_server)
