"""Races on real mounts: a directory rename against writes to files under it, two mounts on
one bucket editing the same object, two mounts on one cache directory."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading

import pytest

from tests.write.barriers import status, sync, wait_until
from tests.write.bucket import Bucket


def copied(server, key: str) -> bool:
    """The server's access log shows a PUT of `key` (the rename walk copying it)."""
    return any(line.split()[1:3] == ["PUT", f"/{key}"] or line.split()[1:3] == ["PUT", f"/{server.bucket}/{key}"]
               for line in server.access_lines())


@pytest.mark.parametrize("delay", ["0", "2"])
def test_write_closed_while_its_directory_is_renamed_is_not_lost(server_factory, mount_factory, delay):
    """A file under dir1 written and closed after the walk copied its key
    must end up, with its new content, under dir2; nothing is left under dir1."""
    server = server_factory("--fault", "delay=60ms")
    bucket = Bucket(server)
    for i in range(16):
        bucket.put(f"dir1/f{i:02d}", b"old %d" % i)
    mounted = mount_factory(server, f"write_back_delay={delay}")
    handle = open(mounted.path / "dir1" / "f00", "r+b")
    renaming = subprocess.Popen(["mv", str(mounted.path / "dir1"), str(mounted.path / "dir2")])
    try:
        wait_until(lambda: copied(server, "dir2/f00"), "the rename walk copied dir1/f00")
        handle.write(b"new content written during the rename")
        handle.close()  # acknowledged: close returned 0
    finally:
        assert renaming.wait(timeout=60) == 0
    sync(mounted.path)
    assert bucket.keys("dir1/") == []
    assert bucket.get("dir2/f00") == b"new content written during the rename"
    assert (mounted.path / "dir2" / "f00").read_bytes() == b"new content written during the rename"
    assert not (mounted.path / "dir1").exists()
    assert [bucket.get(f"dir2/f{i:02d}") for i in range(1, 16)] == [b"old %d" % i for i in range(1, 16)]


def test_writes_racing_a_rename_all_land_under_the_new_name(server_factory, mount_factory):
    """Several writers keep closing files under the directory while it moves."""
    server = server_factory("--fault", "delay=30ms")
    bucket = Bucket(server)
    for i in range(8):
        bucket.put(f"src/f{i}", b"v0")
    mounted = mount_factory(server)
    handles = [open(mounted.path / "src" / f"f{i}", "r+b") for i in range(8)]
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            handles[i].write(b"v1 from writer %d" % i)
            handles[i].close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    renaming = subprocess.Popen(["mv", str(mounted.path / "src"), str(mounted.path / "dst")])
    wait_until(lambda: copied(server, "dst/f0"), "the rename walk started")
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert renaming.wait(timeout=60) == 0 and not errors, errors
    assert bucket.keys("src/") == []
    assert [bucket.get(f"dst/f{i}") for i in range(8)] == [b"v1 from writer %d" % i for i in range(8)]


def test_two_mounts_editing_one_object_never_lose_an_update(cos_server, bucket, mount_factory, expect_log):
    """Mount A edits an object that mount B replaced since A read it: A's
    close fails, B's version stays, A's bytes are kept aside and named in the log."""
    original = os.urandom(2 * 1024 * 1024)
    bucket.put("shared.bin", original)
    a = mount_factory(cos_server)
    b = mount_factory(cos_server)
    with open(a.path / "shared.bin", "r+b") as handle_a:
        assert handle_a.read(4096) == original[:4096]
        (b.path / "shared.bin").write_bytes(b"B's version")
        assert bucket.get("shared.bin") == b"B's version"
        handle_a.seek(1000)
        handle_a.write(b"A's edit")
        with pytest.raises(OSError) as raised:
            handle_a.close()
    assert raised.value.errno == errno.EIO
    expect_log(r"^ERROR cosfs\.write\.owner: conflict on shared\.bin: the object was replaced by someone else .*"
               r"kept in .*conflicts/", count=1, why="mount B replaced the object mount A was editing")
    expect_log(r"^WARNING cosfs\.fuse_ops: flush failed \(EIO\): shared\.bin changed in COS", count=1,
               why="the conflict fails close()")
    assert bucket.get("shared.bin") == b"B's version"
    assert status(a.path)["conflicts"] == 1 and status(a.path)["dirty_files"] == 0
    (kept,) = (a.cache_dir / cos_server.bucket / "conflicts").glob("*.data")
    content = kept.read_bytes()
    assert content[1000:1008] == b"A's edit" and len(content) == len(original)
    assert (a.path / "shared.bin").read_bytes() == b"B's version"


def test_one_cache_directory_serves_one_mount(cos_server, bucket, mount_factory, tmp_path):
    """A second mount of the same bucket on the same cache directory is
    refused with one line; mounts of other prefixes share a `use_cache` safely."""
    shared_cache = tmp_path / "shared-cache"
    bucket.put("a/x", b"a")
    bucket.put("b/y", b"b")
    first = mount_factory(cos_server, f"cache_dir={shared_cache}", bucket=f"{cos_server.bucket}:/a")
    second = mount_factory(cos_server, f"cache_dir={shared_cache}", bucket=f"{cos_server.bucket}:/b")
    assert (first.path / "x").read_bytes() == b"a" and (second.path / "y").read_bytes() == b"b"
    assert sorted(p.name for p in shared_cache.iterdir()) == [f"{cos_server.bucket}:a", f"{cos_server.bucket}:b"]
    passwd = tmp_path / "mnt0.passwd"
    third = tmp_path / "third"
    third.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "cosfs", "mount", f"{cos_server.bucket}:/a", str(third), "-o",
         f"url={cos_server.endpoint},passwd_file={passwd},use_cache={shared_cache},"
         f"log_file={tmp_path / 'third.log'}"],  # (so no note of where the log goes: one line in all)
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use by another cosfs mount" in lines[0], result.stderr
    assert not third.is_mount()
