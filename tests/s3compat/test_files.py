"""File operations through a cosfs mount of `rclone serve s3`: reads over many blocks, large
writes (multipart, and streamed while writing), small files, renames, unlink, mkdir/rmdir,
truncate. What the mount wrote is checked in rclone's own files (RcloneServer.served), what
it reads against the bytes seeded there.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import time

import pytest

MiB = 1024 * 1024


def random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pread_all(fd: int, offset: int, length: int) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def test_multi_block_reads_at_random_offsets(rclone_server, s3_mount):
    """Reads of a 12 MiB object seeded in rclone's directory: random offsets and lengths that
    cross blocks (1 MiB) and fetches (8 MiB) on a cold cache, then the whole file in order."""
    data = random_bytes(1, 12 * MiB + 4321)
    rclone_server.seed("big/data.bin", data)
    m = s3_mount()
    path = m.path / "big" / "data.bin"
    assert os.stat(path).st_size == len(data)
    rng = random.Random(2)
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(24):
            offset = rng.randrange(len(data))
            length = rng.choice([1, 4096, 65536, MiB - 7, MiB + 13, 3 * MiB])
            got = pread_all(fd, offset, length)
            assert got == data[offset: offset + length], (offset, length)
        # the last bytes, a read past the end, and the boundaries of blocks and fetches
        assert pread_all(fd, len(data) - 10, 100) == data[-10:]
        assert os.pread(fd, 10, len(data) + 5) == b""
        for boundary in (MiB, 8 * MiB, 12 * MiB):
            assert pread_all(fd, boundary - 3, 6) == data[boundary - 3: boundary + 3]
    finally:
        os.close(fd)
    assert sha(path.read_bytes()) == sha(data)


def test_large_write_goes_multipart(rclone_server, s3_mount):
    """A 20 MiB file written out of order (no streaming): multipart at close; rclone's file
    holds exactly the bytes, and a fresh mount reads them back."""
    data = random_bytes(3, 20 * MiB + 12345)
    m = s3_mount()
    path = m.path / "multipart.bin"
    half = 10 * MiB + 1
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        assert os.pwrite(fd, data[half:], half) == len(data) - half
        assert os.pwrite(fd, data[:half], 0) == half
    finally:
        os.close(fd)
    assert rclone_server.completed_multipart("multipart.bin"), "rclone completed no multipart upload of it"
    served = rclone_server.served("multipart.bin")
    assert served.stat().st_size == len(data)
    assert sha(served.read_bytes()) == sha(data)
    assert sha(path.read_bytes()) == sha(data)
    m2 = s3_mount()
    assert sha((m2.path / "multipart.bin").read_bytes()) == sha(data)


def test_streamed_sequential_write(rclone_server, s3_mount):
    """40 MiB written front to back in 128 KiB writes: parts stream while the file is still
    open (rclone writes them, in order, to a temporary it shows on disk), and close completes
    the multipart upload."""
    m = s3_mount()
    path = m.path / "stream.bin"
    rng = random.Random(4)
    digest = hashlib.sha256()
    size = 0
    with open(path, "wb", buffering=0) as handle:
        while size < 40 * MiB:
            chunk = rng.randbytes(128 * 1024)
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        # before close: the complete parts (4 of 8 MiB; all but the last) reach rclone
        deadline = time.monotonic() + 20
        while rclone_server.temporary_bytes() < 24 * MiB:  # rclone holds back a few KiB
            assert time.monotonic() < deadline, f"no parts streamed before close: {rclone_server.temporaries()}"
            time.sleep(0.05)
    assert rclone_server.completed_multipart("stream.bin"), "rclone completed no multipart upload of it"
    assert rclone_server.temporaries() == []
    served = rclone_server.served("stream.bin")
    assert served.stat().st_size == size
    assert sha(served.read_bytes()) == digest.hexdigest()
    assert os.stat(path).st_size == size
    assert sha(path.read_bytes()) == digest.hexdigest()


def test_small_files(rclone_server, s3_mount):
    """Sixty small files (0 bytes to 20 KiB) written, listed, read back, overwritten and
    appended to, in a directory rclone already has (S3 shows no empty directory, so it holds
    one object)."""
    rclone_server.seed("small/seeded.txt", b"seeded\n")
    m = s3_mount()
    rng = random.Random(5)
    contents = {f"f{i:02d}.txt": rng.randbytes(rng.choice([0, 1, 17, 4096, 20 * 1024])) for i in range(60)}
    for name, content in contents.items():
        (m.path / "small" / name).write_bytes(content)
    assert sorted(os.listdir(m.path / "small")) == sorted([*contents, "seeded.txt"])
    for name, content in contents.items():
        assert (m.path / "small" / name).read_bytes() == content, name
    contents["seeded.txt"] = b"seeded\n"
    assert rclone_server.served_tree("small/") == {f"small/{n}": c for n, c in contents.items()}
    # overwrite one (shorter), append to another
    (m.path / "small" / "f01.txt").write_bytes(b"short")
    with open(m.path / "small" / "f02.txt", "ab") as handle:
        handle.write(b"+appended")
    assert rclone_server.served("small/f01.txt").read_bytes() == b"short"
    assert rclone_server.served("small/f02.txt").read_bytes() == contents["f02.txt"] + b"+appended"
    m2 = s3_mount()
    assert (m2.path / "small" / "f02.txt").read_bytes() == contents["f02.txt"] + b"+appended"
    assert os.stat(m2.path / "small" / "f00.txt").st_size == len(contents["f00.txt"])


def test_rename_a_file(rclone_server, s3_mount):
    """rename(2) of a file, to a new name and over an existing file; rclone's files follow."""
    one, two, three = random_bytes(6, 3 * MiB), b"two\n", b"three\n"
    rclone_server.seed("ren/one.bin", one)
    rclone_server.seed("ren/two.txt", two)
    rclone_server.seed("ren/three.txt", three)
    m = s3_mount()
    os.rename(m.path / "ren" / "one.bin", m.path / "ren" / "uno.bin")
    assert (m.path / "ren" / "uno.bin").read_bytes() == one
    assert not (m.path / "ren" / "one.bin").exists()
    os.rename(m.path / "ren" / "two.txt", m.path / "ren" / "three.txt")  # replaces
    assert (m.path / "ren" / "three.txt").read_bytes() == two
    assert sorted(os.listdir(m.path / "ren")) == ["three.txt", "uno.bin"]
    assert rclone_server.served_tree("ren/") == {"ren/uno.bin": one, "ren/three.txt": two}


