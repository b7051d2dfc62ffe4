"""Model-based: random sequences of file operations run on a mount and on a local directory
side by side must leave identical trees, byte for byte, and fail with the same errnos. The
bucket (through the SDK) must then hold exactly the local tree: one object per file, one
`dir/` marker per directory.

One mount per test function; every Hypothesis example works in a fresh subdirectory of it.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.write.bucket import Bucket

MiB = 1024 * 1024

PATHS = ["a", "b", "d", "e", "d/a", "d/b", "d/e", "e/a", "d/e/a"]
path_st = st.sampled_from(PATHS)
data_st = st.one_of(
    st.binary(min_size=0, max_size=64),
    st.builds(lambda byte, n: bytes([byte]) * n, st.integers(0, 255), st.integers(1, 5000)),
)
offset_st = st.one_of(st.integers(0, 6000), st.sampled_from([MiB - 1, MiB, 2 * MiB + 3]))
size_st = st.one_of(st.integers(0, 6000), st.sampled_from([MiB + 1, 2 * MiB]))

create_st = st.tuples(st.just("create"), path_st, data_st)
mkdir_st = st.tuples(st.just("mkdir"), path_st)
op_st = st.one_of(
    create_st, create_st, mkdir_st,
    st.tuples(st.just("write"), path_st, offset_st, data_st),
    st.tuples(st.just("write"), path_st, offset_st, data_st),
    st.tuples(st.just("append"), path_st, data_st),
    st.tuples(st.just("fsync_write"), path_st, offset_st, data_st),
    st.tuples(st.just("truncate"), path_st, size_st),
    st.tuples(st.just("rename"), path_st, path_st),
    st.tuples(st.just("rename"), path_st, path_st),
    st.tuples(st.just("unlink"), path_st),
    st.tuples(st.just("rmdir"), path_st),
    st.tuples(st.just("read"), path_st),
)
# Every example starts from a small populated tree, so most operations have something to act on.
PRELUDE = [("mkdir", "d"), ("create", "a", b"hello"), ("create", "d/a", bytes(range(256)) * 12), ("mkdir", "d/e")]
ops_st = st.lists(op_st, min_size=8, max_size=40).map(lambda ops: PRELUDE + ops)

SETTINGS = settings(max_examples=25, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


def apply(root: Path, op: tuple) -> tuple:
    """Run one operation under root; ('ok', result) or ('err', errno name)."""
    kind, path, *args = op
    target = root / path
    try:
        if kind == "create":
            fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            try:
                os.write(fd, args[0])
            finally:
                os.close(fd)
            return ("ok", None)
        if kind in ("write", "fsync_write"):
            flags = os.O_WRONLY if kind == "write" else os.O_RDWR | os.O_CREAT
            fd = os.open(target, flags, 0o644)
            try:
                os.pwrite(fd, args[1], args[0])
                if kind == "fsync_write":
                    os.fsync(fd)
                    return ("ok", os.pread(fd, len(args[1]) + 10, args[0]))
            finally:
                os.close(fd)
            return ("ok", None)
        if kind == "append":
            fd = os.open(target, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, args[0])
                return ("ok", os.fstat(fd).st_size)
            finally:
                os.close(fd)
        if kind == "truncate":
            os.truncate(target, args[0])
            return ("ok", None)
        if kind == "rename":
            os.rename(target, root / args[0])
            return ("ok", None)
        if kind == "unlink":
            os.unlink(target)
            return ("ok", None)
        if kind == "mkdir":
            os.mkdir(target)
            return ("ok", None)
        if kind == "rmdir":
            os.rmdir(target)
            return ("ok", None)
        if kind == "read":
            st_ = os.stat(target)
            if stat.S_ISDIR(st_.st_mode):
                return ("ok", ("dir", sorted(os.listdir(target))))
            return ("ok", ("file", st_.st_size, target.read_bytes()))
    except OSError as exc:
        return ("err", errno.errorcode.get(exc.errno, exc.errno))
    raise AssertionError(f"unknown operation {op!r}")


def snapshot(root: Path) -> dict[str, tuple]:
    """{relative path: ('dir',) or ('file', size, bytes)} of everything below root."""
    tree: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in dirnames:
            rel = (base / name).relative_to(root).as_posix()
            assert stat.S_ISDIR(os.lstat(base / name).st_mode), rel
            tree[rel] = ("dir",)
        for name in filenames:
            path = base / name
            rel = path.relative_to(root).as_posix()
            st_ = os.lstat(path)
            assert stat.S_ISREG(st_.st_mode), rel
            tree[rel] = ("file", st_.st_size, path.read_bytes())
    return tree


def bucket_view(bucket: Bucket, prefix: str) -> dict[str, tuple]:
    """The bucket below prefix, in snapshot()'s terms: markers are dirs, other keys files."""
    tree: dict[str, tuple] = {}
    for key in bucket.keys(prefix):
        rel = key[len(prefix):]
        if not rel:
            continue
        if rel.endswith("/"):
            tree[rel.rstrip("/")] = ("dir",)
        else:
            body = bucket.get(key)
            tree[rel] = ("file", len(body), body)
    return tree


