"""The read path and namespace through a real FUSE mount of a `cosfs serve` bucket."""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import random
import stat
import subprocess
import time

import pytest

from tests.fuse.conftest import count_requests, sdk_client

MiB = 1024 * 1024
BLOCK = MiB


def put(client, bucket: str, key: str, body: bytes, **kwargs) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=body, **kwargs)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sdk(cos_server):
    return sdk_client(cos_server)


SIZES = {"zero": 0, "one": 1, "block": BLOCK, "block_plus_one": BLOCK + 1, "many": 5 * BLOCK + 12345}


def test_tree_stat_and_checksums(cos_server, sdk, mount_factory):
    rng = random.Random(1)
    bodies = {name: rng.randbytes(size) for name, size in SIZES.items()}
    for name, body in bodies.items():
        put(sdk, cos_server.bucket, f"files/{name}", body)
    put(sdk, cos_server.bucket, "top.txt", b"hello\n")
    put(sdk, cos_server.bucket, "empty/", b"")  # explicit directory marker
    put(sdk, cos_server.bucket, "implicit/deep/leaf.txt", b"leaf")
    m = mount_factory(cos_server)
    assert sorted(os.listdir(m.path)) == ["empty", "files", "implicit", "top.txt"]
    assert os.listdir(m.path / "empty") == []
    assert os.listdir(m.path / "implicit") == ["deep"]
    assert stat.S_ISDIR(os.stat(m.path / "implicit" / "deep").st_mode)
    for name, body in bodies.items():
        path = m.path / "files" / name
        assert os.stat(path).st_size == len(body)
        assert sha(path.read_bytes()) == sha(body), name
    assert (m.path / "implicit/deep/leaf.txt").read_text() == "leaf"
    # find, du and ls -l agree with the bucket
    found = subprocess.run(["find", ".", "-type", "f"], cwd=m.path, capture_output=True, text=True, check=True)
    assert sorted(found.stdout.split()) == sorted(
        ["./top.txt", "./implicit/deep/leaf.txt"] + [f"./files/{n}" for n in SIZES])
    du = subprocess.run(["du", "-s", "--apparent-size", "-B1", "files"], cwd=m.path, capture_output=True, text=True,
                        check=True)
    assert int(du.stdout.split()[0]) >= sum(SIZES.values())
    listing = subprocess.run(["ls", "-l", "files"], cwd=m.path, capture_output=True, text=True, check=True)
    sizes = {line.split()[-1]: int(line.split()[4]) for line in listing.stdout.splitlines()[1:]}
    assert sizes == SIZES
    with pytest.raises(FileNotFoundError):
        os.stat(m.path / "nope")


def test_random_reads_and_mmap(cos_server, sdk, mount_factory):
    body = random.Random(2).randbytes(9 * BLOCK + 777)
    put(sdk, cos_server.bucket, "big.bin", body)
    m = mount_factory(cos_server)
    path = m.path / "big.bin"
    rng = random.Random(3)
    with open(path, "rb") as handle:
        for _ in range(200):
            offset = rng.randrange(0, len(body))
            size = rng.choice([1, 100, 4096, 65536, BLOCK + 3])
            handle.seek(offset)
            assert handle.read(size) == body[offset:offset + size]
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert mapped[:10] == body[:10]
        assert mapped[5 * BLOCK - 5:5 * BLOCK + 5] == body[5 * BLOCK - 5:5 * BLOCK + 5]
        assert sha(mapped[:]) == sha(body)


