"""Uploads COS refuses for good (issue 21, section 3): the close fails once, the data is kept
and listed in `cosfs status`, nothing is retried (not later, not at the next mount) until the
operator asks with `cosfs sync --retry-failed`, and `cosfs discard` drops it.

A public-read bucket mounted anonymously is the refusal: reads work, every write is 403."""

from __future__ import annotations

import errno
import json
import os
import time

import pytest

from tests.fuse.conftest import count_requests, sdk_client, unmount

REFUSED_LOG = r"^ERROR cosfs\.write\.owner: COS refused the upload of {key} for good"


def _status(mountpoint) -> dict:
    return json.loads(os.getxattr(mountpoint, "user.cosfs.status"))


def _pending(mountpoint) -> dict[str, dict]:
    return {item["key"]: item for item in _status(mountpoint)["pending"]}


def _refused_write(path, data: bytes) -> None:
    with pytest.raises(OSError) as failure:
        path.write_bytes(data)
    assert failure.value.errno == errno.EIO


def _puts_of(server, since: int, key: str) -> int:
    return sum(1 for line in server.access_lines(settled=True)[since:]
               if line.split()[1] in ("PUT", "POST") and line.split()[2].endswith("/" + key))


def test_a_refused_upload_fails_once_is_kept_and_waits_for_the_operator(cos_server, mount_factory, expect_log):
    sdk = sdk_client(cos_server)
    sdk.put_bucket_acl(Bucket=cos_server.bucket, ACL="public-read")
    expect_log(REFUSED_LOG.format(key="kept"), count=1, why="the bucket is read-only for anonymous writers")
    expect_log(REFUSED_LOG.format(key="dropped"), count=1, why="the bucket is read-only for anonymous writers")
    expect_log(r"^WARNING cosfs\.write\.owner: (kept|dropped) stays staged: COS refused its upload", count=2,
               why="the remount keeps both refused files staged and says so")
    expect_log(r"^WARNING cosfs\.write\.owner: discarded the staged data of dropped", count=1,
               why="the operator discards one")
    expect_log(r"^WARNING cosfs\.cos\.client: put_object '(kept|dropped)' failed: status=403 code=AccessDenied",
               count=2, why="the one attempt of each")
    expect_log(r"^WARNING cosfs\.fuse_ops: (flush|fsync) failed \(EIO\): COS refused the upload of (kept|dropped)",
               count=4, why="the close of each, then an fsync and its close")
    expect_log(r"^WARNING cosfs\.mount: 2 file\(s\) COS refused stay staged", count=1, why="the first unmount")
    m = mount_factory(cos_server, "public_bucket=1", name="anon")
    before = len(cos_server.access_lines(settled=True))
    _refused_write(m.path / "kept", b"precious bytes")
    _refused_write(m.path / "dropped", b"unwanted")
    assert _puts_of(cos_server, before, "kept") == 1
    pending = _pending(m.path)
    assert pending["kept"]["state"] == "refused" and "AccessDenied" in pending["kept"]["error"]
    assert pending["kept"]["retry_in_s"] is None
    assert os.getxattr(m.path / "kept", "user.cosfs.state") == b"refused"
    assert (m.path / "kept").read_bytes() == b"precious bytes"  # the data is kept and readable
    os.setxattr(m.path, "user.cosfs.sync", b"1")  # a plain sync leaves refused files alone
    with pytest.raises(OSError) as failure:  # fsync reports the refusal again, without a request
        fd = os.open(m.path / "kept", os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    assert failure.value.errno == errno.EIO
    assert _puts_of(cos_server, before, "kept") == 1

    # The next mount on the same cache directory keeps it refused: no PUT.
    unmount(m.path, m.process)
    m = mount_factory(cos_server, "public_bucket=1", name="anon")
    before = len(cos_server.access_lines(settled=True))
    os.setxattr(m.path, "user.cosfs.sync", b"1")
    assert _pending(m.path)["kept"]["state"] == "refused"
    assert (m.path / "kept").read_bytes() == b"precious bytes"
    assert _puts_of(cos_server, before, "kept") == 0

    # The operator discards one, fixes the bucket and retries the other.
    os.setxattr(m.path, "user.cosfs.discard", b"dropped")
    assert "dropped" not in _pending(m.path)
    assert not (m.path / "dropped").exists()
    with pytest.raises(OSError) as failure:
        os.setxattr(m.path, "user.cosfs.discard", b"kept-not")
    assert failure.value.errno == errno.ENOENT
    sdk.put_bucket_acl(Bucket=cos_server.bucket, ACL="public-read-write")
    os.setxattr(m.path, "user.cosfs.sync", b"retry-failed")
    deadline = time.monotonic() + 30
    while _status(m.path)["dirty_files"]:
        assert time.monotonic() < deadline, _status(m.path)
        time.sleep(0.05)
    assert sdk.get_object(Bucket=cos_server.bucket, Key="kept")["Body"].get_raw_stream().read() == b"precious bytes"
    counts = count_requests(cos_server, before)
    assert counts.get("PUT", 0) >= 1