def test_rename_a_directory_with_content(rclone_server, s3_mount):
    """rename(2) of a directory holding files and a subdirectory: every object moves."""
    tree = {f"proj/{p}": random_bytes(i, size) for i, (p, size) in enumerate(
        [("a.txt", 10), ("b.bin", 2 * MiB + 5), ("sub/c.txt", 0), ("sub/deeper/d.txt", 300)])}
    for key, content in tree.items():
        rclone_server.seed(key, content)
    m = s3_mount()
    assert (m.path / "proj" / "sub" / "deeper" / "d.txt").read_bytes() == tree["proj/sub/deeper/d.txt"]
    os.rename(m.path / "proj", m.path / "moved")
    assert not (m.path / "proj").exists()
    for key, content in tree.items():
        assert (m.path / ("moved/" + key.removeprefix("proj/"))).read_bytes() == content, key
    assert rclone_server.served_tree("proj/") == {}
    assert rclone_server.served_tree("moved/") == {"moved/" + k.removeprefix("proj/"): c for k, c in tree.items()}


def test_unlink(rclone_server, s3_mount):
    """unlink(2) of a seeded file and of one the mount wrote; the rest stays."""
    rclone_server.seed("del/seeded.txt", b"seeded")
    rclone_server.seed("del/keep.txt", b"keep")
    m = s3_mount()
    (m.path / "del" / "written.txt").write_bytes(b"written")
    os.unlink(m.path / "del" / "seeded.txt")
    os.unlink(m.path / "del" / "written.txt")
    with pytest.raises(FileNotFoundError):
        os.unlink(m.path / "del" / "seeded.txt")
    assert os.listdir(m.path / "del") == ["keep.txt"]
    assert rclone_server.served_tree("del/") == {"del/keep.txt": b"keep"}


