"""Fixtures of the application tests: real mounts (from tests/fuse) and an SDK view of the bucket."""

from __future__ import annotations

import pytest

from tests.fuse.conftest import expect_log, mount_factory  # noqa: F401  (re-exported fixtures)
from tests.logcheck import REFUSAL_IS_A_WARNING, declare_for
from tests.write.bucket import Bucket

# What tests of this directory expect in their daemon's log, declared here because their files
# could not be edited when the log check landed: move into the tests as expect_log(...).
# BUG: see REFUSAL_IS_A_WARNING. cp -a sets system.posix_acl_access on every file it copies.
declare_for("tests/apps/test_apps.py::test_cp_a_a_tree",
            r"^WARNING cosfs\.fuse_ops: setxattr failed \(EINVAL\): only user\.\* extended attributes can be stored",
            why=REFUSAL_IS_A_WARNING)
# BUG: see REFUSAL_IS_A_WARNING. git links temporary objects into place, and renames them when
# link() fails.
declare_for("tests/apps/test_apps.py::test_git_repository_on_the_mount",
            r"^WARNING cosfs\.fuse_ops: link failed \(EPERM\): hard links cannot be stored in COS$",
            why=REFUSAL_IS_A_WARNING)


@pytest.fixture
def bucket(cos_server) -> Bucket:
    return Bucket(cos_server)