def test_random_reads_fetch_pieces_until_a_block_is_read_again(cos_server, sdk, mount_factory):
    """A reader that seeks about a big object gets the 16 KiB piece around each read, not the
    1 MiB block (2,000 reads of an 8 GiB object would cost 2 GiB); a block it keeps coming
    back to is fetched whole at the third miss."""
    body = random.Random(4).randbytes(64 * BLOCK)
    put(sdk, cos_server.bucket, "sparse.bin", body)
    m = mount_factory(cos_server)
    os.stat(m.path / "sparse.bin")

    def bytes_fetched(lines: list[str]) -> list[int]:
        return [int(line.split()[5]) for line in lines if line.split()[1] == "GET" and "sparse.bin" in line]

    before = len(cos_server.access_lines(settled=True))
    fd = os.open(m.path / "sparse.bin", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no kernel read-ahead: each read reaches cosfs
        blocks = random.Random(5).sample(range(1, 64), 30)
        for block in blocks:
            offset = block * BLOCK + 512 * 1024
            assert os.pread(fd, 4096, offset) == body[offset:offset + 4096]
        got = bytes_fetched(cos_server.access_lines(settled=True)[before:])
        assert len(got) == 30 and max(got) <= 32 * 1024, got  # a piece each (two if a read straddles)
        # Back to the first block, each read behind the last (a seek): its second piece, then
        # (two piece fetches made) the whole block, and then nothing: the block answers.
        before = len(cos_server.access_lines(settled=True))
        block = blocks[0]
        for offset in (block * BLOCK + 900 * 1024, block * BLOCK + 300 * 1024, block * BLOCK + 100 * 1024):
            assert os.pread(fd, 4096, offset) == body[offset:offset + 4096]
        assert bytes_fetched(cos_server.access_lines(settled=True)[before:]) == [16 * 1024, BLOCK]
    finally:
        os.close(fd)


def test_remote_replacement_between_reads(cos_server, sdk, mount_factory):
    put(sdk, cos_server.bucket, "doc.txt", b"version one")
    m = mount_factory(cos_server, "stat_cache_expire=1")
    assert (m.path / "doc.txt").read_bytes() == b"version one"
    put(sdk, cos_server.bucket, "doc.txt", b"version two, longer")
    time.sleep(1.5)
    assert (m.path / "doc.txt").read_bytes() == b"version two, longer"


def test_replaced_under_an_open_file_gives_estale_never_mixed(cos_server, sdk, mount_factory):
    first = random.Random(5).randbytes(8 * BLOCK)
    put(sdk, cos_server.bucket, "moving.bin", first)
    m = mount_factory(cos_server, "stat_cache_expire=1")
    fd = os.open(m.path / "moving.bin", os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 0) == first[:4096]
        put(sdk, cos_server.bucket, "moving.bin", random.Random(6).randbytes(8 * BLOCK))
        with pytest.raises(OSError) as info:
            os.pread(fd, 4096, 7 * BLOCK)  # not cached yet: the old version is gone
        assert info.value.errno == errno.ESTALE
    finally:
        os.close(fd)


def test_cold_ls_costs_a_list_and_a_head_per_object_and_warm_reread_costs_nothing(cos_server, sdk, mount_factory):
    for i in range(1100):
        put(sdk, cos_server.bucket, f"many/f{i:04d}", b"x" * (i % 7))
    for i in range(50):
        put(sdk, cos_server.bucket, f"few/f{i:02d}", b"x")
    put(sdk, cos_server.bucket, "warm.bin", random.Random(7).randbytes(3 * BLOCK))
    m = mount_factory(cos_server)
    before = len(cos_server.access_lines(settled=True))
    listing = subprocess.run(["ls", "-l", str(m.path / "few")], capture_output=True, text=True, check=True)
    assert len(listing.stdout.splitlines()) == 51
    # One LIST: the lookup's LIST of few/ found children (a directory, whatever object may
    # share its name) and its page is the listing readdir shows; a HEAD per object for what
    # a LIST does not say (type, mode, owner, stored times).
    assert count_requests(cos_server, before) == {"LIST": 1, "HEAD": 50}
    before = len(cos_server.access_lines(settled=True))
    listing = subprocess.run(["ls", "-l", str(m.path / "many")], capture_output=True, text=True, check=True)
    assert len(listing.stdout.splitlines()) == 1101
    # The lookup's page (truncated: not kept), then ceil(1100/1000) = 2 pages; a HEAD each.
    assert count_requests(cos_server, before) == {"LIST": 3, "HEAD": 1100}
    before = len(cos_server.access_lines(settled=True))
    subprocess.run(["ls", "-l", str(m.path / "many")], capture_output=True, check=True)
    assert count_requests(cos_server, before) == {}
    data = (m.path / "warm.bin").read_bytes()
    os.system("echo 3 > /proc/sys/vm/drop_caches 2>/dev/null")
    before = len(cos_server.access_lines(settled=True))
    assert (m.path / "warm.bin").read_bytes() == data
    counts = count_requests(cos_server, before)
    assert counts.get("GET", 0) == 0, counts


def test_odd_keys_are_skipped_not_fatal(cos_server, sdk, mount_factory):
    put(sdk, cos_server.bucket, "odd/ok.txt", b"ok")
    put(sdk, cos_server.bucket, "odd//double", b"x")
    put(sdk, cos_server.bucket, "odd/" + "n" * 300, b"x")  # a long name: shown (FUSE allows 1,024 bytes)
    put(sdk, cos_server.bucket, "odd/ü中文.txt", b"unicode")
    m = mount_factory(cos_server)
    names = sorted(os.listdir(m.path / "odd"))
    assert names == ["n" * 300, "ok.txt", "ü中文.txt"]
    assert (m.path / "odd" / "ü中文.txt").read_bytes() == b"unicode"
    assert (m.path / "odd" / ("n" * 300)).read_bytes() == b"x"
    assert "cannot be a file name" in m.log()


def test_read_only_mount_refuses_changes(cos_server, sdk, mount_factory):
    put(sdk, cos_server.bucket, "keep.txt", b"keep")
    m = mount_factory(cos_server, "ro")
    for action in (lambda: (m.path / "new.txt").write_bytes(b"x"),
                   lambda: os.mkdir(m.path / "d"),
                   lambda: os.unlink(m.path / "keep.txt"),
                   lambda: open(m.path / "keep.txt", "ab")):
        with pytest.raises(OSError) as info:
            action()
        assert info.value.errno == errno.EROFS
    assert (m.path / "keep.txt").read_bytes() == b"keep"


@pytest.mark.slow
def test_one_gib_object_checksum(cos_server, mount_factory, tmp_path):
    source = tmp_path / "gib.bin"
    digest = hashlib.sha256()
    chunk = random.Random(8).randbytes(MiB)
    with open(source, "wb") as handle:
        for i in range(1024):
            piece = bytes([i % 256]) + chunk[1:]
            handle.write(piece)
            digest.update(piece)
    sdk = sdk_client(cos_server)
    sdk.upload_file(Bucket=cos_server.bucket, Key="gib.bin", LocalFilePath=str(source), PartSize=64, MAXThread=4)
    source.unlink()
    m = mount_factory(cos_server)
    got = hashlib.sha256()
    with open(m.path / "gib.bin", "rb") as handle:
        while piece := handle.read(4 * MiB):
            got.update(piece)
    assert got.hexdigest() == digest.hexdigest()
