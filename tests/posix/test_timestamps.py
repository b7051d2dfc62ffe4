"""Which timestamps each call marks for update, on the entry and on its parent directory, and
utimensat(2) reading back what it set.

Granularity assumed: cosfs stores COSFS's x-cos-meta-mtime in whole seconds, so timestamps
are compared at one-second granularity. Every case is set up, its timestamps read, then the
clock is moved into the next whole second before any action runs: a timestamp the action
must update is then at least one second later than before ("changed"), one it must not
update keeps its second ("same"), and the times of a new entry are within the action's
second or later ("new"). utimensat with explicit times must read back the same second, and a
nanosecond part that is either kept or truncated, never rounded up or invented.

Sources: POSIX (IEEE Std 1003.1-2017) open(), write(), read(), chmod(), chown(), truncate(),
ftruncate(), mkdir(), rmdir(), unlink(), symlink(), rename(), mkfifo(), mknod(),
utimensat(); the Linux man pages inode(7), utimensat(2), rename(2).
"""

from __future__ import annotations

import dataclasses
import os
import time

from tests.posix.conftest import NOBODY, Row, err, next_second, ok, seconds

FIELDS = ("atime", "mtime", "ctime")
CREAT = ["O_WRONLY", "O_CREAT"]


@dataclasses.dataclass
class TimeCase:
    """`setup` runs before the timestamps are read, `action` one second later; `expect` maps
    a path (relative to the case's own directory, "." for it; or (before, after) for a
    renamed entry) to {field: "changed" | "same" | "new"}."""

    name: str
    rule: str
    setup: list[Row]
    action: list[Row]
    expect: dict


def file_setup(c, name="f", data="data"):
    rows = [ok("open", c / name, CREAT, 0o644, what=f"fixture: create {name}", rule="open(2)")]
    if data:
        rows.append(ok("write", c / name, data, what=f"fixture: write {name}", rule="write(2)"))
    return rows


def mkdir_setup(c, name):
    return [ok("mkdir", c / name, 0o755, what=f"fixture: mkdir {name}", rule="mkdir(2)")]


PARENT_CHANGED = {"mtime": "changed", "ctime": "changed", "atime": "same"}
UNCHANGED = {"atime": "same", "mtime": "same", "ctime": "same"}
NEW = {"atime": "new", "mtime": "new", "ctime": "new"}


