"""What COSFS and s3fs users mean, on real mounts (issue 20, section 4): the Content-Type
follows the name, renames keep st_ino, names up to the FUSE limit, another host's changes
seen at the next open, and absent names trusted only for negative_cache_expire."""

from __future__ import annotations

import errno
import os
import time

import pytest

from tests.fuse.conftest import count_requests
from tests.write.barriers import sync
from tests.write.bucket import Bucket


@pytest.mark.parametrize("delay", ["0", "3600"])
def test_the_content_type_follows_the_name_on_create_and_rename(cos_server, mount_factory, delay):
    """As COSFS and s3fs: the type of the new name (/etc/mime.types, else a built-in table),
    for a committed file (a copy with the type replaced) and a staged one."""
    bucket = Bucket(cos_server)
    m = mount_factory(cos_server, f"write_back_delay={delay}")
    (m.path / "t.txt").write_bytes(b"text")
    sync(m.path)
    assert bucket.head("t.txt")["content-type"] == "text/plain"
    os.rename(m.path / "t.txt", m.path / "t.html")
    sync(m.path)
    assert bucket.head("t.html")["content-type"] == "text/html"
    (m.path / "staged.txt").write_bytes(b"staged")  # with write_back_delay: never committed yet
    os.rename(m.path / "staged.txt", m.path / "staged.bin")
    os.rename(m.path / "t.html", m.path / "t.unknownext")
    sync(m.path)
    assert bucket.head("staged.bin")["content-type"] == "application/octet-stream"
    assert bucket.head("t.unknownext")["content-type"] == "application/octet-stream"
    assert bucket.get("t.unknownext") == b"text" and bucket.get("staged.bin") == b"staged"
    assert bucket.meta("t.unknownext")["mode"] == bucket.meta("staged.bin")["mode"]  # metadata kept


def test_a_rename_keeps_st_ino_of_what_it_moves(cos_server, mount_factory):
    """POSIX: rename(2) moves the file, not a copy of it: st_ino of a renamed file or
    directory, and of everything under a renamed directory, is what it was, also when the
    kernel forgot the names in between (drop_caches) as it does under memory pressure."""
    m = mount_factory(cos_server)
    p = m.path
    (p / "x" / "s").mkdir(parents=True)
    (p / "y").mkdir()
    (p / "x" / "f").write_bytes(b"f")
    (p / "x" / "s" / "deep").write_bytes(b"d")
    before = {name: os.stat(p / name).st_ino for name in ("x/f", "x/s", "x/s/deep")}

    def forget() -> None:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("2\n")

    forget()
    os.rename(p / "x" / "f", p / "y" / "f")
    forget()
    os.rename(p / "x" / "s", p / "y" / "s2")
    forget()
    after = {name: os.stat(p / new).st_ino for name, new in (("x/f", "y/f"), ("x/s", "y/s2"),
                                                              ("x/s/deep", "y/s2/deep"))}
    assert after == before


def test_names_longer_than_255_bytes_are_shown_and_created(cos_server, mount_factory):
    """s3fs shows and creates them; FUSE allows 1,024 bytes a name. A name whose key COS
    cannot store (850 bytes) is refused with ENAMETOOLONG."""
    bucket = Bucket(cos_server)
    bucket.put("long/" + "a" * 400, b"stored elsewhere")
    m = mount_factory(cos_server)
    assert os.listdir(m.path / "long") == ["a" * 400]
    assert (m.path / "long" / ("a" * 400)).read_bytes() == b"stored elsewhere"
    (m.path / "long" / ("é" * 150)).write_bytes(b"300 bytes of name")
    assert bucket.get("long/" + "é" * 150) == b"300 bytes of name"
    assert os.statvfs(m.path).f_namemax == 1024
    with pytest.raises(OSError) as info:
        (m.path / "long" / ("b" * 900)).write_bytes(b"too long for COS")
    assert info.value.errno == errno.ENAMETOOLONG


