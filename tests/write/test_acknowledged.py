"""What a crash may leave in the bucket is an acknowledged state, on real mounts (issue 19,
section 1): each test reproduces a case that lost or replaced acknowledged data before the
write side had one owner, with the daemon killed (SIGKILL) and a remount on the same cache
directory finishing what was journaled."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from tests.write.barriers import sync
from tests.write.bucket import Bucket
from tests.write.test_durability import kill_daemon, open_uploads

MiB = 1024 * 1024
RECOVERY = r"^WARNING cosfs\.write\.owner: finishing the upload of .* journaled by an earlier mount$"


def close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError as exc:  # the daemon is gone
        assert exc.errno in (errno.ENOTCONN, errno.EIO), exc


def test_an_unacknowledged_rewrite_never_replaces_the_acknowledged_object(cos_server, mount_factory, expect_log):
    """Item 1.1 (durable close): old.bin (1 MB) closed; reopened with O_TRUNC, 20 MiB
    written (its parts stream), never closed; kill. The bucket holds the acknowledged 1 MB
    or the empty file of the O_TRUNC, never a prefix of the unacknowledged write, and no
    multipart upload of ours is left behind."""
    expect_log(RECOVERY, required=False, why="nothing is journaled here, but a record would say so")
    bucket = Bucket(cos_server)
    old = os.urandom(1_000_000)
    mounted = mount_factory(cos_server, name="crash")
    with open(mounted.path / "old.bin", "wb") as handle:
        handle.write(old)
    fd = os.open(mounted.path / "old.bin", os.O_WRONLY | os.O_TRUNC)
    chunk = os.urandom(MiB)
    for _ in range(20):
        os.write(fd, chunk)
    kill_daemon(mounted)
    close_quietly(fd)
    again = mount_factory(cos_server, name="crash")
    sync(again.path)
    assert bucket.get("old.bin") in (old, b"")
    assert open_uploads(bucket) == []


def test_recovery_keeps_a_new_file_of_a_renamed_files_old_name(cos_server, mount_factory, expect_log):
    """Item 1.2 (write_back_delay): first > d/f0; mv d/f0 d/f4; second > d/f0; +more >> d/f4;
    kill: both files come back with what their closes acknowledged."""
    expect_log(RECOVERY, count=2, why="the daemon was killed with both files journaled")
    bucket = Bucket(cos_server)
    mounted = mount_factory(cos_server, "write_back_delay=3600", name="crash")
    d = mounted.path / "d"
    d.mkdir()
    (d / "f0").write_bytes(b"first")
    os.rename(d / "f0", d / "f4")
    (d / "f0").write_bytes(b"second")
    with open(d / "f4", "ab") as handle:
        handle.write(b"+more")
    kill_daemon(mounted)
    again = mount_factory(cos_server, "write_back_delay=3600", name="crash")
    sync(again.path)
    assert {key: bucket.get(key) for key in bucket.keys() if not key.endswith("/")} == {
        "d/f0": b"second", "d/f4": b"first+more"}


@pytest.mark.parametrize("delay", ["0", "3600"])
def test_metadata_that_cos_would_refuse_is_refused_at_setxattr(cos_server, mount_factory, expect_log, delay):
    """Item 1.4: xattrs that would take the object's user metadata past COS's 2 KB fail with
    E2BIG (setxattr(2)), on an open file with staged changes as on a clean one; close then
    succeeds and stores what fitted, and nothing is left to retry for ever."""
    expect_log(r"^WARNING cosfs\.fuse_ops: setxattr failed \(E2BIG\): the file's metadata would exceed COS's 2048 ",
               count=2, why="an application's xattrs do not fit COS's user metadata, on two files")
    bucket = Bucket(cos_server)
    m = mount_factory(cos_server, f"write_back_delay={delay}")
    value = b"v" * 100
    with open(m.path / "open.bin", "wb") as handle:
        handle.write(b"data")
        fitted = []
        for i in range(20):
            try:
                os.setxattr(m.path / "open.bin", f"user.attr{i:02d}", value)
            except OSError as exc:
                assert exc.errno == errno.E2BIG, exc
                break
            fitted.append(i)
        else:
            pytest.fail("twenty 100-byte xattrs all fitted in COS's 2 KB")
    assert 5 < len(fitted) < 19
    (m.path / "clean.bin").write_bytes(b"clean")
    sync(m.path)
    for i in range(20):
        try:
            os.setxattr(m.path / "clean.bin", f"user.attr{i:02d}", value)
        except OSError as exc:
            assert (exc.errno, i) == (errno.E2BIG, len(fitted)), exc
            break
    sync(m.path)
    assert bucket.get("open.bin") == b"data"
    assert os.getxattr(m.path / "open.bin", f"user.attr{fitted[-1]:02d}") == value
    assert os.getxattr(m.path / "clean.bin", f"user.attr{fitted[-1]:02d}") == value


def test_a_file_created_by_path_during_its_directorys_rename_lands_under_the_new_name(server_factory,
                                                                                     mount_factory):
    """Item 1.5: a create by the old path while the directory is being renamed (every reply
    of the server 30 ms late, 40 keys to move) ends under the new name, or fails with
    ENOENT; the old directory never comes back."""
    server = server_factory("--fault", "delay=30ms")
    bucket = Bucket(server)
    m = mount_factory(server)
    (m.path / "old").mkdir()
    for i in range(40):
        (m.path / "old" / f"f{i:02d}").write_bytes(b"x")
    renamed = threading.Event()

    def rename() -> None:
        os.rename(m.path / "old", m.path / "new")
        renamed.set()

    thread = threading.Thread(target=rename)
    thread.start()
    deadline = time.monotonic() + 10
    while not any(key.startswith("new/") for key in bucket.keys("new/")) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the bucket: the rename has started copying
    assert not renamed.is_set(), "the rename ended before the create could race it"
    try:
        with open(m.path / "old" / "late.txt", "wb") as handle:
            handle.write(b"late")
        created = True
    except FileNotFoundError:
        created = False
    thread.join(60)
    assert renamed.is_set()
    sync(m.path)
    keys = bucket.keys()
    assert not [key for key in keys if key.startswith("old")], keys
    if created:
        assert bucket.get("new/late.txt") == b"late"


@pytest.mark.parametrize(("written", "cut"), [(10, 4), (20, 5)])
def test_shrinking_a_file_while_its_parts_stream_keeps_the_daemon_and_the_data(cos_server, mount_factory, written,
                                                                               cut):
    """Item 1.6: write N MiB (parts stream past 16 MiB), ftruncate to M MiB, write 1 MiB
    more, close: the daemon stays up and the object is exactly that."""
    bucket = Bucket(cos_server)
    m = mount_factory(cos_server)
    data = os.urandom(written * MiB)
    more = os.urandom(MiB)
    with open(m.path / "shrunk.bin", "wb") as handle:
        for start in range(0, len(data), MiB):
            handle.write(data[start:start + MiB])
        handle.truncate(cut * MiB)
        handle.seek(cut * MiB)
        handle.write(more)
    assert m.process.poll() is None
    assert bucket.get("shrunk.bin") == data[:cut * MiB] + more
    assert (m.path / "shrunk.bin").read_bytes() == data[:cut * MiB] + more