def cases(root):
    """The table: one TimeCase per behaviour, each in its own directory root/NAME."""
    table = []

    def case(name, rule, setup, action, expect):
        c = root / name
        table.append(TimeCase(name, rule, [ok("mkdir", c, 0o755, what="fixture: case directory", rule="mkdir(2)")]
                              + setup(c), action(c), expect))

    posix_open = ("POSIX open(): O_CREAT on a new file marks atime, mtime and ctime of the file and mtime and ctime "
                  "of the parent directory")
    case("create", posix_open, lambda c: [],
         lambda c: [ok("open", c / "new", CREAT, 0o644, what="create", rule="open(2)")],
         {"new": NEW, ".": PARENT_CHANGED})
    case("mknod_regular", "POSIX mknod(): marks the new file's times and the parent's mtime and ctime", lambda c: [],
         lambda c: [ok("mknod", c / "new", 0o100644, what="mknod S_IFREG", rule="mknod(2)")],
         {"new": NEW, ".": PARENT_CHANGED})
    case("create_in_subdirectory", "POSIX open(): only the directory that contains the new entry is marked",
         lambda c: mkdir_setup(c, "sub"),
         lambda c: [ok("open", c / "sub" / "new", CREAT, 0o644, what="create in sub", rule="open(2)")],
         {"sub": PARENT_CHANGED, ".": UNCHANGED})
    case("open_creat_existing", "open(2): when the file exists, O_CREAT has no effect (no O_EXCL, no O_TRUNC)",
         file_setup, lambda c: [ok("open", c / "f", CREAT, 0o644, what="O_CREAT on an existing file", rule="open(2)")],
         {"f": UNCHANGED, ".": UNCHANGED})
    case("open_read_only", "POSIX open(): opening an existing file marks nothing", file_setup,
         lambda c: [ok("open", c / "f", ["O_RDONLY"], what="open read-only", rule="open(2)")],
         {"f": UNCHANGED, ".": UNCHANGED})
    trunc = ("POSIX open(): O_TRUNC on an existing regular file marks its mtime and ctime (the directory is not "
             "touched)")
    case("o_trunc_nonempty", trunc, file_setup,
         lambda c: [ok("open", c / "f", ["O_WRONLY", "O_TRUNC"], what="O_TRUNC", rule="open(2)")],
         {"f": {"mtime": "changed", "ctime": "changed"}, ".": UNCHANGED})
    case("o_trunc_empty", trunc + " (also when it was already empty)", lambda c: file_setup(c, data=""),
         lambda c: [ok("open", c / "f", ["O_WRONLY", "O_TRUNC"], what="O_TRUNC on an empty file", rule="open(2)")],
         {"f": {"mtime": "changed", "ctime": "changed"}, ".": UNCHANGED})
    case("write", "POSIX write(): nbyte > 0 marks mtime and ctime of the file (not atime, not the directory)",
         file_setup, lambda c: [ok("write", c / "f", "more", what="append", rule="write(2)")],
         {"f": {"mtime": "changed", "ctime": "changed", "atime": "same"}, ".": UNCHANGED})
    case("read", "POSIX read(): marks atime at most (mtime and ctime of the file and the directory stay)",
         file_setup, lambda c: [ok("read", c / "f", what="read", rule="read(2)")],
         {"f": {"mtime": "same", "ctime": "same"}, ".": UNCHANGED})
    chmod = "POSIX chmod(): marks the file's ctime only"
    case("chmod_file", chmod, file_setup, lambda c: [ok("chmod", c / "f", 0o600, what="chmod", rule="chmod(2)")],
         {"f": {"ctime": "changed", "mtime": "same", "atime": "same"}, ".": UNCHANGED})
    case("chmod_directory", chmod, lambda c: mkdir_setup(c, "sub"),
         lambda c: [ok("chmod", c / "sub", 0o700, what="chmod of a directory", rule="chmod(2)")],
         {"sub": {"ctime": "changed", "mtime": "same", "atime": "same"}, ".": UNCHANGED})
    case("chmod_through_symlink", chmod + "; chmod follows the link and the link itself is untouched",
         lambda c: file_setup(c) + [ok("symlink", "f", c / "l", what="fixture: symlink l -> f", rule="symlink(2)")],
         lambda c: [ok("chmod", c / "l", 0o600, what="chmod through a symlink", rule="chmod(2)")],
         {"f": {"ctime": "changed", "mtime": "same"}, "l": UNCHANGED, ".": UNCHANGED})
    chown = "POSIX chown(): marks the file's ctime only"
    case("chown_file", chown, file_setup,
         lambda c: [ok("chown", c / "f", NOBODY, NOBODY, what="chown", rule="chown(2)")],
         {"f": {"ctime": "changed", "mtime": "same", "atime": "same"}, ".": UNCHANGED})
    case("chown_directory", chown, lambda c: mkdir_setup(c, "sub"),
         lambda c: [ok("chown", c / "sub", NOBODY, NOBODY, what="chown of a directory", rule="chown(2)")],
         {"sub": {"ctime": "changed", "mtime": "same", "atime": "same"}, ".": UNCHANGED})
    case("chown_group_only", chown, file_setup,
         lambda c: [ok("chown", c / "f", -1, NOBODY, what="chown of the group", rule="chown(2)")],
         {"f": {"ctime": "changed", "mtime": "same", "atime": "same"}, ".": UNCHANGED})
    size = "POSIX truncate()/ftruncate(): a size change marks the file's mtime and ctime"
    case("truncate_grow", size, file_setup,
         lambda c: [ok("truncate", c / "f", 100, what="truncate up", rule="truncate(2)")],
         {"f": {"mtime": "changed", "ctime": "changed", "atime": "same"}, ".": UNCHANGED})
    case("truncate_shrink", size, file_setup,
         lambda c: [ok("truncate", c / "f", 1, what="truncate down", rule="truncate(2)")],
         {"f": {"mtime": "changed", "ctime": "changed", "atime": "same"}, ".": UNCHANGED})
    case("ftruncate", size, file_setup,
         lambda c: [ok("ftruncate", c / "f", ["O_WRONLY"], 2, what="ftruncate", rule="ftruncate(2)")],
         {"f": {"mtime": "changed", "ctime": "changed"}, ".": UNCHANGED})
    case("mkdir", "POSIX mkdir(): marks the new directory's atime, mtime, ctime and the parent's mtime and ctime",
         lambda c: [], lambda c: [ok("mkdir", c / "new", 0o755, what="mkdir", rule="mkdir(2)")],
         {"new": NEW, ".": PARENT_CHANGED})
    case("rmdir", "POSIX rmdir(): marks the parent directory's mtime and ctime", lambda c: mkdir_setup(c, "sub"),
         lambda c: [ok("rmdir", c / "sub", what="rmdir", rule="rmdir(2)")], {".": PARENT_CHANGED})
    case("unlink", "POSIX unlink(): marks the parent directory's mtime and ctime", file_setup,
         lambda c: [ok("unlink", c / "f", what="unlink", rule="unlink(2)")], {".": PARENT_CHANGED})
    case("unlink_symlink", "POSIX unlink(): marks the parent's mtime and ctime; the link's target is untouched",
         lambda c: file_setup(c) + [ok("symlink", "f", c / "l", what="fixture: symlink", rule="symlink(2)")],
         lambda c: [ok("unlink", c / "l", what="unlink of a symlink", rule="unlink(2)")],
         {".": PARENT_CHANGED, "f": UNCHANGED})
    case("symlink", "POSIX symlink(): marks the link's atime, mtime, ctime and the parent's mtime and ctime",
         lambda c: [], lambda c: [ok("symlink", "target", c / "l", what="symlink", rule="symlink(2)")],
         {"l": NEW, ".": PARENT_CHANGED})
    case("mkfifo", "POSIX mkfifo(): marks the FIFO's atime, mtime, ctime and the parent's mtime and ctime",
         lambda c: [], lambda c: [ok("mkfifo", c / "p", 0o644, what="mkfifo", rule="mkfifo(3)")],
         {"p": NEW, ".": PARENT_CHANGED})
    moved = {"ctime": "changed", "mtime": "same", "atime": "same"}
    rename = ("POSIX rename(): marks mtime and ctime of each parent directory; Linux (ext4, tmpfs, btrfs) also "
              "marks the moved entry's ctime, never its mtime")
    case("rename_same_directory", rename, file_setup,
         lambda c: [ok("rename", c / "f", c / "g", what="rename in one directory", rule="rename(2)")],
         {("f", "g"): moved, ".": PARENT_CHANGED})
    case("rename_across_directories", rename,
         lambda c: mkdir_setup(c, "a") + mkdir_setup(c, "b") + file_setup(c, "a/f"),
         lambda c: [ok("rename", c / "a" / "f", c / "b" / "f", what="rename to another directory", rule="rename(2)")],
         {("a/f", "b/f"): moved, "a": PARENT_CHANGED, "b": PARENT_CHANGED, ".": UNCHANGED})
    case("rename_over_existing", rename, lambda c: file_setup(c) + file_setup(c, "g", "old"),
         lambda c: [ok("rename", c / "f", c / "g", what="rename over an existing file", rule="rename(2)")],
         {("f", "g"): moved, ".": PARENT_CHANGED})
    case("rename_directory_across", rename + "; what is inside a moved directory is untouched",
         lambda c: mkdir_setup(c, "a") + mkdir_setup(c, "b") + mkdir_setup(c, "a/sub") + file_setup(c, "a/sub/inner"),
         lambda c: [ok("rename", c / "a" / "sub", c / "b" / "sub", what="rename a directory", rule="rename(2)")],
         {("a/sub", "b/sub"): {"ctime": "changed", "atime": "same"}, ("a/sub/inner", "b/sub/inner"): UNCHANGED,
          "a": PARENT_CHANGED, "b": PARENT_CHANGED, ".": UNCHANGED})
    case("rename_directory_same_parent", rename, lambda c: mkdir_setup(c, "sub") + file_setup(c, "sub/inner"),
         lambda c: [ok("rename", c / "sub", c / "sub2", what="rename a directory in place", rule="rename(2)")],
         {("sub", "sub2"): {"ctime": "changed", "atime": "same"}, ("sub/inner", "sub2/inner"): UNCHANGED,
          ".": PARENT_CHANGED})
    failed = "POSIX: a call that fails has no effect, timestamps included"
    case("failed_mkdir_eexist", failed, file_setup,
         lambda c: [err("EEXIST", "mkdir", c / "f", 0o755, what="mkdir over a file", rule="mkdir(2) EEXIST")],
         {"f": UNCHANGED, ".": UNCHANGED})
    case("failed_create_excl", failed, file_setup,
         lambda c: [err("EEXIST", "open", c / "f", ["O_WRONLY", "O_CREAT", "O_EXCL"], 0o644,
                        what="O_EXCL on an existing file", rule="open(2) EEXIST")],
         {"f": UNCHANGED, ".": UNCHANGED})
    case("failed_unlink_enoent", failed, lambda c: [],
         lambda c: [err("ENOENT", "unlink", c / "missing", what="unlink of a missing name", rule="unlink(2) ENOENT")],
         {".": UNCHANGED})
    case("failed_rmdir_enotempty", failed, lambda c: mkdir_setup(c, "sub") + file_setup(c, "sub/x"),
         lambda c: [err(("ENOTEMPTY", "EEXIST"), "rmdir", c / "sub", what="rmdir of a non-empty directory",
                        rule="rmdir(2) ENOTEMPTY")],
         {"sub": UNCHANGED, ".": UNCHANGED})
    case("failed_link_eperm", failed, file_setup,
         lambda c: [err("ENOTSUP", "link", c / "f", c / "g", what="link (refused by design)", rule="link(2): ENOTSUP, as s3fs")],
         {"f": UNCHANGED, ".": UNCHANGED})
    case("failed_rename_enotempty", failed,
         lambda c: mkdir_setup(c, "a") + mkdir_setup(c, "b") + file_setup(c, "b/x"),
         lambda c: [err(("ENOTEMPTY", "EEXIST"), "rename", c / "a", c / "b", what="rename over a non-empty directory",
                        rule="rename(2) ENOTEMPTY")],
         {"a": UNCHANGED, "b": UNCHANGED, ".": UNCHANGED})
    return table


