"""Permissions are what they say on an `allow_other` mount: what the bucket stores is what
other local users get, whether or not an operator listed the directory first; the cache
directory and the mount's status are private."""

from __future__ import annotations

import os
import stat
import subprocess

from tests.write.barriers import status

NOBODY = {"user": 65534, "group": 65534, "extra_groups": []}


def as_nobody(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, **NOBODY)


def stored(kind: int, mode: int, uid: int = 0, gid: int = 0) -> dict:
    """COSFS's metadata headers, as the SDK sends them."""
    return {"Metadata": {"x-cos-meta-mode": str(kind | mode), "x-cos-meta-uid": str(uid),
                         "x-cos-meta-gid": str(gid)}}


def seed(bucket) -> None:
    directory = {"ContentType": "application/x-directory"}
    bucket.put("private/", b"", **directory, **stored(stat.S_IFDIR, 0o700))
    bucket.put("private/secret.txt", b"secret", **stored(stat.S_IFREG, 0o644))
    bucket.put("public/", b"", **directory, **stored(stat.S_IFDIR, 0o755))
    bucket.put("public/open.txt", b"open to all", **stored(stat.S_IFREG, 0o644))
    bucket.put("public/mine.txt", b"root's only", **stored(stat.S_IFREG, 0o600))
    bucket.put("top.txt", b"root's only", **stored(stat.S_IFREG, 0o600))


def check_access(root) -> None:
    denied = [root / "private" / "secret.txt", root / "public" / "mine.txt", root / "top.txt"]
    for path in denied:
        result = as_nobody("cat", path)
        assert result.returncode != 0 and "Permission denied" in result.stderr, (path, result)
    result = as_nobody("cat", root / "public" / "open.txt")
    assert result.returncode == 0 and result.stdout == "open to all", result
    result = as_nobody("ls", root / "private")
    assert result.returncode != 0 and "Permission denied" in result.stderr, result
    assert stat.S_IMODE(os.stat(root / "private").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(root / "top.txt").st_mode) == 0o600


def test_stored_modes_hold_after_an_operator_lists_the_tree(cos_server, bucket, shared_mount):
    """readdir hands the kernel attributes it decides access with: with allow_other they are
    the stored ones, never the mount's defaults (else after an `ls -l` any user could read a
    0600 file)."""
    seed(bucket)
    mounted = shared_mount(cos_server, "allow_other")
    listing = subprocess.run(["ls", "-lR", mounted.path], capture_output=True, text=True, check=True)
    assert "-rw-------" in listing.stdout and "drwx------" in listing.stdout, listing.stdout
    check_access(mounted.path)


def test_stored_modes_hold_on_first_lookup(cos_server, bucket, shared_mount):
    """The same without a listing first: a directory marker's stored mode is read at lookup."""
    seed(bucket)
    mounted = shared_mount(cos_server, "allow_other")
    check_access(mounted.path)


def test_mount_status_is_for_its_owner_and_root_only(cos_server, bucket, shared_mount):
    mounted = shared_mount(cos_server, "allow_other", "write_back_delay=3600")
    (mounted.path / "pending.txt").write_bytes(b"not uploaded yet")
    assert [item["key"] for item in status(mounted.path)["pending"]] == ["pending.txt"]
    result = as_nobody("getfattr", "-n", "user.cosfs.status", mounted.path)
    assert result.returncode != 0 and "Operation not permitted" in result.stderr, result
    assert "pending" not in result.stdout
    result = as_nobody("setfattr", "-n", "user.cosfs.sync", "-v", "1", mounted.path)
    assert result.returncode != 0 and ("not permitted" in result.stderr or "denied" in result.stderr), result


def test_cache_files_and_journals_are_private(cos_server, bucket, mount_factory):
    mounted = mount_factory(cos_server, "write_back_delay=3600")
    bucket.put("read.bin", os.urandom(3 * 1024 * 1024))
    assert len((mounted.path / "read.bin").read_bytes()) == 3 * 1024 * 1024
    (mounted.path / "journaled.txt").write_bytes(b"journaled")
    found = 0
    for directory, dirs, files in os.walk(mounted.cache_dir):
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o700, (directory, name)
        for name in files:
            path = os.path.join(directory, name)
            assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
            found += 1
    assert found >= 4  # block files, a journal record, its data, the lock
