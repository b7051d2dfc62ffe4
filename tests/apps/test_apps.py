"""Real applications on a real mount: tar, cp -a, rsync, an editor's save, sqlite3, git.

Each checks its result through the mount (diff -r against a local copy) and in the bucket
(through the official SDK), and that no temporary file is left behind.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from tests.apps.tools import GIT, exercise_git, fill_database, need, run

from tests.write.bucket import Bucket

SOURCE_TREE = Path("/usr/share/doc/git")  # ~600 real files, 31 directories, 3 symlinks




def source_tree() -> Path:
    if not SOURCE_TREE.is_dir() or len(list(SOURCE_TREE.rglob("*"))) < 100:
        pytest.fail(f"{SOURCE_TREE} is missing: run scripts/setup.sh (it installs git and its docs)")
    return SOURCE_TREE


def assert_same_tree(local: Path, mounted: Path, *, mtimes: bool = True, modes: bool = True) -> int:
    """diff -r, plus types, modes and mtimes (seconds) of every entry; returns the file count."""
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
            if modes:
                assert stat.S_IMODE(got.st_mode) == stat.S_IMODE(want.st_mode), rel
            if mtimes:
                assert int(got.st_mtime) == int(want.st_mtime), (rel, got.st_mtime, want.st_mtime)
        elif stat.S_ISLNK(want.st_mode):
            assert os.readlink(mounted / rel) == os.readlink(path), rel
    return files


def assert_bucket_holds(bucket: Bucket, prefix: str, local: Path, sample: int = 40) -> None:
    """Every file and symlink of `local` is an object below prefix; a sample is compared byte for byte."""
    keys = set(bucket.keys(prefix))
    wanted = {}
    for path in local.rglob("*"):
        rel = path.relative_to(local).as_posix()
        if path.is_symlink() or path.is_file():
            wanted[prefix + rel] = path
    missing = sorted(set(wanted) - keys)
    assert not missing, f"{len(missing)} files are not in the bucket, e.g. {missing[:5]}"
    extra = sorted(k for k in keys - set(wanted) if not k.endswith("/"))
    assert not extra, f"objects without a local file (temporaries left behind?): {extra[:10]}"
    rng = random.Random(1)
    for key in rng.sample(sorted(wanted), min(sample, len(wanted))):
        path = wanted[key]
        expected = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        assert bucket.get(key) == expected, key


def test_tar_extract_into_the_mount(cos_server, bucket, mount_factory, tmp_path):
    need("tar")
    tarball = tmp_path / "doc.tar.gz"
    run("tar", "czf", tarball, "-C", source_tree().parent, source_tree().name)
    local = tmp_path / "local"
    local.mkdir()
    run("tar", "xzf", tarball, "-C", local)
    m = mount_factory(cos_server)
    os.mkdir(m.path / "x")
    run("tar", "xzf", tarball, "-C", m.path / "x")
    files = assert_same_tree(local / "git", m.path / "x" / "git")
    assert files > 500
    assert_bucket_holds(bucket, "x/git/", local / "git")
    # a fresh mount lists the same tree: links, modes and mtimes from the first listing
    m2 = mount_factory(cos_server)
    assert_same_tree(local / "git", m2.path / "x" / "git")
    # and tar reads it back
    listing = run("tar", "tzf", tarball).stdout.split()
    again = tmp_path / "again.tar"
    run("tar", "cf", again, "-C", m2.path / "x", "git")
    assert sorted(run("tar", "tf", again).stdout.split()) == sorted(listing)


def test_cp_a_a_tree(cos_server, bucket, mount_factory, tmp_path):
    need("cp")
    source = tmp_path / "src"
    shutil.copytree(Path(__file__).resolve().parents[2] / "cosfs", source, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    os.symlink("cli.py", source / "link-to-cli.py")
    os.chmod(source / "cli.py", 0o755)
    os.utime(source / "config.py", (1_000_000_000, 1_000_000_000))
    m = mount_factory(cos_server)
    run("cp", "-a", source, m.path / "copy")
    files = assert_same_tree(source, m.path / "copy")
    assert files >= 30
    assert os.stat(m.path / "copy" / "config.py").st_mtime == 1_000_000_000
    assert_bucket_holds(bucket, "copy/", source, sample=100)
    meta = bucket.meta("copy/cli.py")
    assert int(meta["mode"]) == stat.S_IFREG | 0o755
    assert bucket.get("copy/link-to-cli.py") == b"cli.py"


def test_rsync_in_and_again_after_a_change(cos_server, bucket, mount_factory, tmp_path):
    need("rsync")
    source = tmp_path / "src"
    shutil.copytree(source_tree(), source, symlinks=True)
    m = mount_factory(cos_server)
    run("rsync", "-a", f"{source}/", f"{m.path / 'mirror'}/")
    assert_same_tree(source, m.path / "mirror")
    assert_bucket_holds(bucket, "mirror/", source)
    # change one file; the second run must transfer only that one (sizes and mtimes survived)
    changed = next(p for p in sorted(source.rglob("*")) if p.is_file() and not p.is_symlink()
                   and p.stat().st_size > 1000)
    rel = changed.relative_to(source).as_posix()
    changed.write_bytes(changed.read_bytes()[:500] + b"\nchanged by the test\n")
    result = run("rsync", "-a", "--itemize-changes", f"{source}/", f"{m.path / 'mirror'}/")
    transferred = [line.split(None, 1)[1] for line in result.stdout.splitlines() if line.startswith(">f")]
    assert transferred == [rel], result.stdout[:3000]
    assert_same_tree(source, m.path / "mirror")
    assert bucket.get(f"mirror/{rel}") == changed.read_bytes()
    assert_bucket_holds(bucket, "mirror/", source, sample=10)
    # --delete removes what the source no longer has
    victim = next(p for p in sorted(source.rglob("*")) if p.is_file() and p != changed)
    victim.unlink()
    run("rsync", "-a", "--delete", f"{source}/", f"{m.path / 'mirror'}/")
    assert not bucket.exists("mirror/" + victim.relative_to(source).as_posix())
    assert_same_tree(source, m.path / "mirror")


def test_editor_style_save(cos_server, bucket, mount_factory):
    bucket.put("notes/todo.txt", b"buy milk\n")
    m = mount_factory(cos_server)
    path = m.path / "notes" / "todo.txt"
    assert path.read_bytes() == b"buy milk\n"
    for round_ in range(3):
        content = path.read_bytes() + f"item {round_}\n".encode()
        # vim: a swap file while editing; then write a temp file, fsync, rename over the original
        swap = m.path / "notes" / ".todo.txt.swp"
        swap.write_bytes(b"b0VIM swap " * 100)
        tmp = m.path / "notes" / f".todo.txt.{round_}.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        swap.unlink()
        assert path.read_bytes() == content
        assert bucket.get("notes/todo.txt") == content
    assert os.listdir(m.path / "notes") == ["todo.txt"]
    assert bucket.keys("notes/") == ["notes/todo.txt"]
    assert path.read_bytes() == b"buy milk\nitem 0\nitem 1\nitem 2\n"


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_sqlite_database_on_the_mount(cos_server, bucket, mount_factory, tmp_path, journal_mode):
    m = mount_factory(cos_server)
    os.mkdir(m.path / "db")
    db_path = m.path / "db" / "app.sqlite"
    connection = sqlite3.connect(db_path)
    try:
        assert connection.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0] == journal_mode
        assert fill_database(connection, batches=10, max_payload=600, seed=2) == 990
        assert connection.execute("SELECT count(*) FROM items WHERE name = 'renamed'").fetchone()[0] > 100
        if journal_mode == "wal":
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.execute("PRAGMA journal_mode=delete")
    finally:
        connection.close()
    # the file the SDK downloads is a consistent database with every row
    copy = tmp_path / "copy.sqlite"
    bucket.get_to("db/app.sqlite", copy)
    local = sqlite3.connect(copy)
    try:
        assert local.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert local.execute("SELECT count(*) FROM items").fetchone()[0] == 990
        assert local.execute("SELECT count(*) FROM items WHERE id % 100 = 1").fetchone()[0] == 0
    finally:
        local.close()
    assert bucket.keys("db/") == ["db/", "db/app.sqlite"], "journal or WAL files left behind"
    assert os.listdir(m.path / "db") == ["app.sqlite"]
    # the sqlite3 command-line tool reads it through the mount
    need("sqlite3")
    result = run("sqlite3", db_path, "SELECT count(*) FROM items; PRAGMA integrity_check;")
    assert result.stdout.split() == ["990", "ok"]


def test_git_repository_on_the_mount(cos_server, bucket, mount_factory):
    m = mount_factory(cos_server)
    repo = m.path / "repo"
    exercise_git(repo, modules=20)
    # the repository in the bucket is complete: a clone of a download works
    head = bucket.get("repo/.git/HEAD")
    assert head == b"ref: refs/heads/main\n"
    assert not [k for k in bucket.keys("repo/.git/") if k.endswith(".lock")], "lock files left behind"
    m2 = mount_factory(cos_server)
    log = run(*GIT, "log", "--format=%s", cwd=m2.path / "repo").stdout.splitlines()
    assert log == ["second commit", "first commit"]
    assert run(*GIT, "status", "--porcelain", cwd=m2.path / "repo").stdout == ""


def test_directory_modes_times_and_renames(cos_server, bucket, mount_factory):
    """chmod, utime and rename of directories: self-copies of their markers and key walks
    (run through every framing of the re-framing server too, see conftest)."""
    m = mount_factory(cos_server)
    (m.path / "top" / "inner").mkdir(parents=True)
    (m.path / "top" / "inner" / "f.txt").write_bytes(b"inside")
    os.chmod(m.path / "top", 0o750)
    os.utime(m.path / "top" / "inner", (1_200_000_000, 1_200_000_000))
    os.rename(m.path / "top", m.path / "moved")
    assert sorted(bucket.keys()) == ["moved/", "moved/inner/", "moved/inner/f.txt"]
    assert (m.path / "moved" / "inner" / "f.txt").read_bytes() == b"inside"
    fresh = mount_factory(cos_server)
    assert stat.S_IMODE(os.stat(fresh.path / "moved").st_mode) == 0o750
    assert int(os.stat(fresh.path / "moved" / "inner").st_mtime) == 1_200_000_000
