"""On a real mount: block files deleted from the cache disk under a running
mount (a cleaner, another process) are fetched again, never an ENOENT for the reader."""

from __future__ import annotations

import hashlib
import os

from tests.write.bucket import Bucket

MiB = 1024 * 1024


def drop_page_cache(path) -> None:
    """The kernel's cached pages of this file go, so the next read reaches the daemon."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def gets_of(server, key: str) -> int:
    return sum(1 for line in server.access_lines() if line.split()[1] == "GET" and line.split()[2].endswith("/" + key))


def test_block_files_deleted_under_a_running_mount_are_fetched_again(cos_server, mount_factory, expect_log):
    expect_log(r"^WARNING cosfs\.blocks: block cache: block file .* vanished; fetching it again$",
               why="the test deletes the block files under the running mount")
    bucket = Bucket(cos_server)
    # Larger than the memory tier (64 MiB), so the first blocks are served from disk.
    data = os.urandom(96 * MiB)
    bucket.put("big.bin", data)
    mounted = mount_factory(cos_server)
    path = mounted.path / "big.bin"
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
    blocks = [p for p in (mounted.cache_dir / cos_server.bucket / "blocks").rglob("*") if p.is_file()]
    # The start of the stream goes to the disk tier (stream_disk_bytes, 16 MiB); the rest
    # of a long stream stays in memory.
    assert len(blocks) >= 16, len(blocks)
    for block in blocks:
        block.unlink()
    before = gets_of(cos_server, "big.bin")
    drop_page_cache(path)
    with open(path, "rb") as handle:
        assert handle.read(32 * MiB) == data[:32 * MiB]
    assert gets_of(cos_server, "big.bin") > before  # fetched again from the server
