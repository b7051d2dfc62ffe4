"""Durability on real mounts: kill -9 of the daemon after close() was acknowledged, a server
that fails requests, and a full cache disk.

Mounts come from mount_factory, so each daemon's log is checked at teardown: the warnings
these scenarios cause are declared with expect_log."""

from __future__ import annotations

import errno
import os
import random
import re
import subprocess
from pathlib import Path


from tests.fuse.conftest import FUSERMOUNT, is_mounted, unmount
from tests.write.barriers import pending_keys, sync, wait_until
from tests.write.bucket import Bucket, sha

MiB = 1024 * 1024


def write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def kill_daemon(mounted) -> None:
    """SIGKILL the foreground daemon (the Popen we started) and clear the dead mount."""
    mounted.process.kill()
    mounted.process.wait(timeout=10)
    subprocess.run([FUSERMOUNT, "-uz", str(mounted.path)], capture_output=True)
    assert not is_mounted(mounted.path)


def open_uploads(bucket: Bucket) -> list[dict]:
    response = bucket.sdk.list_multipart_uploads(Bucket=bucket.name)
    uploads = response.get("Upload", [])
    return uploads if isinstance(uploads, list) else [uploads]


def acknowledged_changes(m, bucket: Bucket) -> dict[str, bytes]:
    """Write a mix of changes through the mount and close them; returns the expected objects."""
    rng = random.Random(30)
    expected: dict[str, bytes] = {}
    os.mkdir(m.path / "docs")
    for i in range(5):
        data = rng.randbytes(rng.randrange(1, 200_000))
        write_file(m.path / "docs" / f"small{i}.bin", data)
        expected[f"docs/small{i}.bin"] = data
    big = rng.randbytes(20 * MiB + 333)  # past the multipart threshold: parts stream while writing
    with open(m.path / "big.bin", "wb") as handle:
        for start in range(0, len(big), MiB):
            handle.write(big[start:start + MiB])
    expected["big.bin"] = big
    # changes to objects that already exist: a patch in the middle, a truncation, an append
    patched = bytearray(bucket.get("existing.bin"))
    fd = os.open(m.path / "existing.bin", os.O_WRONLY)
    try:
        os.pwrite(fd, b"PATCH" * 100, 6 * MiB + 10)
    finally:
        os.close(fd)
    patched[6 * MiB + 10:6 * MiB + 510] = b"PATCH" * 100
    expected["existing.bin"] = bytes(patched)
    os.truncate(m.path / "shrink.txt", 4)
    expected["shrink.txt"] = b"0123"
    with open(m.path / "log.txt", "ab") as handle:
        handle.write(b"appended\n")
    expected["log.txt"] = b"first\nappended\n"
    # journaled, then renamed or unlinked before any upload
    write_file(m.path / "draft.txt", b"draft that became final")
    os.rename(m.path / "draft.txt", m.path / "docs" / "final.txt")
    expected["docs/final.txt"] = b"draft that became final"
    write_file(m.path / "temp.txt", b"never to be seen")
    os.unlink(m.path / "temp.txt")
    return expected


GONE = ("draft.txt", "temp.txt")


def seed_bucket(bucket: Bucket) -> None:
    bucket.put("existing.bin", random.Random(31).randbytes(12 * MiB))
    bucket.put("shrink.txt", b"0123456789")
    bucket.put("log.txt", b"first\n")


def test_kill_9_after_close_loses_nothing(cos_server, mount_factory, expect_log):
    bucket = Bucket(cos_server)
    seed_bucket(bucket)
    mounted = mount_factory(cos_server, "write_back_delay=30", name="crash")
    expected = acknowledged_changes(mounted, bucket)
    # close() returned after journaling: every change is pending, none is being uploaded
    # (big.bin's streamed parts are not a commit), so nothing was committed yet
    pending = pending_keys(mounted.path)
    assert {key: pending.get(key) for key in expected} == {key: "dirty" for key in expected}, pending
    assert not bucket.exists("docs/small0.bin")
    assert bucket.get("shrink.txt") == b"0123456789"
    kill_daemon(mounted)
    assert not bucket.exists("big.bin"), "the streamed upload cannot have completed before close"
    # the next mount with the same cache directory finishes every acknowledged change
    expect_recovery(expect_log, expected)
    second = mount_factory(cos_server, name="crash")
    assert second.cache_dir == mounted.cache_dir
    for key, data in expected.items():
        bucket.wait_for(key, data, timeout_s=20)
    assert [key for key in GONE if bucket.exists(key)] == []
    for key, data in expected.items():
        assert sha((second.path / key).read_bytes()) == sha(data), key
    assert open_uploads(bucket) == [], "multipart uploads of the crashed mount were left behind"
    staging = second.cache_dir / "staging"
    assert not list(staging.glob("*.json")), "journal entries remain after recovery"