def snapshot(path) -> dict | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return {"atime": st.st_atime_ns, "mtime": st.st_mtime_ns, "ctime": st.st_ctime_ns}


def show(ns: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ns / 1e9)) + f".{ns % 1_000_000_000:09d}"


def test_timestamps_marked_by_each_call(cos_server, mount_factory, conformance):
    m = mount_factory(cos_server).path
    check = conformance
    check.base = str(m)
    root = m / "cases"
    check.table([ok("mkdir", root, 0o755, what="fixture: mkdir cases", rule="mkdir(2)")])
    table = cases(root)
    for tc in table:
        check.table(tc.setup)
    before = {}
    for tc in table:
        for key in tc.expect:
            old = key[0] if isinstance(key, tuple) else key
            before[(tc.name, key)] = snapshot(root / tc.name / old)
    before_root = snapshot(root)
    tick = next_second()
    for tc in table:
        check.table(tc.action)
    now_s = time.time()
    for tc in table:
        for key, fields in tc.expect.items():
            old, new = key if isinstance(key, tuple) else (key, key)
            label = f"{tc.name}: {new if old == new else old + ' -> ' + new}"
            was, now = before[(tc.name, key)], snapshot(root / tc.name / new)
            for field, change in fields.items():
                what = f"{label} {field} {change}"
                if now is None or (change != "new" and was is None):
                    check.that(False, what, tc.rule, f"{'before' if now else 'after'}: the entry is missing")
                    continue
                got = now[field]
                if change == "new":
                    good = tick <= seconds(got) <= now_s + 1
                    detail = f"{show(got)}, not within the action's second ({show(tick * 10**9)}) or later"
                elif change == "changed":
                    good = seconds(got) > seconds(was[field]) and seconds(got) <= now_s + 1
                    detail = f"{show(was[field])} -> {show(got)} (must move to the action's second)"
                else:
                    good = seconds(got) == seconds(was[field])
                    detail = f"{show(was[field])} -> {show(got)} (must not change)"
                check.that(good, what, tc.rule, detail)
    # the directory holding every case directory saw no entry change after the setup
    after_root = snapshot(root)
    for field in ("mtime", "ctime"):
        check.that(before_root is not None and after_root is not None
                   and seconds(after_root[field]) == seconds(before_root[field]),
                   f"cases/ {field} same", "POSIX: only the directory that holds the changed entry is marked",
                   f"{before_root} -> {after_root}")
    check.verify()