def describe(a: dict, b: dict) -> str:
    lines = []
    for rel in sorted(set(a) | set(b)):
        left, right = a.get(rel), b.get(rel)
        if left != right:
            show = lambda v: v if v is None or v[0] == "dir" else ("file", v[1], v[2][:40])  # noqa: E731
            lines.append(f"  {rel}: local={show(left)} other={show(right)}")
    return "\n".join(lines)


def run_example(mount_root: Path, local_root: Path, ops: list[tuple], tally: dict[str, int]) -> None:
    log = []
    for op in ops:
        expected = apply(local_root, op)
        got = apply(mount_root, op)
        log.append(f"{op[0]} {op[1:]!r:.80} -> local {expected!r:.60} mount {got!r:.60}")
        assert got == expected, "operation results differ:\n" + "\n".join(log)
        tally[expected[0]] = tally.get(expected[0], 0) + 1
    local, mounted = snapshot(local_root), snapshot(mount_root)
    assert mounted == local, "trees differ after:\n" + "\n".join(log) + "\n" + describe(local, mounted)


def test_random_operations_match_a_local_directory(cos_server, mount_factory, tmp_path):
    m = mount_factory(cos_server)
    bucket = Bucket(cos_server)
    counter = itertools.count()
    tally: dict[str, int] = {}

    @SETTINGS
    @given(ops_st)
    def check(ops):
        name = f"ex{next(counter)}"
        os.mkdir(m.path / name)
        local_root = Path(tempfile.mkdtemp(prefix=name, dir=tmp_path))
        run_example(m.path / name, local_root, ops, tally)
        # close() committed everything: the bucket holds exactly the local tree
        local = snapshot(local_root)
        in_bucket = bucket_view(bucket, name + "/")
        assert in_bucket == local, "bucket differs after:\n" + "\n".join(map(repr, ops)) + "\n" + describe(
            local, in_bucket)

    check()
    print(tally)
    assert tally.get("ok", 0) >= 50 and tally.get("err", 0) >= 10, tally  # the examples did real work


def test_random_operations_with_write_back(cos_server, mount_factory, tmp_path):
    """Same, with close() returning before the upload: the mount must still read back its own
    changes, and once synced the bucket must match every example's final tree."""
    m = mount_factory(cos_server, "write_back_delay=0.3")
    bucket = Bucket(cos_server)
    counter = itertools.count()
    tally: dict[str, int] = {}
    finals: dict[str, dict] = {}

    @settings(SETTINGS, max_examples=20)
    @given(ops_st)
    def check(ops):
        name = f"wb{next(counter)}"
        os.mkdir(m.path / name)
        local_root = Path(tempfile.mkdtemp(prefix=name, dir=tmp_path))
        run_example(m.path / name, local_root, ops, tally)
        finals[name] = snapshot(local_root)

    check()
    print(tally)
    assert tally.get("ok", 0) >= 50 and tally.get("err", 0) >= 10, tally  # the examples did real work
    os.setxattr(m.path, "user.cosfs.sync", b"1")
    deadline = time.monotonic() + 30
    while True:
        views = {name: bucket_view(bucket, name + "/") for name in finals}
        if views == finals:
            break
        if time.monotonic() > deadline:
            bad = [f"{name}:\n{describe(finals[name], views[name])}" for name in finals if views[name] != finals[name]]
            raise AssertionError("the bucket does not match after sync:\n" + "\n".join(bad))
        time.sleep(0.5)
