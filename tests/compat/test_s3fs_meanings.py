"""What COSFS and s3fs users mean, on real mounts (issue 20, section 4): the Content-Type
follows the name, renames keep st_ino, names up to the FUSE limit, another host's changes
seen at the next open, and absent names trusted only for negative_cache_expire."""

from __future__ import annotations

import errno
import os

import pytest

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
