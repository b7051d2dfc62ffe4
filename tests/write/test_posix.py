"""POSIX write scenarios on a real FUSE mount of a `cosfs serve` bucket.

Every scenario is checked twice: through the mount, and in the bucket through the official
Tencent SDK (object present, content, COSFS's x-cos-meta-mode/uid/gid/mtime headers).
"""

from __future__ import annotations

import base64
import errno
import json
import os
import random
import stat
import subprocess
import time
from urllib.parse import unquote

import pytest

from tests.write.barriers import status, wait_settled, wait_until
from tests.write.bucket import Bucket, sha

MiB = 1024 * 1024
FILE_0644 = stat.S_IFREG | 0o644  # 33188
DIR_0755 = stat.S_IFDIR | 0o755  # 16877
LINK_0777 = stat.S_IFLNK | 0o777  # 41471


@pytest.fixture(autouse=True)
def fixed_umask():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def raises_errno(code: int, action, *args, **kwargs) -> None:
    with pytest.raises(OSError) as info:
        action(*args, **kwargs)
    assert info.value.errno == code, f"expected {errno.errorcode[code]}, got {info.value!r}"


def check_meta(bucket: Bucket, key: str, mode: int, *, uid: int | None = None, gid: int | None = None,
               mtime_near: float | None = None) -> dict[str, str]:
    meta = bucket.meta(key)
    assert int(meta["mode"]) == mode, (key, meta)
    assert int(meta["uid"]) == (os.getuid() if uid is None else uid), (key, meta)
    assert int(meta["gid"]) == (os.getgid() if gid is None else gid), (key, meta)
    if mtime_near is not None:
        assert abs(int(meta["mtime"]) - mtime_near) <= 5, (key, meta, mtime_near)
    return meta


