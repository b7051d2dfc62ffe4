"""Real applications on a cosfs mount of `rclone serve s3`: cp -a, tar x and c, rsync,
sqlite3, git. Each checks its result through the mount (contents, types, modes, mtimes,
symlinks) and in rclone's own files (RcloneServer.served_tree), and that no temporary is
left behind.

The trees are small on purpose (a few directories): the whole directory runs in well under
a minute on a healthy mount.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path


from tests.apps.tools import GIT, exercise_git, fill_database, need, run

from tests.s3compat.conftest import RcloneServer

MiB = 1024 * 1024




def make_tree(root: Path) -> Path:
    """A small tree of every kind of entry: text and binary files (one over several cache
    blocks), an empty file, an executable, a symlink, nested and empty directories, an old mtime."""
    rng = random.Random(10)
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "README.txt").write_text("A tree for the S3 compatibility tests.\n" * 20)
    for i in range(12):
        (root / "src" / "pkg" / f"mod{i}.py").write_text(f"VALUE = {i}\n" * (i * 40 + 1))
    (root / "src" / "blob.bin").write_bytes(rng.randbytes(3 * MiB + 333))
    (root / "src" / "empty.txt").write_bytes(b"")
    tool = root / "tool.sh"
    tool.write_text("#!/bin/sh\necho hello\n")
    tool.chmod(0o755)
    os.symlink("README.txt", root / "link-to-readme")
    os.utime(root / "src" / "pkg" / "mod3.py", (1_000_000_000, 1_000_000_000))
    return root


def assert_same_tree(local: Path, mounted: Path) -> int:
    """diff -r, plus the type, mode and mtime (seconds) of every entry and every symlink's
    target, as the mount shows them; returns the number of regular files."""
    result = subprocess.run(["diff", "-r", "--no-dereference", str(local), str(mounted)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"diff -r found differences:\n{result.stdout[:3000]}{result.stderr[:1000]}"
    files = 0
    for path in sorted(local.rglob("*")):
        rel = path.relative_to(local)
        want, got = os.lstat(path), os.lstat(mounted / rel)
        assert stat.S_IFMT(got.st_mode) == stat.S_IFMT(want.st_mode), rel
        if stat.S_ISREG(want.st_mode):
            files += 1
            assert got.st_size == want.st_size, rel
            assert stat.S_IMODE(got.st_mode) == stat.S_IMODE(want.st_mode), rel
            assert int(got.st_mtime) == int(want.st_mtime), (rel, got.st_mtime, want.st_mtime)
        elif stat.S_ISLNK(want.st_mode):
            assert os.readlink(mounted / rel) == os.readlink(path), rel
    return files


def assert_served(server: RcloneServer, prefix: str, local: Path) -> None:
    """rclone's files below `prefix` are exactly the files and symlinks of `local` (a symlink
    is an object holding its target, as in COSFS), byte for byte: nothing missing, no
    temporary left behind."""
    wanted = {}
    for path in sorted(local.rglob("*")):
        key = prefix + path.relative_to(local).as_posix()
        if path.is_symlink():
            wanted[key] = os.readlink(path).encode()
        elif path.is_file():
            wanted[key] = path.read_bytes()
    served = server.served_tree(prefix)
    missing = sorted(set(wanted) - set(served))
    extra = sorted(set(served) - set(wanted))
    assert not missing and not extra, f"missing in the bucket: {missing[:10]}; not wanted there: {extra[:10]}"
    different = [key for key in wanted if served[key] != wanted[key]]
    assert not different, f"objects whose content differs: {different[:10]}"


def test_cp_a_a_tree(rclone_server, s3_mount, tmp_path):
    need("cp")
    source = make_tree(tmp_path / "src")
    m = s3_mount()
    run("cp", "-a", source, m.path / "copy")
    assert assert_same_tree(source, m.path / "copy") >= 15
    assert os.stat(m.path / "copy" / "src" / "pkg" / "mod3.py").st_mtime == 1_000_000_000
    assert_served(rclone_server, "copy/", source)


def test_tar_extract_into_and_create_from_the_mount(rclone_server, s3_mount, tmp_path):
    need("tar")
    source = make_tree(tmp_path / "src")
    tarball = tmp_path / "tree.tar.gz"
    run("tar", "czf", tarball, "-C", source.parent, source.name)
    members = sorted(run("tar", "tzf", tarball).stdout.split())
    m = s3_mount()
    os.mkdir(m.path / "x")
    run("tar", "xzf", tarball, "-C", m.path / "x")
    assert_same_tree(source, m.path / "x" / "src")
    assert_served(rclone_server, "x/src/", source)
    # tar c reads it all back through the mount
    again = tmp_path / "again.tar"
    run("tar", "cf", again, "-C", m.path / "x", "src")
    assert sorted(run("tar", "tf", again).stdout.split()) == members
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    run("tar", "xf", again, "-C", unpacked)
    assert_same_tree(source, unpacked / "src")


def test_rsync_in_and_again_after_a_change(rclone_server, s3_mount, tmp_path):
    need("rsync")
    source = make_tree(tmp_path / "src")
    m = s3_mount()
    run("rsync", "-a", f"{source}/", f"{m.path / 'mirror'}/")
    assert_same_tree(source, m.path / "mirror")
    assert_served(rclone_server, "mirror/", source)
    # one file changes: the second run sends only it (sizes and mtimes held)
    changed = source / "src" / "pkg" / "mod5.py"
    changed.write_text("changed by the test\n")
    result = run("rsync", "-a", "--itemize-changes", f"{source}/", f"{m.path / 'mirror'}/")
    transferred = [line.split(None, 1)[1] for line in result.stdout.splitlines() if line.startswith(">f")]
    assert transferred == ["src/pkg/mod5.py"], result.stdout[:3000]
    assert rclone_server.served("mirror/src/pkg/mod5.py").read_bytes() == b"changed by the test\n"
    # --delete removes what the source no longer has
    (source / "src" / "pkg" / "mod7.py").unlink()
    run("rsync", "-a", "--delete", f"{source}/", f"{m.path / 'mirror'}/")
    assert not (m.path / "mirror" / "src" / "pkg" / "mod7.py").exists()
    assert_same_tree(source, m.path / "mirror")
    assert_served(rclone_server, "mirror/", source)


def test_sqlite_database_on_the_mount(rclone_server, s3_mount, tmp_path):
    m = s3_mount()
    db_path = m.path / "app.sqlite"
    connection = sqlite3.connect(db_path)
    try:
        assert fill_database(connection, batches=5, max_payload=3000, seed=11) == 495
    finally:
        connection.close()
    # rclone's file is a consistent database with every row, and no journal is left
    copy = tmp_path / "copy.sqlite"
    shutil.copyfile(rclone_server.served("app.sqlite"), copy)
    local = sqlite3.connect(copy)
    try:
        assert local.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert local.execute("SELECT count(*) FROM items").fetchone()[0] == 495
        # 71 multiples of 7, less 301 deleted
        assert local.execute("SELECT count(*) FROM items WHERE name = 'renamed'").fetchone()[0] == 70
    finally:
        local.close()
    assert sorted(rclone_server.served_tree()) == ["app.sqlite"], "journal left behind"
    assert os.listdir(m.path) == ["app.sqlite"]
    # the sqlite3 tool reads it through a fresh mount
    need("sqlite3")
    m2 = s3_mount()
    result = run("sqlite3", m2.path / "app.sqlite", "SELECT count(*) FROM items; PRAGMA integrity_check;")
    assert result.stdout.split() == ["495", "ok"]


def test_git_repository_on_the_mount(rclone_server, s3_mount):
    m = s3_mount()
    repo = m.path / "repo"
    exercise_git(repo, modules=10)
    # the repository in rclone's directory is complete and lock-free
    assert rclone_server.served("repo/.git/HEAD").read_bytes() == b"ref: refs/heads/main\n"
    assert not [k for k in rclone_server.served_tree("repo/.git/") if k.endswith(".lock")], "lock files left behind"
    m2 = s3_mount()
    log = run(*GIT, "log", "--format=%s", cwd=m2.path / "repo").stdout.splitlines()
    assert log == ["second commit", "first commit"]
    assert run(*GIT, "status", "--porcelain", cwd=m2.path / "repo").stdout == ""
