"""A fresh mount shows what is stored from the first look: types, modes, owners and times.

A LIST gives only names, sizes, times and ETags; the rest lives in each object's
x-cos-meta-* headers. A tree written through one mount (symlinks, a FIFO, device nodes,
private modes, other owners, old mtimes) is copied out of fresh mounts, each with an empty
cache directory, with and without allow_other, the way a backup would: tar, rsync -a, find,
ls -l then stat. Each copy must equal the original, built the same way on the local disk.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.apps.tools import need, run
from tests.fuse.conftest import count_requests

OLD = 1_300_000_000  # an mtime far from now


def build_tree(root: Path) -> None:
    """The same tree, made by the same calls, locally and through the mount (as root)."""
    d = root / "d"
    d.mkdir()
    (d / "private").write_bytes(b"secret\n")
    os.chmod(d / "private", 0o600)
    os.symlink("private", d / "link")
    os.mkfifo(d / "fifo", 0o640)
    os.mknod(d / "null", stat.S_IFCHR | 0o620, os.makedev(1, 3))
    os.mknod(d / "disk", stat.S_IFBLK | 0o660, os.makedev(8, 1))
    (d / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(d / "tool", 0o755)
    (d / "old").write_bytes(b"from long ago\n")
    os.utime(d / "old", (OLD, OLD))
    (d / "sub").mkdir()
    os.chmod(d / "sub", 0o750)
    os.chown(d / "sub", 1234, 1234)
    (d / "sub" / "theirs").write_bytes(b"someone else's\n")
    os.chown(d / "sub" / "theirs", 4321, 99)
    os.chmod(d / "sub" / "theirs", 0o640)
    os.symlink("../old", d / "sub" / "up")
    for number, name in enumerate(["private", "fifo", "null", "disk", "tool", "sub/theirs"]):
        os.utime(d / name, (OLD + 86_400 * (number + 1),) * 2)


def described(root: Path) -> dict[str, tuple]:
    """Everything a backup keeps of each entry below `root`, by relative path. Directory
    times are left out: directories' times live in the mount that changed them (README)."""
    found: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        kind = stat.S_IFMT(st.st_mode)
        what: tuple = (stat.filemode(st.st_mode), st.st_uid, st.st_gid)
        if kind == stat.S_IFLNK:
            what += (os.readlink(path),)
        elif kind == stat.S_IFREG:
            what += (int(st.st_mtime), path.read_bytes())
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            what += (int(st.st_mtime), os.major(st.st_rdev), os.minor(st.st_rdev))
        elif kind != stat.S_IFDIR:
            what += (int(st.st_mtime),)
        found[str(path.relative_to(root))] = what
    return found


@pytest.fixture
def stored_tree(cos_server, mount_factory, tmp_path):
    """The tree written through a mount, and its local twin."""
    local = tmp_path / "local"
    local.mkdir()
    build_tree(local)
    writer = mount_factory(cos_server, name="writer")
    build_tree(writer.path)
    assert described(writer.path / "d") == described(local / "d")  # the writer itself
    return described(local / "d")


@pytest.mark.parametrize("options", [(), ("allow_other",)], ids=["private", "allow_other"])
def test_tar_rsync_find_and_stat_on_a_fresh_mount_see_what_is_stored(cos_server, mount_factory, tmp_path,
                                                                     stored_tree, options):
    need("tar")
    need("rsync")
    # tar: from a fresh mount straight into a local copy (no "file changed as we read it")
    fresh = mount_factory(cos_server, *options, name="for_tar")
    archive = tmp_path / "d.tar"
    made = subprocess.run(["tar", "--numeric-owner", "-cf", str(archive), "d"], cwd=fresh.path,
                          capture_output=True, text=True)
    assert (made.returncode, made.stderr) == (0, "")
    (tmp_path / "untarred").mkdir()
    run("tar", "--numeric-owner", "-xpf", archive, cwd=tmp_path / "untarred")
    assert described(tmp_path / "untarred" / "d") == stored_tree

    # rsync -a (links, devices, specials, perms, owners, times)
    fresh = mount_factory(cos_server, *options, name="for_rsync")
    run("rsync", "-a", "--numeric-ids", f"{fresh.path / 'd'}/", str(tmp_path / "rsynced"))
    assert described(tmp_path / "rsynced") == stored_tree

    # find's types come from readdir alone (d_type), before any stat
    fresh = mount_factory(cos_server, *options, name="for_find")
    types = {}
    for kind in "fdlpcb":
        out = run("find", ".", "-type", kind, cwd=fresh.path / "d").stdout.split()
        types.update({name[2:]: kind for name in out if name != "."})
    assert types == {"private": "f", "tool": "f", "old": "f", "link": "l", "fifo": "p", "null": "c", "disk": "b",
                     "sub": "d", "sub/theirs": "f", "sub/up": "l"}

    # ls -l, then stat of what it listed: the same as stored, from the first look
    fresh = mount_factory(cos_server, *options, name="for_ls")
    listing = run("ls", "-ln", fresh.path / "d").stdout.splitlines()[1:]
    shown = {line.split()[-1] if " -> " not in line else line.split()[-3]: line.split()[:4] for line in listing}
    assert shown == {name: [mode, "2" if mode[0] == "d" else "1", str(uid), str(gid)]
                     for name, (mode, uid, gid, *_) in stored_tree.items() if "/" not in name}
    assert shown["private"][0] == "-rw-------" and shown["sub"][2:] == ["1234", "1234"]
    assert described(fresh.path / "d") == stored_tree


def test_a_listing_costs_a_list_and_one_head_per_entry_as_the_readme_says(cos_server, mount_factory,
                                                                            stored_tree):
    """README, Semantics: a cold ls -l of a folder of N entries (N <= 1,000) is one LIST (the
    folder's lookup, whose page is the listing) and one HEAD per object or directory marker,
    the folder's own marker included; ls reads a symlink's target (one GET). A second ls -l
    within stat_cache_expire costs nothing."""
    fresh = mount_factory(cos_server, name="counted")
    before = len(cos_server.access_lines(settled=True))
    run("ls", "-l", fresh.path / "d")
    entries = [name for name in stored_tree if "/" not in name]
    assert count_requests(cos_server, before) == {"LIST": 1, "HEAD": len(entries) + 1, "GET": 1}
    before = len(cos_server.access_lines(settled=True))
    run("ls", "-l", fresh.path / "d")
    assert count_requests(cos_server, before) == {}