def _read(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def test_an_open_reads_what_another_host_closed(cos_server, mount_factory):
    """Close-to-open, as s3fs: host A's closed change is what host B's next open reads
    (longer, shorter: the kernel's size follows), an unchanged file costs B one HEAD and no
    data, and a file A deleted fails B's open with ENOENT, after which B may make the name
    again (the kernel forgot its entry)."""
    a = mount_factory(cos_server)
    b = mount_factory(cos_server)
    (a.path / "f").write_bytes(b"v1")
    assert _read(b.path / "f") == b"v1"
    before = len(cos_server.access_lines(settled=True))
    assert _read(b.path / "f") == b"v1"
    assert count_requests(cos_server, before) == {"HEAD": 1}
    longer = os.urandom(300_000)
    (a.path / "f").write_bytes(longer)
    assert _read(b.path / "f") == longer
    assert os.stat(b.path / "f").st_size == len(longer)
    (a.path / "f").write_bytes(b"v3")
    assert _read(b.path / "f") == b"v3"
    with open(b.path / "f", "r+b") as handle:  # a write open starts from the version A closed
        (a.path / "f").write_bytes(b"v4 by A")
        handle.seek(0)
        assert handle.read() == b"v3"  # (the open handle keeps the version it opened)
    with open(b.path / "f", "r+b") as handle:
        handle.seek(0, os.SEEK_END)
        handle.write(b" and B")
    assert _read(a.path / "f") == b"v4 by A and B"
    os.unlink(a.path / "f")
    for _attempt in (1, 2):
        with pytest.raises(FileNotFoundError):
            _read(b.path / "f")
    with pytest.raises(FileNotFoundError):
        os.stat(b.path / "f")
    assert "f" not in os.listdir(b.path)
    deadline = time.monotonic() + 10
    while True:  # the kernel forgets the entry soon after the failed open, not during it
        try:
            os.mkdir(b.path / "f")
            break
        except FileExistsError:
            assert time.monotonic() < deadline, "the kernel kept the deleted name"
            time.sleep(0.05)
    assert (a.path / "f").is_dir()


def test_nocto_trusts_the_stat_cache_for_its_ttl(cos_server, mount_factory):
    """The documented risk of `nocto`: an open costs nothing within stat_cache_expire, and
    reads the version this mount saw, whatever another host did since."""
    a = mount_factory(cos_server)
    b = mount_factory(cos_server, "nocto")
    (a.path / "g").write_bytes(b"old")
    assert _read(b.path / "g") == b"old"
    (a.path / "g").write_bytes(b"new")
    before = len(cos_server.access_lines(settled=True))
    assert _read(b.path / "g") == b"old"
    reads = count_requests(cos_server, before)
    reads.pop("PUT", None)  # (A's PUT may be logged after its reply)
    assert reads == {}


@pytest.mark.parametrize("options", [("negative_cache_expire=1",), ("disable_noobj_cache",)])
def test_a_listing_says_absent_for_negative_cache_expire_only(cos_server, mount_factory, options):
    """A listing's "absent" is a negative entry, as in COSFS and s3fs: a name another host
    made in a directory B has listed is found by name, and listed, once negative_cache_expire
    has passed since B's LIST (at once with disable_noobj_cache); a name it removed leaves
    B's listing and stat at the same time."""
    a = mount_factory(cos_server)
    b = mount_factory(cos_server, *options)
    (a.path / "d").mkdir()
    (a.path / "d" / "old").write_bytes(b"old")
    assert os.listdir(b.path / "d") == ["old"]
    listed = time.monotonic()
    (a.path / "d" / "new").write_bytes(b"made by A")
    os.unlink(a.path / "d" / "old")
    if options == ("negative_cache_expire=1",):
        time.sleep(max(0.0, listed + 1.0 - time.monotonic()))  # the TTL under test
    assert _read(b.path / "d" / "new") == b"made by A"
    assert os.listdir(b.path / "d") == ["new"]
    with pytest.raises(FileNotFoundError):
        os.stat(b.path / "d" / "old")