RECOVERY = r"WARNING cosfs\.[\w.]+: finishing the upload of {} journaled by an earlier mount$"


def expect_recovery(expect_log, keys) -> None:
    """The next mount says, once per journaled file, that it finishes an earlier mount's upload."""
    for key in keys:
        expect_log(RECOVERY.format(re.escape(key)), count=1, why="the daemon was killed with this change journaled")


def test_kill_9_while_uploads_are_in_flight(server_factory, mount_factory, expect_log):
    """Uploads already running (slow server) when the daemon dies: the next mount resumes them."""
    server = server_factory("--fault", "delay=150ms")
    bucket = Bucket(server)
    seed_bucket(bucket)
    mounted = mount_factory(server, "write_back_delay=0.1", name="crash")
    expected = acknowledged_changes(mounted, bucket)
    last = random.Random(34).randbytes(12 * MiB)  # one PUT, starting 0.1 s after close
    write_file(mounted.path / "last.bin", last)
    expected["last.bin"] = last
    # kill as soon as the daemon reports an upload in progress
    wait_until(lambda: [key for key, state in pending_keys(mounted.path).items() if state == "uploading"],
               "the daemon reported an upload in progress", timeout_s=10, interval_s=0.01)
    kill_daemon(mounted)
    incomplete = [key for key, data in expected.items() if not bucket.exists(key) or bucket.get(key) != data]
    assert incomplete, "every upload had finished before the kill: the test proves nothing"
    # journaled when the daemon died: surely those not (fully) in the bucket; the others only
    # if the kill came between their upload and the removal of their journal entry
    expect_recovery(expect_log, incomplete)
    expect_log(RECOVERY.format(".+"), why="uploads finished at the kill may still be journaled")
    mount_factory(server, name="crash")  # the remount recovers the journal
    for key, data in expected.items():
        bucket.wait_for(key, data, timeout_s=30)
    assert [key for key in GONE if bucket.exists(key)] == []
    assert open_uploads(bucket) == [], "multipart uploads of the crashed mount were left behind"