def write_file(path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


# --- create, write, close ----------------------------------------------------------------


def test_create_write_close_then_read_back(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    body = b"hello, cosfs\n" * 100
    started = time.time()
    write_file(m.path / "hello.txt", body)
    # close() committed: the SDK sees the object at once, in COSFS's format
    assert bucket.get("hello.txt") == body
    check_meta(bucket, "hello.txt", FILE_0644, mtime_near=started)
    assert bucket.head("hello.txt")["content-length"] == str(len(body))
    st = os.stat(m.path / "hello.txt")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert st.st_size == len(body)
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert (m.path / "hello.txt").read_bytes() == body
    assert os.getxattr(m.path / "hello.txt", "user.cosfs.state") == b"clean"
    etag = bucket.head("hello.txt")["etag"].strip('"')
    assert os.getxattr(m.path / "hello.txt", "user.cosfs.etag").decode().strip('"') == etag
    # an empty file is an empty object
    (m.path / "empty.bin").touch()
    assert bucket.get("empty.bin") == b""
    check_meta(bucket, "empty.bin", FILE_0644)
    assert os.path.getsize(m.path / "empty.bin") == 0
    # a file in a subdirectory made through the mount
    os.mkdir(m.path / "sub")
    write_file(m.path / "sub" / "inner.bin", b"\x00\x01inner")
    assert bucket.get("sub/inner.bin") == b"\x00\x01inner"
    # a second mount reads what the first one wrote, with its metadata
    m2 = mount_factory(cos_server)
    assert (m2.path / "hello.txt").read_bytes() == body
    assert stat.S_IMODE(os.stat(m2.path / "hello.txt").st_mode) == 0o644


def test_create_with_mode_is_stored(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    fd = os.open(m.path / "secret", os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"s")
    os.close(fd)
    assert stat.S_IMODE(os.stat(m.path / "secret").st_mode) == 0o600
    check_meta(bucket, "secret", stat.S_IFREG | 0o600)
    assert bucket.get("secret") == b"s"


def test_o_excl_on_existing_gives_eexist(cos_server, bucket, mount_factory):
    bucket.put("remote.txt", b"from the sdk")
    m = mount_factory(cos_server)
    write_file(m.path / "local.txt", b"from the mount")
    for name in ("remote.txt", "local.txt"):
        raises_errno(errno.EEXIST, os.open, m.path / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    assert bucket.get("remote.txt") == b"from the sdk"
    assert bucket.get("local.txt") == b"from the mount"
    fd = os.open(m.path / "fresh.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"fresh")
    os.close(fd)
    assert bucket.get("fresh.txt") == b"fresh"


def test_o_trunc_replaces_content(cos_server, bucket, mount_factory):
    bucket.put("t.txt", b"a long original content " * 50)
    bucket.put("t0.txt", b"will become empty")
    m = mount_factory(cos_server)
    fd = os.open(m.path / "t.txt", os.O_WRONLY | os.O_TRUNC)
    assert os.fstat(fd).st_size == 0
    os.write(fd, b"short")
    os.close(fd)
    assert bucket.get("t.txt") == b"short"
    assert (m.path / "t.txt").read_bytes() == b"short"
    os.close(os.open(m.path / "t0.txt", os.O_WRONLY | os.O_TRUNC))
    assert bucket.get("t0.txt") == b""
    assert os.path.getsize(m.path / "t0.txt") == 0


def test_o_append_appends(cos_server, bucket, mount_factory):
    bucket.put("log.txt", b"line 1\n")
    m = mount_factory(cos_server)
    with open(m.path / "log.txt", "ab") as handle:
        handle.write(b"line 2\n")
    assert bucket.get("log.txt") == b"line 1\nline 2\n"
    fd = os.open(m.path / "log.txt", os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"line 3\n")
    os.lseek(fd, 0, os.SEEK_SET)  # O_APPEND ignores the position
    os.write(fd, b"line 4\n")
    os.close(fd)
    assert bucket.get("log.txt") == b"line 1\nline 2\nline 3\nline 4\n"
    assert (m.path / "log.txt").read_bytes() == b"line 1\nline 2\nline 3\nline 4\n"


def test_overwrite_in_the_middle_keeps_the_rest(cos_server, bucket, mount_factory):
    rng = random.Random(11)
    small = rng.randbytes(100_000)
    big = rng.randbytes(3 * MiB + 17)
    bucket.put("small.bin", small)
    bucket.put("big.bin", big)
    m = mount_factory(cos_server)
    expected_small = bytearray(small)
    expected_big = bytearray(big)
    fd = os.open(m.path / "small.bin", os.O_RDWR)
    try:
        assert os.pwrite(fd, b"X" * 10, 50_000) == 10
        expected_small[50_000:50_010] = b"X" * 10
        assert os.pread(fd, 30, 49_990) == bytes(expected_small[49_990:50_020])
    finally:
        os.close(fd)
    assert bucket.get("small.bin") == bytes(expected_small)
    fd = os.open(m.path / "big.bin", os.O_WRONLY)
    try:
        for offset in (MiB - 3, 2 * MiB + 500_000):  # across a block boundary, and inside one
            os.pwrite(fd, b"Y" * 4096, offset)
            expected_big[offset:offset + 4096] = b"Y" * 4096
    finally:
        os.close(fd)
    assert sha(bucket.get("big.bin")) == sha(bytes(expected_big))
    assert sha((m.path / "big.bin").read_bytes()) == sha(bytes(expected_big))


def test_truncate_shorter_and_longer(cos_server, bucket, mount_factory):
    body = bytes(range(256)) * 4  # 1024 bytes
    bucket.put("path.bin", body)
    bucket.put("fd.bin", body)
    m = mount_factory(cos_server)
    # truncate(2) by path commits at once
    os.truncate(m.path / "path.bin", 400)
    assert bucket.get("path.bin") == body[:400]
    assert os.path.getsize(m.path / "path.bin") == 400
    os.truncate(m.path / "path.bin", 2000)
    assert bucket.get("path.bin") == body[:400] + bytes(1600)
    assert (m.path / "path.bin").read_bytes() == body[:400] + bytes(1600)
    # ftruncate on an open file: shorter, then longer, then a write past the old end
    fd = os.open(m.path / "fd.bin", os.O_RDWR)
    try:
        os.ftruncate(fd, 100)
        assert os.fstat(fd).st_size == 100
        assert os.pread(fd, 200, 0) == body[:100]
        os.ftruncate(fd, 300)
        assert os.pread(fd, 400, 0) == body[:100] + bytes(200)
        os.pwrite(fd, b"end", 500)
        assert os.fstat(fd).st_size == 503
    finally:
        os.close(fd)
    expected = body[:100] + bytes(400) + b"end"
    assert bucket.get("fd.bin") == expected
    assert (m.path / "fd.bin").read_bytes() == expected
    # truncation to zero of a committed file
    os.truncate(m.path / "fd.bin", 0)
    assert bucket.get("fd.bin") == b""


def test_fallocate_extends_with_zeros_or_says_eopnotsupp(cos_server, bucket, mount_factory):
    bucket.put("alloc.bin", b"keep me")
    m = mount_factory(cos_server)
    fd = os.open(m.path / "alloc.bin", os.O_RDWR)
    try:
        try:
            os.posix_fallocate(fd, 0, 10_000)
        except OSError as exc:
            assert exc.errno == errno.EOPNOTSUPP, exc
            supported = False
        else:
            supported = True
            assert os.fstat(fd).st_size == 10_000
            assert os.pread(fd, 10_000, 0) == b"keep me" + bytes(10_000 - 7)
    finally:
        os.close(fd)
    if supported:
        assert bucket.get("alloc.bin") == b"keep me" + bytes(10_000 - 7)
    else:
        assert bucket.get("alloc.bin") == b"keep me"


def test_read_after_write_before_close_and_size_while_writing(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    path = m.path / "growing.bin"
    rng = random.Random(12)
    chunks = [rng.randbytes(size) for size in (1000, 70_000, 1 * MiB + 5)]
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        written = b""
        for chunk in chunks:
            os.write(fd, chunk)
            written += chunk
            assert os.fstat(fd).st_size == len(written)
            assert os.stat(path).st_size == len(written)
            assert os.pread(fd, len(written) + 100, 0) == written  # same descriptor
            with open(path, "rb") as other:  # another descriptor of the same mount
                assert other.read() == written
        # nothing was committed yet: a small file uploads at close
        assert not bucket.exists("growing.bin")
        # overwrite in the middle, read back before close
        os.pwrite(fd, b"MID", 500)
        written = written[:500] + b"MID" + written[503:]
        assert os.pread(fd, 10, 498) == written[498:508]
    finally:
        os.close(fd)
    assert sha(bucket.get("growing.bin")) == sha(written)


def test_fsync_returns_once_the_object_is_in_the_bucket(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    fd = os.open(m.path / "synced.bin", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"first part;")
        assert not bucket.exists("synced.bin")
        os.fsync(fd)
        assert bucket.get("synced.bin") == b"first part;"  # before close
        check_meta(bucket, "synced.bin", FILE_0644)
        os.write(fd, b"second part")
        os.fdatasync(fd)
        assert bucket.get("synced.bin") == b"first part;second part"
        os.write(fd, b"!")
    finally:
        os.close(fd)
    assert bucket.get("synced.bin") == b"first part;second part!"
    assert os.getxattr(m.path / "synced.bin", "user.cosfs.state") == b"clean"


def test_write_back_delay_close_returns_before_upload(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server, "write_back_delay=2")
    write_file(m.path / "later.txt", b"later")
    # close returned with the change journaled and its upload not even started (a commit at
    # close would have left it clean); then the bucket cannot have it yet
    assert status(m.path)["pending"][0]["key"] == "later.txt"
    assert os.getxattr(m.path / "later.txt", "user.cosfs.state") == b"dirty"
    assert not bucket.exists("later.txt")
    assert (m.path / "later.txt").read_bytes() == b"later"
    # the delayed upload starts on its own
    bucket.wait_for("later.txt", b"later", timeout_s=15)
    wait_until(lambda: os.getxattr(m.path / "later.txt", "user.cosfs.state") == b"clean",
               "later.txt became clean after its upload", timeout_s=5)
    assert wait_settled(m.path)["uploads_committed"] == 1


# --- unlink, mkdir, rmdir ----------------------------------------------------------------


def test_unlink(cos_server, bucket, mount_factory):
    bucket.put("remote.txt", b"r")
    m = mount_factory(cos_server)
    write_file(m.path / "local.txt", b"l")
    os.mkdir(m.path / "adir")
    for name in ("remote.txt", "local.txt"):
        os.unlink(m.path / name)
        raises_errno(errno.ENOENT, os.stat, m.path / name)
        raises_errno(errno.ENOENT, open, m.path / name, "rb")
        assert not bucket.exists(name)
        raises_errno(errno.ENOENT, os.unlink, m.path / name)
    assert sorted(os.listdir(m.path)) == ["adir"]
    raises_errno(errno.EISDIR, os.unlink, m.path / "adir")
    assert bucket.exists("adir/")
    # unlink of a file still open for writing: its staged data is dropped, nothing uploads
    committed = status(m.path)["uploads_committed"]
    fd = os.open(m.path / "open.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"doomed")
    assert status(m.path)["dirty_files"] == 1  # staged
    os.unlink(m.path / "open.txt")
    os.close(fd)
    # barrier: the daemon has processed the last release (the nameless data is gone); from
    # then on nothing is left that could ever upload
    assert wait_settled(m.path)["uploads_committed"] == committed
    assert not bucket.exists("open.txt")
    raises_errno(errno.ENOENT, os.stat, m.path / "open.txt")


def test_mkdir_makes_a_marker(cos_server, bucket, mount_factory):
    bucket.put("taken", b"a file")
    m = mount_factory(cos_server)
    started = time.time()
    os.mkdir(m.path / "d")
    head = bucket.head("d/")
    assert head is not None and head["content-length"] == "0"
    assert head["content-type"] == "application/x-directory"
    check_meta(bucket, "d/", DIR_0755, mtime_near=started)
    assert stat.S_ISDIR(os.stat(m.path / "d").st_mode)
    assert stat.S_IMODE(os.stat(m.path / "d").st_mode) == 0o755
    assert os.listdir(m.path / "d") == []
    os.mkdir(m.path / "private", 0o700)
    check_meta(bucket, "private/", stat.S_IFDIR | 0o700)
    os.makedirs(m.path / "x" / "y" / "z")
    assert {"x/", "x/y/", "x/y/z/"} <= set(bucket.keys("x/"))
    raises_errno(errno.EEXIST, os.mkdir, m.path / "d")
    raises_errno(errno.EEXIST, os.mkdir, m.path / "taken")
    assert bucket.get("taken") == b"a file"
    write_file(m.path / "d" / "f.txt", b"in d")
    assert bucket.get("d/f.txt") == b"in d"


def test_rmdir(cos_server, bucket, mount_factory):
    bucket.put("implicit/b/c.txt", b"deep")  # 'implicit' and 'implicit/b' have no markers
    m = mount_factory(cos_server)
    os.mkdir(m.path / "full")
    write_file(m.path / "full" / "f", b"f")
    raises_errno(errno.ENOTEMPTY, os.rmdir, m.path / "full")
    assert bucket.exists("full/") and bucket.exists("full/f")
    # a directory whose only child is an implicit subdirectory
    raises_errno(errno.ENOTEMPTY, os.rmdir, m.path / "implicit")
    os.mkdir(m.path / "marked")
    bucket.put("marked/b/c.txt", b"added behind the mount's back")
    raises_errno(errno.ENOTEMPTY, os.rmdir, m.path / "marked")
    assert bucket.get("implicit/b/c.txt") == b"deep"
    # a directory holding a file that is still being written (not in the bucket yet)
    os.mkdir(m.path / "pending")
    fd = os.open(m.path / "pending" / "p", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"p")
        raises_errno(errno.ENOTEMPTY, os.rmdir, m.path / "pending")
    finally:
        os.close(fd)
    # empty: gone from the mount and from the bucket
    os.mkdir(m.path / "empty")
    os.rmdir(m.path / "empty")
    raises_errno(errno.ENOENT, os.stat, m.path / "empty")
    assert not bucket.exists("empty/")
    assert "empty" not in os.listdir(m.path)
    # emptied, then removed
    os.unlink(m.path / "full" / "f")
    os.rmdir(m.path / "full")
    assert bucket.keys("full") == []
    raises_errno(errno.ENOTDIR, os.rmdir, m.path / "pending" / "p")
    raises_errno(errno.ENOENT, os.rmdir, m.path / "never")


# --- rename ------------------------------------------------------------------------------


def test_rename_file(cos_server, bucket, mount_factory):
    body = random.Random(13).randbytes(200_000)
    bucket.put("old.bin", body)
    m = mount_factory(cos_server)
    os.chmod(m.path / "old.bin", 0o640)
    os.rename(m.path / "old.bin", m.path / "new.bin")
    assert not bucket.exists("old.bin")
    assert bucket.get("new.bin") == body
    check_meta(bucket, "new.bin", stat.S_IFREG | 0o640)
    raises_errno(errno.ENOENT, os.stat, m.path / "old.bin")
    assert (m.path / "new.bin").read_bytes() == body
    assert stat.S_IMODE(os.stat(m.path / "new.bin").st_mode) == 0o640
    # into another directory
    os.mkdir(m.path / "d")
    os.rename(m.path / "new.bin", m.path / "d" / "moved.bin")
    assert bucket.keys() == ["d/", "d/moved.bin"]
    assert bucket.get("d/moved.bin") == body
    assert os.listdir(m.path / "d") == ["moved.bin"]
    # a file written through the mount and committed
    write_file(m.path / "mine.txt", b"mine")
    os.rename(m.path / "mine.txt", m.path / "yours.txt")
    assert bucket.get("yours.txt") == b"mine"
    assert not bucket.exists("mine.txt")
    assert sorted(os.listdir(m.path)) == ["d", "yours.txt"]


def test_rename_over_an_existing_file(cos_server, bucket, mount_factory):
    bucket.put("src.txt", b"the new content")
    bucket.put("dst.txt", b"the old content, longer than the new one")
    m = mount_factory(cos_server)
    assert (m.path / "dst.txt").read_bytes().startswith(b"the old")
    os.rename(m.path / "src.txt", m.path / "dst.txt")
    assert bucket.get("dst.txt") == b"the new content"
    assert not bucket.exists("src.txt")
    assert (m.path / "dst.txt").read_bytes() == b"the new content"
    assert os.listdir(m.path) == ["dst.txt"]
    # onto a directory, and a directory onto a file
    os.mkdir(m.path / "dir")
    raises_errno(errno.EISDIR, os.rename, m.path / "dst.txt", m.path / "dir")
    raises_errno(errno.ENOTDIR, os.rename, m.path / "dir", m.path / "dst.txt")
    assert bucket.get("dst.txt") == b"the new content"
    assert bucket.exists("dir/")


def test_rename_of_a_file_open_for_writing(cos_server, bucket, mount_factory):
    bucket.put("existing.txt", b"base;")
    m = mount_factory(cos_server)
    # a new file, never committed
    fd = os.open(m.path / "draft.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"part one;")
        os.rename(m.path / "draft.txt", m.path / "final.txt")
        os.write(fd, b"part two")
    finally:
        os.close(fd)
    assert bucket.get("final.txt") == b"part one;part two"
    assert not bucket.exists("draft.txt")
    assert (m.path / "final.txt").read_bytes() == b"part one;part two"
    raises_errno(errno.ENOENT, os.stat, m.path / "draft.txt")
    # an existing object modified, renamed while open, modified again
    fd = os.open(m.path / "existing.txt", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"appended;")
        os.rename(m.path / "existing.txt", m.path / "renamed.txt")
        os.write(fd, b"after rename")
    finally:
        os.close(fd)
    assert bucket.get("renamed.txt") == b"base;appended;after rename"
    assert not bucket.exists("existing.txt")
    assert (m.path / "renamed.txt").read_bytes() == b"base;appended;after rename"
    assert sorted(bucket.keys()) == ["final.txt", "renamed.txt"]


def test_rename_directory_with_nested_content(cos_server, bucket, mount_factory):
    bucket.put("src/implicit/x.txt", b"made by the sdk")
    m = mount_factory(cos_server)
    files = {"a.txt": b"a", "sub/b.txt": b"b" * 1000, "sub/deeper/c.bin": random.Random(14).randbytes(300_000)}
    for rel, data in files.items():
        (m.path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        write_file(m.path / "src" / rel, data)
    os.mkdir(m.path / "src" / "empty")
    files["implicit/x.txt"] = b"made by the sdk"
    before = bucket.keys("src/")
    os.rename(m.path / "src", m.path / "dst")
    assert bucket.keys("src/") == [] and not bucket.exists("src/")
    after = bucket.keys("dst/")
    assert after == sorted("dst/" + key[len("src/"):] for key in before)
    for rel, data in files.items():
        assert bucket.get("dst/" + rel) == data, rel
        assert (m.path / "dst" / rel).read_bytes() == data, rel
    raises_errno(errno.ENOENT, os.stat, m.path / "src")
    assert sorted(os.listdir(m.path)) == ["dst"]
    assert sorted(os.listdir(m.path / "dst")) == ["a.txt", "empty", "implicit", "sub"]
    assert os.listdir(m.path / "dst" / "empty") == []
    # metadata travels with the keys
    check_meta(bucket, "dst/sub/b.txt", FILE_0644)
    # the renamed directory works as a directory: new files land under the new prefix
    write_file(m.path / "dst" / "sub" / "new.txt", b"new")
    assert bucket.get("dst/sub/new.txt") == b"new"


def test_rename_directory_onto_directories(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    for name in ("a", "full", "empty"):
        os.mkdir(m.path / name)
    write_file(m.path / "a" / "f", b"f")
    write_file(m.path / "full" / "g", b"g")
    raises_errno(errno.ENOTEMPTY, os.rename, m.path / "a", m.path / "full")
    assert bucket.get("a/f") == b"f" and bucket.get("full/g") == b"g"
    assert (m.path / "full" / "g").read_bytes() == b"g"
    os.rename(m.path / "a", m.path / "empty")  # an empty target is replaced
    assert bucket.get("empty/f") == b"f"
    assert bucket.keys("a/") == []
    assert sorted(os.listdir(m.path)) == ["empty", "full"]
    raises_errno(errno.EINVAL, os.rename, m.path / "full", m.path / "full" / "inside")


# --- metadata ----------------------------------------------------------------------------


def test_chmod_chown_utime(cos_server, bucket, mount_factory):
    body = b"content that must not change " * 10
    bucket.put("f.txt", body)
    m = mount_factory(cos_server)
    path = m.path / "f.txt"
    etag = bucket.head("f.txt")["etag"]
    os.chmod(path, 0o600)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    check_meta(bucket, "f.txt", stat.S_IFREG | 0o600)
    os.chown(path, 1234, 5678)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    check_meta(bucket, "f.txt", stat.S_IFREG | 0o600, uid=1234, gid=5678)
    os.chown(path, -1, 4321)  # -1 keeps the owner
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (1234, 4321)
    mtime_ns = 1_500_000_000 * 10**9
    os.utime(path, ns=(1_400_000_000 * 10**9, mtime_ns))
    assert os.stat(path).st_mtime_ns == mtime_ns
    meta = check_meta(bucket, "f.txt", stat.S_IFREG | 0o600, uid=1234, gid=4321)
    assert int(meta["mtime"]) == 1_500_000_000
    assert bucket.get("f.txt") == body
    assert bucket.head("f.txt")["etag"] == etag
    # a directory made through the mount
    os.mkdir(m.path / "d")
    os.chmod(m.path / "d", 0o700)
    assert stat.S_IMODE(os.stat(m.path / "d").st_mode) == 0o700
    check_meta(bucket, "d/", stat.S_IFDIR | 0o700)
    # chmod of a file still being written lands with its upload
    fd = os.open(m.path / "w.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"w")
        os.fchmod(fd, 0o604)
    finally:
        os.close(fd)
    check_meta(bucket, "w.txt", stat.S_IFREG | 0o604)
    assert bucket.get("w.txt") == b"w"
    # a fresh mount reads the stored attributes
    m2 = mount_factory(cos_server)
    st = os.stat(m2.path / "f.txt")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns) == (0o600, 1234, 4321, mtime_ns)
    assert (m2.path / "f.txt").read_bytes() == body


def test_symlink(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    write_file(m.path / "target.txt", b"pointed at")
    os.symlink("target.txt", m.path / "link")
    os.symlink("../nowhere/at/all", m.path / "dangling")
    assert os.readlink(m.path / "link") == "target.txt"
    assert stat.S_ISLNK(os.lstat(m.path / "link").st_mode)
    assert os.lstat(m.path / "link").st_size == len("target.txt")
    assert (m.path / "link").read_bytes() == b"pointed at"
    assert os.readlink(m.path / "dangling") == "../nowhere/at/all"
    assert bucket.get("link") == b"target.txt"
    check_meta(bucket, "link", LINK_0777)
    assert bucket.get("dangling") == b"../nowhere/at/all"
    raises_errno(errno.EEXIST, os.symlink, "x", m.path / "link")
    # a fresh mount sees a symbolic link, from the object alone
    m2 = mount_factory(cos_server)
    assert stat.S_ISLNK(os.lstat(m2.path / "link").st_mode)
    assert os.readlink(m2.path / "link") == "target.txt"
    assert (m2.path / "link").read_bytes() == b"pointed at"
    os.unlink(m2.path / "link")
    assert not bucket.exists("link")
    assert bucket.get("target.txt") == b"pointed at"


def decode_xattr_header(value: str) -> dict[str, bytes]:
    return {name: base64.b64decode(b64) for name, b64 in json.loads(unquote(value)).items()}


def test_user_xattrs_round_trip(cos_server, bucket, mount_factory):
    body = b"xattr carrier"
    bucket.put("x.txt", body)
    m = mount_factory(cos_server)
    path = m.path / "x.txt"
    os.setxattr(path, "user.colour", b"blue")
    os.setxattr(path, "user.binary", b"\x00\xff\x10 bytes")
    assert os.getxattr(path, "user.colour") == b"blue"
    assert os.getxattr(path, "user.binary") == b"\x00\xff\x10 bytes"
    assert {"user.colour", "user.binary"} <= set(os.listxattr(path))
    header = bucket.meta("x.txt").get("xattr")
    assert header is not None, bucket.meta("x.txt")
    assert decode_xattr_header(header) == {"user.colour": b"blue", "user.binary": b"\x00\xff\x10 bytes"}
    os.setxattr(path, "user.colour", b"red")
    assert os.getxattr(path, "user.colour") == b"red"
    os.removexattr(path, "user.binary")
    raises_errno(errno.ENODATA, os.getxattr, path, "user.binary")
    raises_errno(errno.ENODATA, os.removexattr, path, "user.binary")
    assert "user.binary" not in os.listxattr(path)
    assert decode_xattr_header(bucket.meta("x.txt")["xattr"]) == {"user.colour": b"red"}
    assert bucket.get("x.txt") == body
    assert os.getxattr(path, "user.cosfs.state") == b"clean"
    raises_errno(errno.EPERM, os.setxattr, path, "user.cosfs.state", b"dirty")
    raises_errno(errno.ENODATA, os.getxattr, path, "user.never.set")
    # a fresh mount reads them back from the header
    m2 = mount_factory(cos_server)
    assert os.getxattr(m2.path / "x.txt", "user.colour") == b"red"
    assert "user.colour" in os.listxattr(m2.path / "x.txt")


def test_hard_links_are_refused_special_files_are_stored_as_cosfs_does(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    write_file(m.path / "f", b"f")
    raises_errno(errno.ENOTSUP, os.link, m.path / "f", m.path / "hard")
    os.mkfifo(m.path / "fifo", 0o640)
    os.mknod(m.path / "chr", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    assert bucket.keys() == ["chr", "f", "fifo"]
    check_meta(bucket, "fifo", stat.S_IFIFO | 0o640)
    assert bucket.get("fifo") == b"" and bucket.meta("chr")["rdev"] == str(os.makedev(1, 3))
    assert stat.S_ISFIFO(os.stat(m.path / "fifo").st_mode) and stat.S_ISCHR(os.stat(m.path / "chr").st_mode)
    assert os.stat(m.path / "chr").st_rdev == os.makedev(1, 3)
    assert sorted(os.listdir(m.path)) == ["chr", "f", "fifo"]


# --- large files -------------------------------------------------------------------------


def put_part_lines(server, since: int) -> list[list[str]]:
    return [fields for fields in (line.split() for line in server.access_lines(settled=True)[since:])
            if fields[1] == "PUT" and "partNumber=" in fields[3]]


def test_large_file_written_sequentially(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    rng = random.Random(15)
    chunk = rng.randbytes(MiB)
    expected = bytearray()
    before = len(cos_server.access_lines(settled=True))
    with open(m.path / "large.bin", "wb") as handle:
        for i in range(40):
            piece = bytes([i]) + chunk[1:]
            handle.write(piece)
            expected += piece
    head = bucket.head("large.bin")
    assert head is not None and int(head["content-length"]) == 40 * MiB
    assert sha(bucket.get("large.bin")) == sha(bytes(expected))
    check_meta(bucket, "large.bin", FILE_0644)
    parts = put_part_lines(cos_server, before)
    assert len(parts) >= 5, "40 MiB above the 16 MiB threshold goes up in 8 MiB parts"
    assert sha((m.path / "large.bin").read_bytes()) == sha(bytes(expected))


def test_random_overwrite_in_a_large_object_copies_untouched_parts(cos_server, bucket, mount_factory):
    body = bytearray(random.Random(16).randbytes(40 * MiB))
    bucket.put("big.bin", bytes(body))
    m = mount_factory(cos_server)
    before = len(cos_server.access_lines(settled=True))
    offset = 17 * MiB + 123  # inside part 3 of 5 (8 MiB parts)
    patch = random.Random(17).randbytes(4096)
    fd = os.open(m.path / "big.bin", os.O_WRONLY)
    try:
        os.pwrite(fd, patch, offset)
    finally:
        os.close(fd)
    body[offset:offset + 4096] = patch
    lines = cos_server.access_lines(settled=True)[before:]  # the mount's requests only (not the SDK's GET below)
    parts = put_part_lines(cos_server, before)
    assert sha(bucket.get("big.bin")) == sha(bytes(body))
    # Upload Part - Copy answers with a CopyPartResult body; Upload Part answers with none.
    copied = [p for p in parts if p[4] == "200" and int(p[5]) > 0]
    uploaded = [p for p in parts if p[4] == "200" and int(p[5]) == 0]
    assert len(copied) >= 4, lines
    assert len(uploaded) <= 1, lines
    # only the changed part's base range was fetched, not the 40 MiB object
    got = sum(int(f[5]) for f in (line.split() for line in lines) if f[1] == "GET" and "big.bin" in f[2])
    assert got <= 10 * MiB, lines
    assert sha((m.path / "big.bin").read_bytes()) == sha(bytes(body))


# --- read-only mount ---------------------------------------------------------------------


def test_read_only_mount_refuses_every_change(cos_server, bucket, mount_factory):
    bucket.put("keep.txt", b"keep")
    bucket.put("dir/", b"", ContentType="application/x-directory")
    m = mount_factory(cos_server, "ro")
    path = m.path / "keep.txt"
    actions = [
        lambda: write_file(m.path / "new.txt", b"x"),
        lambda: os.open(path, os.O_WRONLY),
        lambda: os.open(path, os.O_RDONLY | os.O_TRUNC),
        lambda: os.truncate(path, 0),
        lambda: os.mkdir(m.path / "d"),
        lambda: os.rmdir(m.path / "dir"),
        lambda: os.unlink(path),
        lambda: os.rename(path, m.path / "other.txt"),
        lambda: os.chmod(path, 0o600),
        lambda: os.utime(path, (0, 0)),
        lambda: os.symlink("keep.txt", m.path / "link"),
        lambda: os.setxattr(path, "user.a", b"b"),
    ]
    for index, action in enumerate(actions):
        with pytest.raises(OSError) as info:
            action()
        assert info.value.errno == errno.EROFS, (index, info.value)
    assert (m.path / "keep.txt").read_bytes() == b"keep"
    assert bucket.keys() == ["dir/", "keep.txt"]
    assert bucket.get("keep.txt") == b"keep"


# --- harder cases: changes after parts were streamed, shared handles, moves under open files --


def streamed_parts(server, key: str) -> set[int]:
    """Part numbers of `key` the server stored (200 to an Upload Part), from its access log:
    `TIME METHOD PATH QUERY STATUS ...`."""
    parts = set()
    for line in server.access_lines(settled=True):
        method, path, query, code = line.split()[1:5]
        if method == "PUT" and path == f"/{server.bucket}/{key}" and code == "200" and "uploadId=" in query:
            for field in query.split("&"):
                name, _, value = field.partition("=")
                if name == "partNumber":
                    parts.add(int(value))
    return parts


def test_changes_after_streamed_parts_reach_the_bucket(cos_server, bucket, mount_factory):
    """A file written sequentially past 16 MiB streams its parts while open; a later write
    into an already sent part, and a truncation, must still land."""
    m = mount_factory(cos_server)
    chunk = random.Random(18).randbytes(MiB)
    expected = bytearray()
    fd = os.open(m.path / "stream.bin", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        for i in range(40):
            piece = bytes([i]) + chunk[1:]
            os.write(fd, piece)
            expected += piece
        # barrier: the server has stored parts 1-4 (8 MiB each; the last part waits for close)
        wait_until(lambda: streamed_parts(cos_server, "stream.bin") >= {1, 2, 3, 4},
                   "parts 1-4 of stream.bin were streamed while it was open")
        os.pwrite(fd, b"REWRITTEN", 100)  # part 1, already sent
        expected[100:109] = b"REWRITTEN"
        os.ftruncate(fd, 30 * MiB + 5)  # cuts part 4, drops part 5
        del expected[30 * MiB + 5:]
        os.pwrite(fd, b"TAIL", 30 * MiB + 5)
        expected += b"TAIL"
        assert os.pread(fd, 20, 95) == bytes(expected[95:115])
    finally:
        os.close(fd)
    assert int(bucket.head("stream.bin")["content-length"]) == len(expected)
    assert sha(bucket.get("stream.bin")) == sha(bytes(expected))
    # the same file shrunk below the multipart threshold
    fd = os.open(m.path / "stream.bin", os.O_RDWR)
    try:
        os.ftruncate(fd, 5 * MiB)
        os.pwrite(fd, b"end", 5 * MiB)
    finally:
        os.close(fd)
    assert sha(bucket.get("stream.bin")) == sha(bytes(expected[:5 * MiB]) + b"end")


def test_truncate_and_extend_a_large_object(cos_server, bucket, mount_factory):
    body = random.Random(19).randbytes(40 * MiB)
    bucket.put("cut.bin", body)
    bucket.put("grow.bin", body)
    m = mount_factory(cos_server)
    os.truncate(m.path / "cut.bin", 20 * MiB + 7)
    assert sha(bucket.get("cut.bin")) == sha(body[:20 * MiB + 7])
    with open(m.path / "grow.bin", "ab") as handle:
        handle.write(b"appended tail" * 1000)
    assert sha(bucket.get("grow.bin")) == sha(body + b"appended tail" * 1000)
    assert os.path.getsize(m.path / "grow.bin") == len(body) + 13000


def test_sparse_write_far_past_the_end(cos_server, bucket, mount_factory):
    bucket.put("base.bin", b"base")
    m = mount_factory(cos_server)
    fd = os.open(m.path / "sparse.bin", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.pwrite(fd, b"far", 5 * MiB)
    finally:
        os.close(fd)
    assert sha(bucket.get("sparse.bin")) == sha(bytes(5 * MiB) + b"far")
    fd = os.open(m.path / "base.bin", os.O_WRONLY)
    try:
        os.pwrite(fd, b"!", 2 * MiB)
    finally:
        os.close(fd)
    assert sha(bucket.get("base.bin")) == sha(b"base" + bytes(2 * MiB - 4) + b"!")
    assert (m.path / "base.bin").read_bytes()[:4] == b"base"


def test_two_descriptors_on_one_file(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    path = m.path / "shared.txt"
    a = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    b = os.open(path, os.O_RDWR)
    try:
        os.pwrite(a, b"aaaa", 0)
        os.pwrite(b, b"bb", 2)
        assert os.pread(a, 10, 0) == b"aabb"
        os.close(a)
        a = -1
        assert bucket.get("shared.txt") == b"aabb"  # the first close committed both writes
        os.pwrite(b, b"cc", 4)
    finally:
        if a >= 0:
            os.close(a)
        os.close(b)
    assert bucket.get("shared.txt") == b"aabbcc"
    assert path.read_bytes() == b"aabbcc"


def test_reader_sees_writes_of_another_descriptor(cos_server, bucket, mount_factory):
    bucket.put("seen.txt", b"0123456789")
    m = mount_factory(cos_server)
    path = m.path / "seen.txt"
    assert path.read_bytes() == b"0123456789"  # in the kernel's page cache now
    writer = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(writer, b"AB", 3)
        reader = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(reader, 20, 0) == b"012AB56789"
        finally:
            os.close(reader)
    finally:
        os.close(writer)
    assert bucket.get("seen.txt") == b"012AB56789"
    assert path.read_bytes() == b"012AB56789"


def test_unlink_and_recreate_while_the_old_file_is_open(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    write_file(m.path / "f.txt", b"first")
    old = os.open(m.path / "f.txt", os.O_RDONLY)
    try:
        os.unlink(m.path / "f.txt")
        write_file(m.path / "f.txt", b"second version")
        assert bucket.get("f.txt") == b"second version"
        assert (m.path / "f.txt").read_bytes() == b"second version"
    finally:
        os.close(old)
    assert bucket.get("f.txt") == b"second version"


def test_rename_directory_holding_a_file_open_for_writing(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    os.mkdir(m.path / "proj")
    fd = os.open(m.path / "proj" / "notes.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"before the move;")
        os.rename(m.path / "proj", m.path / "moved")
        os.write(fd, b"after the move")
    finally:
        os.close(fd)
    assert bucket.get("moved/notes.txt") == b"before the move;after the move"
    assert bucket.keys("proj") == []
    assert (m.path / "moved" / "notes.txt").read_bytes() == b"before the move;after the move"
    assert sorted(bucket.keys()) == ["moved/", "moved/notes.txt"]


def test_metadata_changes_on_a_file_being_written(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    path = m.path / "busy.txt"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"busy")
        os.chmod(path, 0o640)
        os.setxattr(path, "user.tag", b"v1")
        os.utime(path, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
        assert os.getxattr(path, "user.cosfs.state") in (b"dirty", b"uploading")
    finally:
        os.close(fd)
    meta = check_meta(bucket, "busy.txt", stat.S_IFREG | 0o640)
    assert decode_xattr_header(meta["xattr"]) == {"user.tag": b"v1"}
    assert bucket.get("busy.txt") == b"busy"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert os.getxattr(path, "user.tag") == b"v1"
    # utime after the last write wins, as tar and cp -p expect
    assert int(meta["mtime"]) == 1_600_000_000
    assert os.stat(path).st_mtime_ns == 1_600_000_000 * 10**9


def test_xattrs_and_utime_on_directories(cos_server, bucket, mount_factory):
    bucket.put("implicit/child.txt", b"c")
    m = mount_factory(cos_server)
    os.mkdir(m.path / "d")
    os.setxattr(m.path / "d", "user.kind", b"dir")
    assert os.getxattr(m.path / "d", "user.kind") == b"dir"
    assert decode_xattr_header(bucket.meta("d/")["xattr"]) == {"user.kind": b"dir"}
    assert bucket.head("d/")["content-type"] == "application/x-directory"
    # chmod of an implicit directory gives it a marker that holds the mode
    os.chmod(m.path / "implicit", 0o750)
    assert stat.S_IMODE(os.stat(m.path / "implicit").st_mode) == 0o750
    check_meta(bucket, "implicit/", stat.S_IFDIR | 0o750, uid=int(bucket.meta("implicit/")["uid"]),
               gid=int(bucket.meta("implicit/")["gid"]))
    assert bucket.get("implicit/child.txt") == b"c"


# --- descriptors that outlive their name: unlinked or replaced files ------------------------


def test_open_unlinked_file_stays_usable(cos_server, bucket, mount_factory):
    """tempfile.TemporaryFile: open, unlink, then use the descriptor as scratch space. POSIX:
    writes and reads work, close succeeds, and the name never comes back."""
    import tempfile

    m = mount_factory(cos_server)
    with tempfile.TemporaryFile(dir=m.path) as scratch:
        scratch.write(b"scratch data " * 100)
        scratch.flush()
        scratch.seek(0)
        assert scratch.read() == b"scratch data " * 100
    assert os.listdir(m.path) == []
    fd = os.open(m.path / "gone.txt", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"before unlink;")
        os.unlink(m.path / "gone.txt")
        os.write(fd, b"after unlink")
        assert os.pread(fd, 100, 0) == b"before unlink;after unlink"
    finally:
        os.close(fd)
    # barrier: the last release was processed and dropped the nameless data; nothing is left
    # that could upload later
    assert wait_settled(m.path)["uploads_committed"] == 0
    assert bucket.keys() == []
    raises_errno(errno.ENOENT, os.stat, m.path / "gone.txt")


def test_writes_to_a_replaced_file_never_reach_its_successor(cos_server, bucket, mount_factory):
    """The editor/rsync pattern while another process still has the old file open for writing:
    rename(new, target) replaces target. What the old descriptor writes afterwards belongs to
    the replaced file, which has no name any more: it must not land in `target`, and its close
    must not fail or leave an upload that can never succeed."""
    m = mount_factory(cos_server)
    write_file(m.path / "target.txt", b"old target")
    write_file(m.path / "partial.txt", b"old partial")
    whole = os.open(m.path / "target.txt", os.O_WRONLY)
    part = os.open(m.path / "partial.txt", os.O_WRONLY)
    try:
        write_file(m.path / "new.txt", b"new content")
        write_file(m.path / "new2.txt", b"new content 2")
        os.rename(m.path / "new.txt", m.path / "target.txt")
        os.rename(m.path / "new2.txt", m.path / "partial.txt")
        committed = status(m.path)["uploads_committed"]
        os.pwrite(whole, b"rewritten by the old descriptor", 0)  # covers the old file entirely
        os.pwrite(part, b"XX", 3)  # a partial change of the replaced object
    finally:
        errors = []
        for fd in (whole, part):
            try:
                os.close(fd)
            except OSError as exc:
                errors.append(exc)
    # barrier: both replaced files' last releases were processed; nothing left can upload
    settled = wait_settled(m.path)
    outcome = {"close errors": errors, "target.txt": bucket.get("target.txt"), "partial.txt": bucket.get("partial.txt")}
    assert outcome == {"close errors": [], "target.txt": b"new content", "partial.txt": b"new content 2"}
    assert (m.path / "target.txt").read_bytes() == b"new content"
    assert (m.path / "partial.txt").read_bytes() == b"new content 2"
    assert sorted(bucket.keys()) == ["partial.txt", "target.txt"]
    assert settled["uploads_committed"] == committed, "the old descriptors' writes were uploaded somewhere"


def test_writes_to_an_unlinked_file_never_reach_a_new_file_of_that_name(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    write_file(m.path / "f.txt", b"first")
    old = os.open(m.path / "f.txt", os.O_WRONLY)
    try:
        os.unlink(m.path / "f.txt")
        committed = status(m.path)["uploads_committed"]
        new = os.open(m.path / "f.txt", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.write(new, b"the new file")
            try:
                os.pwrite(old, b"OLD", 0)
            except OSError as exc:  # the orphan may refuse, but must never write into the new file
                assert exc.errno != errno.EIO, exc
        finally:
            os.close(new)
    finally:
        try:
            os.close(old)
        except OSError as exc:
            raise AssertionError(f"closing the unlinked file's descriptor failed: {exc!r}") from None
    # barrier: the orphan's last release was processed; nothing left can upload
    settled = wait_settled(m.path)
    assert bucket.get("f.txt") == b"the new file"
    assert (m.path / "f.txt").read_bytes() == b"the new file"
    assert settled["uploads_committed"] == committed + 1, "the unlinked file's writes were uploaded somewhere"


# --- what listings show ------------------------------------------------------------------


def test_listing_keeps_what_this_mount_knows(cos_server, bucket, mount_factory):
    """readdir (LIST) cannot tell a symlink from a file nor see x-cos-meta-*; entries this
    mount created or looked up must not lose their type and attributes to a listing."""
    m = mount_factory(cos_server)
    write_file(m.path / "target", b"t")
    os.symlink("target", m.path / "link")
    os.chmod(m.path / "target", 0o600)
    os.utime(m.path / "target", (1_300_000_000, 1_300_000_000))
    assert stat.S_ISLNK(os.lstat(m.path / "link").st_mode)
    assert sorted(os.listdir(m.path)) == ["link", "target"]
    assert stat.S_ISLNK(os.lstat(m.path / "link").st_mode), stat.filemode(os.lstat(m.path / "link").st_mode)
    assert os.readlink(m.path / "link") == "target"
    st = os.stat(m.path / "target")
    assert (stat.S_IMODE(st.st_mode), int(st.st_mtime)) == (0o600, 1_300_000_000)


def test_fresh_mount_listing_shows_symlinks_and_stored_metadata(cos_server, bucket, mount_factory):
    """A fresh mount, listed before anything is looked up (ls -l, find, tar c, cp -a, rsync
    from the mount all do this): symbolic links show as links, and stat after the listing
    gives the stored mode/mtime."""
    m = mount_factory(cos_server)
    write_file(m.path / "target", b"t")
    os.symlink("target", m.path / "link")
    os.chmod(m.path / "target", 0o600)
    os.utime(m.path / "target", (1_300_000_000, 1_300_000_000))
    m2 = mount_factory(cos_server)
    found = subprocess.run(["find", ".", "-type", "l"], cwd=m2.path, capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["./link"]
    assert stat.S_ISLNK(os.lstat(m2.path / "link").st_mode)
    st = os.stat(m2.path / "target")
    assert (stat.S_IMODE(st.st_mode), int(st.st_mtime)) == (0o600, 1_300_000_000)


def test_shared_writable_mmap(cos_server, bucket, mount_factory):
    import mmap

    bucket.put("mapped.bin", bytes(3 * 4096))
    m = mount_factory(cos_server)
    fd = os.open(m.path / "mapped.bin", os.O_RDWR)
    try:
        with mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as mapped:
            mapped[100:105] = b"hello"
            mapped[2 * 4096:2 * 4096 + 5] = b"world"
            mapped.flush()
        os.fsync(fd)
    finally:
        os.close(fd)
    expected = bytearray(3 * 4096)
    expected[100:105] = b"hello"
    expected[2 * 4096:2 * 4096 + 5] = b"world"
    assert bucket.get("mapped.bin") == bytes(expected)
    assert (m.path / "mapped.bin").read_bytes() == bytes(expected)


def test_xattr_too_large_is_refused_cleanly(cos_server, bucket, mount_factory, expect_log):
    # Unlike the other refusals (DEBUG), metadata that does not fit is a warning.
    expect_log(r"^WARNING cosfs\.fuse_ops: setxattr failed \(E2BIG\): extended attributes are limited by COS's 2 KB",
               count=1, why="an application's xattr does not fit COS's user metadata")
    m = mount_factory(cos_server)
    write_file(m.path / "f", b"f")
    os.setxattr(m.path / "f", "user.small", b"ok")
    with pytest.raises(OSError) as info:
        os.setxattr(m.path / "f", "user.big", b"x" * 4096)
    # setxattr(2): E2BIG or ENOSPC when the value does not fit
    assert info.value.errno in (errno.E2BIG, errno.ENOSPC), info.value
    assert os.getxattr(m.path / "f", "user.small") == b"ok"
    assert decode_xattr_header(bucket.meta("f")["xattr"]) == {"user.small": b"ok"}
    assert bucket.get("f") == b"f"
