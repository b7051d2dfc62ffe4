"""COSFS's meaning, not only its spelling, on real mounts: uid=/gid= own every entry, the
mount point's mode, the defaults of objects without metadata, ensure_diskfree refusing
writes, direct_io and bucket_size."""

from __future__ import annotations

import errno
import os
import stat
import subprocess

import pytest

from tests.fuse.conftest import unmount
from tests.write.bucket import Bucket

WWW = {"user": 33, "group": 33, "extra_groups": []}


@pytest.fixture
def shared(tmp_path_factory):
    """A directory every local user can traverse (pytest's temporary root is private)."""
    import shutil
    import tempfile

    base = tempfile.mkdtemp(prefix="cosfs-compat-", dir="/tmp")
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_uid_and_gid_own_every_entry_as_libfuse_makes_them(cos_server, mount_factory, expect_log, shared):
    """allow_other,uid=33,gid=33: a web server setup; stored owners do not matter."""
    from pathlib import Path

    from tests.fuse.conftest import start_mount

    bucket = Bucket(cos_server)
    bucket.put("site/index.html", b"<html>", Metadata={"x-cos-meta-uid": "0", "x-cos-meta-gid": "0",
                                                       "x-cos-meta-mode": str(stat.S_IFREG | 0o644)})
    mounted = start_mount(cos_server, Path(shared), "allow_other", "uid=33", "gid=33", name="www")
    expect_log.watch(mounted.log_file, mounted.stderr_file)
    try:
        root = mounted.path
        for path in (root, root / "site", root / "site" / "index.html"):
            st = os.stat(path)
            assert (st.st_uid, st.st_gid) == (33, 33), path
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o777  # allow_other: COSFS's mount point
        result = subprocess.run(["sh", "-c", f"echo updated > {root}/site/index.html && cat {root}/site/index.html"],
                                capture_output=True, text=True, timeout=60, **WWW)
        assert result.returncode == 0 and result.stdout == "updated\n", result
        assert bucket.get("site/index.html") == b"updated\n"
    finally:
        unmount(mounted.path, mounted.process)


@pytest.mark.parametrize(("options", "mode"), [((), 0o700), (("allow_other",), 0o777),
                                                (("allow_other", "mp_umask=027"), 0o750)])
def test_mount_point_mode_follows_cosfs(cos_server, mount_factory, options, mode):
    mounted = mount_factory(cos_server, *options)
    assert stat.S_IMODE(os.stat(mounted.path).st_mode) == mode


def test_objects_without_metadata_show_cosfs_defaults(cos_server, mount_factory):
    bucket = Bucket(cos_server)
    bucket.put("plain.txt", b"no metadata")
    bucket.put("implicit/child.txt", b"x")
    mounted = mount_factory(cos_server)
    for name, kind in (("plain.txt", stat.S_IFREG), ("implicit", stat.S_IFDIR)):
        st = os.stat(mounted.path / name)
        assert st.st_mode == kind | 0o777 and (st.st_uid, st.st_gid) == (0, 0), (name, oct(st.st_mode))
    other = mount_factory(cos_server, "default_permission=640")
    assert stat.S_IMODE(os.stat(other.path / "plain.txt").st_mode) == 0o640


def test_ensure_diskfree_refuses_writes_before_the_disk_fills(cos_server, mount_factory, expect_log, tmp_path):
    """The cache disk has 24 MiB; ensure_diskfree=16 leaves room for about 8 MiB of staged data."""
    expect_log(r"^WARNING cosfs\.fuse_ops: write failed \(ENOSPC\): the cache disk would keep less than "
               r"ensure_diskfree", count=1, why="the write that would cross ensure_diskfree")
    cache = tmp_path / "small-cache"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(cache)], check=True)
    mounted = None
    try:
        mounted = mount_factory(cos_server, f"cache_dir={cache}", "ensure_diskfree=16", "write_back_delay=3600")
        fd = os.open(mounted.path / "big.bin", os.O_CREAT | os.O_WRONLY, 0o644)
        written, error = 0, None
        try:
            while written < 20 * 2**20:
                written += os.write(fd, b"x" * 2**20)
        except OSError as exc:
            error = exc
        finally:
            os.close(fd)
        assert error is not None and error.errno == errno.ENOSPC
        assert 4 * 2**20 <= written <= 9 * 2**20, written
        free = os.statvfs(cache).f_bavail * os.statvfs(cache).f_frsize
        assert free >= 14 * 2**20  # what ensure_diskfree keeps (the journal takes a little)
    finally:
        if mounted is not None:
            unmount(mounted.path, mounted.process)
        subprocess.run(["umount", str(cache)], check=False)


def test_bucket_size_is_what_statfs_reports(cos_server, mount_factory):
    mounted = mount_factory(cos_server, "bucket_size=2TiB")
    stats = os.statvfs(mounted.path)
    assert stats.f_blocks * stats.f_frsize == 2 * 2**40


async def test_direct_io_opens_bypass_the_page_cache(tmp_path):
    import trio

    from cosfs.config import FsConfig
    from cosfs.cos.memory import MemoryStore
    from cosfs.filesystem import CosFilesystem
    from cosfs.inodes import ROOT_INO

    store = MemoryStore()
    await store.put_object("f", b"data")
    async with trio.open_nursery() as nursery:
        fs = CosFilesystem(store, FsConfig(direct_io=True), tmp_path / "cache")
        await fs.start(nursery)
        attr = await fs.lookup(ROOT_INO, "f")
        first, second = await fs.open(attr.ino, write=False), await fs.open(attr.ino, write=False)
        assert first.direct_io and second.direct_io and not second.keep_cache
        nursery.cancel_scope.cancel()