def test_copy_a_tree_through_a_failing_server(server_factory, mount_factory, expect_log, tmp_path):
    server = server_factory("--fault", "503=0.1,500=0.02,seed=3")
    # A request failing QUIET_RETRIES times in a row is retried with a warning; whether one
    # does depends on how the seeded faults fall on the requests. Giving up is never expected.
    expect_log(r"^WARNING cosfs\.cos\.client: \w+ .* failed \(try \d+: status=50[03] .*\); retrying in [\d.]+ s$",
               required=False, why="the server fails 12% of requests at random")
    bucket = Bucket(server, retries=12)
    rng = random.Random(32)
    source = tmp_path / "tree"
    files: dict[str, bytes] = {}
    for i in range(48):
        rel = f"d{i % 4}/sub{i % 3}/f{i}.bin"
        files[rel] = rng.randbytes(rng.randrange(0, 300_000))
    files["large/a.bin"] = rng.randbytes(20 * MiB + 1)
    files["large/b.bin"] = rng.randbytes(17 * MiB)
    for rel, data in files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(data)
    m = mount_factory(server)
    result = subprocess.run(["cp", "-r", str(source), str(m.path / "tree")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    diff = subprocess.run(["diff", "-r", str(source), str(m.path / "tree")], capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout[:2000]
    keys = set(bucket.keys("tree/"))
    for rel, data in files.items():
        assert "tree/" + rel in keys, rel
        assert sha(bucket.get("tree/" + rel)) == sha(data), rel
    assert open_uploads(bucket) == []
    failures = [line for line in server.access_lines() if line.split()[4] in ("500", "503")]
    assert len(failures) >= 5, "the server injected (almost) no faults: the test proves nothing"


def test_full_cache_disk_gives_enospc_and_corrupts_nothing(cos_server, mount_factory, expect_log, tmp_path):
    bucket = Bucket(cos_server)
    # ensure_diskfree (default: multipart_size) refuses the write that would leave less than
    # that free, before the disk is actually full.
    expect_log(r"^WARNING cosfs\.fuse_ops: write failed \(ENOSPC\): the cache disk (is full|would keep less than "
               r"ensure_diskfree)", count=1, why="the cache disk is (nearly) full")
    expect_log(r"^WARNING cosfs\.fuse_ops: flush failed \(ENOSPC\): the cache disk is full", required=False,
               why="close() reports ENOSPC when the journal itself no longer fits")
    expect_log(r"^WARNING cosfs\.[\w.]+: will retry the upload of huge\.bin in \d+ s$", required=False,
               why="the background commit of what was acknowledged fails on the full disk, unless the unlink "
                   "below comes first")
    expect_log(r"^WARNING cosfs\.blocks: block cache disk full under .*; serving from memory only$", required=False,
               why="reading before.bin back while the disk is full, if ensure_diskfree did not keep room")
    cache = tmp_path / "small-cache"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(cache)], check=True)
    mounted = None
    try:
        mounted = mount_factory(cos_server, f"cache_dir={cache}", name="full")
        rng = random.Random(33)
        before = rng.randbytes(4 * MiB)
        write_file(mounted.path / "before.bin", before)
        assert bucket.get("before.bin") == before
        data = rng.randbytes(40 * MiB)
        acked = 0
        error = None
        fd = os.open(mounted.path / "huge.bin", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            while acked < len(data):
                acked += os.write(fd, data[acked:acked + MiB])
        except OSError as exc:
            error = exc
        finally:
            try:
                os.close(fd)
            except OSError as exc:
                error = error or exc
        assert error is not None and error.errno == errno.ENOSPC, (error, acked)
        assert acked < len(data)
        # nothing corrupted: the object is absent or exactly the acknowledged bytes
        if bucket.exists("huge.bin"):
            got = bucket.get("huge.bin")
            assert got == data[:len(got)] and len(got) <= acked, (len(got), acked)
        assert bucket.get("before.bin") == before
        assert (mounted.path / "before.bin").read_bytes() == before
        # once the failed file is gone, the mount writes again
        if os.path.exists(mounted.path / "huge.bin"):
            os.unlink(mounted.path / "huge.bin")
        write_file(mounted.path / "after.bin", b"after")
        assert bucket.get("after.bin") == b"after"
    finally:
        if mounted is not None:  # before the cache's tmpfs goes; mount_factory checks the log
            unmount(mounted.path, mounted.process)
        subprocess.run(["umount", str(cache)], check=False)
        if os.path.ismount(cache):
            subprocess.run(["umount", "-l", str(cache)], check=False)


def test_kill_9_with_an_unlinked_file_still_open(cos_server, mount_factory, expect_log):
    """An open file whose name was removed has no key: a crash must not make the next mount
    upload it under any name, nor leave it pending forever."""
    bucket = Bucket(cos_server)
    mounted = mount_factory(cos_server, "write_back_delay=30", name="crash")
    write_file(mounted.path / "kept.txt", b"kept")
    fd = os.open(mounted.path / "scratch.bin", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"scratch " * 1000)
        os.fsync(fd)  # committed under its name, then unlinked while open
        os.unlink(mounted.path / "scratch.bin")
        os.write(fd, b"more scratch")
        os.fsync(fd)
        assert "kept.txt" in pending_keys(mounted.path)  # journaled, not uploaded
        kill_daemon(mounted)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # the daemon is gone
    expect_recovery(expect_log, ["kept.txt"])
    second = mount_factory(cos_server, name="crash")
    # barrier: whatever the crashed mount left pending is started now and finished (or
    # dropped); after that nothing is left that could still upload
    settled = sync(second.path)
    assert bucket.get("kept.txt") == b"kept"
    assert bucket.keys() == ["kept.txt"]
    assert settled["uploads_committed"] == 1, settled
    assert os.listdir(second.path) == ["kept.txt"]
