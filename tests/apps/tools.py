"""Application workloads shared by the mount tests over `cosfs serve` (tests/apps) and over a
third-party S3 server (tests/s3compat): the same programs, the same checks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: run scripts/setup.sh")
    return path


def run(*args, cwd=None, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (f"{args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-3000:]}")
    return result


def exercise_git(repo: Path, modules: int) -> None:
    """init, two commits (an edit and a deletion), log, status, fsck and a read of history."""
    need("git")
    run(*GIT, "init", "-q", repo)
    (repo / "README.md").write_text("# demo\n")
    (repo / "src").mkdir()
    for i in range(modules):
        (repo / "src" / f"mod{i}.py").write_text(f"VALUE = {i}\n" * (i + 1))
    run(*GIT, "add", "-A", cwd=repo)
    run(*GIT, "commit", "-q", "-m", "first commit", cwd=repo)
    (repo / "README.md").write_text("# demo\n\nsecond version\n")
    (repo / "src" / "mod3.py").unlink()
    run(*GIT, "commit", "-q", "-am", "second commit", cwd=repo)
    log = run(*GIT, "log", "--format=%s", cwd=repo).stdout.splitlines()
    assert log == ["second commit", "first commit"]
    assert run(*GIT, "status", "--porcelain", cwd=repo).stdout == ""
    run(*GIT, "fsck", "--strict", cwd=repo)
    assert run(*GIT, "show", "HEAD~1:src/mod3.py", cwd=repo).stdout == "VALUE = 3\n" * 4


def fill_database(connection, *, batches: int, max_payload: int, seed: int) -> int:
    """A table with an index, 100 rows per transaction, then an update and a delete in one
    more; checks the row count and integrity, and returns the count."""
    import random

    connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, payload BLOB)")
    connection.execute("CREATE INDEX by_name ON items(name)")
    rng = random.Random(seed)
    for batch in range(batches):
        with connection:
            connection.executemany("INSERT INTO items (name, payload) VALUES (?, ?)",
                                   [(f"item-{batch}-{i}", rng.randbytes(rng.randrange(10, max_payload)))
                                    for i in range(100)])
    with connection:
        connection.execute("UPDATE items SET name = 'renamed' WHERE id % 7 = 0")
        connection.execute("DELETE FROM items WHERE id % 100 = 1")
    count = connection.execute("SELECT count(*) FROM items").fetchone()[0]
    assert count == batches * 99
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return count