def test_mkdir_and_rmdir(rclone_server, s3_mount):
    """mkdir(2) makes a directory that holds files, nests, and lists as a directory (in this
    mount and a fresh one once it has content); rmdir(2) removes an empty one and refuses a
    non-empty one."""
    m = s3_mount()
    os.mkdir(m.path / "d")
    os.mkdir(m.path / "d" / "inner")
    (m.path / "d" / "inner" / "f.txt").write_bytes(b"in a new directory\n")
    os.mkdir(m.path / "empty")
    assert sorted(os.listdir(m.path)) == ["d", "empty"]
    assert os.path.isdir(m.path / "d") and os.path.isdir(m.path / "d" / "inner")
    assert rclone_server.served("d/inner/f.txt").read_bytes() == b"in a new directory\n"
    with pytest.raises(OSError) as refused:
        os.rmdir(m.path / "d")
    assert refused.value.errno == errno.ENOTEMPTY
    os.rmdir(m.path / "empty")
    assert sorted(os.listdir(m.path)) == ["d"]
    m2 = s3_mount()
    assert os.path.isdir(m2.path / "d" / "inner")
    assert (m2.path / "d" / "inner" / "f.txt").read_bytes() == b"in a new directory\n"
    assert not (m2.path / "empty").exists()
    os.unlink(m.path / "d" / "inner" / "f.txt")
    os.rmdir(m.path / "d" / "inner")
    os.rmdir(m.path / "d")
    assert os.listdir(m.path) == []
    assert rclone_server.served_tree() == {}


def test_truncate(rclone_server, s3_mount):
    """truncate(2) down, up (zeros) and to zero, and open(O_TRUNC) then write."""
    data = random_bytes(7, 3 * MiB)
    rclone_server.seed("t/file.bin", data)
    m = s3_mount()
    path = m.path / "t" / "file.bin"
    served = rclone_server.served("t/file.bin")
    os.truncate(path, 1000)
    assert path.read_bytes() == data[:1000]
    assert served.read_bytes() == data[:1000]
    os.truncate(path, 2 * MiB)
    assert served.read_bytes() == data[:1000] + bytes(2 * MiB - 1000)
    assert path.read_bytes() == data[:1000] + bytes(2 * MiB - 1000)
    os.truncate(path, 0)
    assert os.stat(path).st_size == 0
    assert served.read_bytes() == b""
    with open(path, "wb") as handle:  # O_TRUNC of the empty file, then new content
        handle.write(b"new content")
    with open(path, "r+b") as handle:  # ftruncate of an open file
        handle.truncate(3)
    assert path.read_bytes() == b"new"
    assert served.read_bytes() == b"new"


def test_chmod_touch_and_symlink_keep_content_and_survive_a_remount(rclone_server, s3_mount):
    """chmod(2) and utime(2) of a committed file change its metadata, never its bytes; modes,
    mtimes and a symlink are seen again by a fresh mount (the server keeps object metadata)."""
    data = random_bytes(8, 200 * 1024)
    m = s3_mount()
    (m.path / "script.sh").write_bytes(data)
    try:
        os.chmod(m.path / "script.sh", 0o750)
        os.utime(m.path / "script.sh", (1_000_000_000, 1_000_000_000))
    finally:  # whatever they answered, the object's bytes are untouched
        assert rclone_server.served("script.sh").read_bytes() == data, "chmod/utime changed the object's bytes"
    os.symlink("script.sh", m.path / "link")
    assert (m.path / "script.sh").read_bytes() == data
    m2 = s3_mount()
    st = os.lstat(m2.path / "script.sh")
    assert (oct(st.st_mode & 0o7777), int(st.st_mtime), st.st_size) == (oct(0o750), 1_000_000_000, len(data))
    assert os.readlink(m2.path / "link") == "script.sh"
    assert (m2.path / "script.sh").read_bytes() == data