# --- utimensat(2) -------------------------------------------------------------------------------

A_TIME = (1_000_000_000, 123_456_789)  # 2001-09-09, with nanoseconds
M_TIME = (1_234_567_890, 987_654_321)  # 2009-02-13
LATER_A = (1_500_000_000, 5)
LATER_M = (1_600_000_000, 999_999_999)
LINK_A, LINK_M = (1_650_000_000, 0), (1_700_000_000, 0)  # the symlink's own, unlike its target's


def reads_back(got_ns: int, spec) -> bool:
    """The same whole second; within it, nanoseconds kept or truncated to what the filesystem
    stores (never rounded up into the next second: 1600000000.999999999 is not 1600000001).
    Up to 1 us above the value set is tolerated (a float holding the time loses the last
    digits of the nanoseconds)."""
    sec, nsec = spec
    return seconds(got_ns) == sec and got_ns - sec * 10**9 <= nsec + 1_000


def test_utimensat_reads_back(cos_server, bucket, mount_factory, conformance):
    """utimensat(2): explicit times read back; UTIME_NOW sets the current time and UTIME_OMIT
    leaves a timestamp as it was, for either of atime and mtime; every change marks ctime;
    both UTIME_OMIT changes nothing. mtime reaches the bucket (COSFS's x-cos-meta-mtime) and
    a new mount shows it."""
    m = mount_factory(cos_server).path
    check = conformance
    check.base = str(m)
    rule = "utimensat(2)/POSIX utimensat(): times[0] is atime, times[1] mtime; UTIME_NOW = now, UTIME_OMIT = unchanged"
    names = ["explicit", "now_null", "now_both", "omit_atime", "omit_mtime", "now_atime_omit_mtime",
             "omit_atime_now_mtime", "omit_both", "epoch", "future", "dir", "symlink", "fifo", "nobody_owned"]
    setup = []
    for name in names:
        path = m / name
        if name == "dir":
            setup.append(ok("mkdir", path, 0o755, what="fixture: mkdir", rule="mkdir(2)"))
        elif name == "fifo":
            setup.append(ok("mkfifo", path, 0o644, what="fixture: mkfifo", rule="mkfifo(3)"))
        elif name == "symlink":
            setup.append(ok("symlink", "explicit", path, what="fixture: symlink", rule="symlink(2)"))
        else:
            setup += file_setup(m, name)
    setup.append(ok("chown", m / "nobody_owned", NOBODY, NOBODY, what="fixture: chown to nobody", rule="chown(2)"))
    # known starting points, so that OMIT has something to keep
    for name in ("omit_atime", "omit_mtime", "now_atime_omit_mtime", "omit_atime_now_mtime", "omit_both"):
        setup.append(ok("utimensat", m / name, list(A_TIME), list(M_TIME), what=f"{name}: explicit times", rule=rule))
    check.table(setup)
    before = {name: snapshot(m / name) for name in names}
    tick = next_second()
    actions = [
        ok("utimensat", m / "explicit", list(LATER_A), list(LATER_M), what="explicit atime and mtime", rule=rule),
        ok("utimensat", m / "now_null", None, None, what="times = NULL", rule=rule),
        ok("utimensat", m / "now_both", "NOW", "NOW", what="UTIME_NOW for both", rule=rule),
        ok("utimensat", m / "omit_atime", "OMIT", list(LATER_M), what="UTIME_OMIT atime, explicit mtime", rule=rule),
        ok("utimensat", m / "omit_mtime", list(LATER_A), "OMIT", what="explicit atime, UTIME_OMIT mtime", rule=rule),
        ok("utimensat", m / "now_atime_omit_mtime", "NOW", "OMIT", what="UTIME_NOW atime, UTIME_OMIT mtime", rule=rule),
        ok("utimensat", m / "omit_atime_now_mtime", "OMIT", "NOW", what="UTIME_OMIT atime, UTIME_NOW mtime", rule=rule),
        ok("utimensat", m / "omit_both", "OMIT", "OMIT", what="UTIME_OMIT for both", rule=rule),
        ok("utimensat", m / "epoch", [0, 0], [0, 0], what="the epoch", rule=rule),
        ok("utimensat", m / "future", [4_102_444_800, 0], [4_102_444_800, 1], what="year 2100", rule=rule),
        ok("utimensat", m / "dir", list(LATER_A), list(LATER_M), what="explicit times on a directory", rule=rule),
        ok("utimensat", m / "symlink", list(LINK_A), list(LINK_M), True,
           what="explicit times on a symlink itself (AT_SYMLINK_NOFOLLOW)", rule=rule),
        ok("utimensat", m / "fifo", list(LATER_A), list(LATER_M), what="explicit times on a FIFO", rule=rule),
        ok("utimensat", m / "nobody_owned", list(LATER_A), list(LATER_M),
           what="root sets explicit times on another user's file", rule="utimensat(2): a privileged process may"),
    ]
    check.table(actions)
    now_s = time.time()
    after = {name: snapshot(m / name) for name in names}
    # (name, field): an exact [sec, nsec], "now", or "same"
    expect = {
        "explicit": {"atime": LATER_A, "mtime": LATER_M},
        "now_null": {"atime": "now", "mtime": "now"},
        "now_both": {"atime": "now", "mtime": "now"},
        "omit_atime": {"atime": A_TIME, "mtime": LATER_M},
        "omit_mtime": {"atime": LATER_A, "mtime": M_TIME},
        "now_atime_omit_mtime": {"atime": "now", "mtime": M_TIME},
        "omit_atime_now_mtime": {"atime": A_TIME, "mtime": "now"},
        "omit_both": {"atime": A_TIME, "mtime": M_TIME, "ctime": "same"},
        "epoch": {"atime": (0, 0), "mtime": (0, 0)},
        "future": {"atime": (4_102_444_800, 0), "mtime": (4_102_444_800, 1)},
        "dir": {"atime": LATER_A, "mtime": LATER_M},
        "symlink": {"atime": LINK_A, "mtime": LINK_M},
        "fifo": {"atime": LATER_A, "mtime": LATER_M},
        "nobody_owned": {"atime": LATER_A, "mtime": LATER_M},
    }
    for name, fields in expect.items():
        fields.setdefault("ctime", "now")  # every change marks ctime (POSIX utimensat())
        for field, want in fields.items():
            what = f"utimensat {name}: {field} {'is ' + str(want) if isinstance(want, tuple) else want}"
            got = after[name]
            if got is None or before[name] is None:
                check.that(False, what, rule, "the entry is missing")
                continue
            value = got[field]
            if want == "now":
                good = tick <= seconds(value) <= now_s + 1
                detail = f"{show(value)}, not the time of the call (>= {show(tick * 10**9)})"
            elif want == "same":
                good = seconds(value) == seconds(before[name][field])
                detail = f"{show(before[name][field])} -> {show(value)}"
            else:
                good = reads_back(value, want)
                detail = f"{value} ns, expected {want[0]} s + at most {want[1]} ns"
            check.that(good, what, rule + ("; ctime: POSIX utimensat() marks the file status change time"
                                           if field == "ctime" else ""), detail)
    # the symlink's own times changed, not its target's
    check.that(after["explicit"] is not None and seconds(after["explicit"]["mtime"]) != LINK_M[0],
               "utimensat with AT_SYMLINK_NOFOLLOW left the link's target alone",
               "utimensat(2) AT_SYMLINK_NOFOLLOW: the link itself is updated, not the file it refers to",
               str(after["explicit"]))
    # mtime is stored: the bucket's COSFS header, and a new mount of the same bucket
    for name, want in (("explicit", LATER_M), ("omit_mtime", M_TIME), ("epoch", (0, 0)), ("dir/", LATER_M)):
        meta = bucket.meta(name) if bucket.exists(name) else {}
        check.that(meta.get("mtime") == str(want[0]), f"utimensat {name}: x-cos-meta-mtime in the bucket",
                   "COSFS format: x-cos-meta-mtime holds the mtime in decimal seconds", f"meta {meta}")
    m2 = mount_factory(cos_server).path
    for name in ("explicit", "omit_mtime", "epoch", "future", "dir", "symlink", "fifo"):
        st = snapshot(m2 / name)
        want = expect[name]["mtime"]
        check.that(st is not None and reads_back(st["mtime"], want), f"utimensat {name}: mtime after a remount",
                   "POSIX: timestamps are attributes of the file, they persist", f"{st}")
    check.verify()
