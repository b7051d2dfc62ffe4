"""What each call does when it succeeds (as root): modes and owners it sets (umask applied,
S_ISUID/S_ISGID/S_ISVTX kept), chown's -1, lchown on the link itself, rename's replacing
and keeping the file's identity, symlink sizes and targets, O_EXCL/O_TRUNC, and that all of
it is stored in the bucket in COSFS's format and seen by a new mount.

Sources: POSIX (IEEE Std 1003.1-2017) open(), creat(), mkdir(), chmod(), chown(), lchown(),
rename(), symlink(), readlink(), unlink(), rmdir(), <sys/stat.h>; the Linux man pages
open(2), mkdir(2) (NOTES: S_ISVTX is honored), chmod(2), chown(2), rename(2), symlink(2)
and symlink(7) (link permissions are 0777 and unused), inode(7).
"""

from __future__ import annotations

import os
import stat

from tests.posix.conftest import NOBODY, err, ok

CREAT = ["O_WRONLY", "O_CREAT"]


def mode_is(kind, perm):
    return dict(value=lambda v: stat.S_IFMT(v["mode"]) == kind and stat.S_IMODE(v["mode"]) == perm,
                shows=f"{stat.filemode(kind | perm)} ({perm:04o})")


def owner_is(uid, gid):
    return dict(value=lambda v: (v["uid"], v["gid"]) == (uid, gid), shows=f"owner {uid}:{gid}")


def test_successful_calls(cos_server, bucket, mount_factory, conformance):
    m = mount_factory(cos_server).path
    check = conformance
    check.base = str(m)
    d = m / "d"
    umask = "open(2)/mkdir(2): the new mode is mode & ~umask (umask 022 here)"
    rows = [
        ok("mkdir", d, 0o755, what="fixture: mkdir d", rule="mkdir(2)"),
        # --- modes at creation -------------------------------------------------------------------
        ok("open", d / "m777", CREAT, 0o777, what="create with 0777", rule=umask),
        ok("stat", d / "m777", what="create 0777 with umask 022 gives 0755", rule=umask, **mode_is(stat.S_IFREG, 0o755)),
        ok("open", d / "m600", CREAT, 0o600, what="create with 0600", rule=umask),
        ok("stat", d / "m600", what="create 0600 gives 0600", rule=umask, **mode_is(stat.S_IFREG, 0o600)),
        ok("open", d / "m000", CREAT, 0o000, what="create with 0000", rule=umask),
        ok("stat", d / "m000", what="create 0000 gives 0000", rule=umask, **mode_is(stat.S_IFREG, 0)),
        ok("open", d / "m4755", CREAT, 0o4755, what="create with S_ISUID", rule="open(2): mode bits above 0777 apply"),
        ok("stat", d / "m4755", what="create 04755 gives a set-user-ID file", rule="open(2)",
           **mode_is(stat.S_IFREG, 0o4755)),
        ok("mkdir", d / "d777", 0o777, what="mkdir with 0777", rule=umask),
        ok("stat", d / "d777", what="mkdir 0777 with umask 022 gives 0755", rule=umask, **mode_is(stat.S_IFDIR, 0o755)),
        ok("mkdir", d / "d1777", 0o1777, what="mkdir with the sticky bit", rule="mkdir(2) NOTES: S_ISVTX is honored"),
        ok("stat", d / "d1777", what="mkdir 01777 gives a sticky 01755 directory", rule="mkdir(2) NOTES",
           **mode_is(stat.S_IFDIR, 0o1755)),
        ok("mkdir", f"{d}/slashed/", 0o755, what="mkdir with a trailing slash",
           rule="path_resolution(7): a trailing slash is allowed on a name that is (to be) a directory"),
        ok("stat", f"{d}/slashed/", what="stat with a trailing slash of a directory", rule="path_resolution(7)",
           **mode_is(stat.S_IFDIR, 0o755)),
        ok("rmdir", f"{d}/slashed/", what="rmdir with a trailing slash", rule="rmdir(2), path_resolution(7)"),
        ok("mkdir", d / "d700", 0o700, what="mkdir with 0700", rule=umask),
        ok("stat", d / "d700", what="mkdir 0700 gives 0700", rule=umask, **mode_is(stat.S_IFDIR, 0o700)),
        ok("stat", d / "m600", what="a new file belongs to the caller", rule="open(2): owner euid, group egid",
           **owner_is(0, 0)),
        ok("open", d / "x", ["O_WRONLY", "O_CREAT", "O_EXCL"], 0o644, what="O_CREAT|O_EXCL on a new name",
           rule="open(2): O_EXCL succeeds when the file does not exist"),
        # --- chmod ----------------------------------------------------------------------------------
    ]
    for perm in (0o7777, 0o4755, 0o2755, 0o1755, 0o0644, 0o0000, 0o0751):
        rows += [ok("chmod", d / "x", perm, what=f"chmod {perm:04o}", rule="chmod(2)"),
                 ok("stat", d / "x", what=f"chmod {perm:04o} reads back exactly",
                    rule="chmod(2): the S_ISUID, S_ISGID, S_ISVTX and permission bits are set as given",
                    **mode_is(stat.S_IFREG, perm))]
    for perm in (0o1777, 0o2750, 0o0500):
        rows += [ok("chmod", d / "d700", perm, what=f"chmod {perm:04o} of a directory", rule="chmod(2)"),
                 ok("stat", d / "d700", what=f"chmod {perm:04o} of a directory reads back", rule="chmod(2)",
                    **mode_is(stat.S_IFDIR, perm))]
    rows += [
        ok("symlink", "x", d / "lx", what="fixture: symlink lx -> x", rule="symlink(2)"),
        ok("chmod", d / "lx", 0o640, what="chmod through a symlink", rule="chmod(2): symlinks are followed"),
        ok("stat", d / "x", what="chmod through a symlink changed the target", rule="chmod(2)",
           **mode_is(stat.S_IFREG, 0o640)),
        ok("lstat", d / "lx", what="a symlink's own permissions stay 0777", rule="symlink(7): link permissions are 0777",
           **mode_is(stat.S_IFLNK, 0o777)),
        # --- chown ----------------------------------------------------------------------------------
        ok("chown", d / "x", 12345, 23456, what="chown to any uid and gid (root)", rule="chown(2)"),
        ok("stat", d / "x", what="chown reads back", rule="chown(2)", **owner_is(12345, 23456)),
        ok("chown", d / "x", -1, 34567, what="chown with uid -1", rule="chown(2): -1 leaves that ID unchanged"),
        ok("stat", d / "x", what="chown -1 kept the uid", rule="chown(2)", **owner_is(12345, 34567)),
        ok("chown", d / "x", 45678, -1, what="chown with gid -1", rule="chown(2)"),
        ok("stat", d / "x", what="chown -1 kept the gid", rule="chown(2)", **owner_is(45678, 34567)),
        ok("chown", d / "x", -1, -1, what="chown -1 -1", rule="chown(2)"),
        ok("stat", d / "x", what="chown -1 -1 changed nothing", rule="chown(2)", **owner_is(45678, 34567)),
        ok("stat", d / "x", what="chown kept the permission bits", rule="chown(2)", **mode_is(stat.S_IFREG, 0o640)),
        ok("chown", d / "lx", NOBODY, NOBODY, what="chown through a symlink", rule="chown(2): symlinks are followed"),
        ok("stat", d / "x", what="chown through a symlink changed the target", rule="chown(2)",
           **owner_is(NOBODY, NOBODY)),
        ok("lstat", d / "lx", what="chown through a symlink left the link's owner", rule="chown(2)", **owner_is(0, 0)),
        ok("lchown", d / "lx", 777, 888, what="lchown of a symlink", rule="lchown(2): changes the link itself"),
        ok("lstat", d / "lx", what="lchown changed the link's owner", rule="lchown(2)", **owner_is(777, 888)),
        ok("stat", d / "x", what="lchown left the target's owner", rule="lchown(2)", **owner_is(NOBODY, NOBODY)),
        ok("chown", d / "d1777", 4242, 4343, what="chown of a directory", rule="chown(2)"),
        ok("stat", d / "d1777", what="chown of a directory reads back and keeps the sticky bit", rule="chown(2)",
           value=lambda v: (v["uid"], v["gid"]) == (4242, 4343) and stat.S_IMODE(v["mode"]) == 0o1755,
           shows="owner 4242:4343, mode 1755"),
        # --- O_TRUNC, O_APPEND ----------------------------------------------------------------------
        ok("write", d / "m600", "0123456789", what="fixture: 10 bytes", rule="write(2)"),
        ok("open", d / "m600", ["O_WRONLY", "O_TRUNC"], what="O_TRUNC", rule="open(2)"),
        ok("stat", d / "m600", what="O_TRUNC empties the file", rule="open(2): O_TRUNC truncates it to length 0",
           value=lambda v: v["size"] == 0, shows="size 0"),
        ok("open", d / "m600", ["O_RDONLY", "O_TRUNC"], what="O_TRUNC with O_RDONLY is accepted",
           rule="open(2): unspecified, Linux truncates"),
        ok("write", d / "m600", "ab", what="O_APPEND write", rule="write(2)"),
        ok("write", d / "m600", "cd", what="O_APPEND write again", rule="open(2): O_APPEND writes at the end"),
        ok("read", d / "m600", what="two appends follow each other", rule="open(2) O_APPEND",
           value=lambda v: v == "abcd", shows="'abcd'"),
        # --- symlink --------------------------------------------------------------------------------
        ok("symlink", "/an/absolute/target", d / "abs", what="symlink to an absolute path", rule="symlink(2)"),
        ok("readlink", d / "abs", what="readlink returns the target as given", rule="readlink(2)",
           value=lambda v: v == "/an/absolute/target", shows="'/an/absolute/target'"),
        ok("lstat", d / "abs", what="a symlink's st_size is the length of its target",
           rule="POSIX <sys/stat.h>/lstat(): st_size of a symlink is the length of the pathname it contains",
           value=lambda v: v["size"] == len("/an/absolute/target") and stat.S_ISLNK(v["mode"]),
           shows=f"a symlink of size {len('/an/absolute/target')}"),
        ok("symlink", "../d/./x//", d / "odd", what="symlink to an unnormalized path",
           rule="symlink(2): the target is stored as given"),
        ok("readlink", d / "odd", what="readlink returns the unnormalized target unchanged", rule="readlink(2)",
           value=lambda v: v == "../d/./x//", shows="'../d/./x//'"),
        ok("symlink", "日本語 target", d / "utf8", what="symlink to a UTF-8 target", rule="symlink(2)"),
        ok("readlink", d / "utf8", what="a UTF-8 target reads back", rule="readlink(2)",
           value=lambda v: v == "日本語 target", shows="'日本語 target'"),
        ok("lstat", d / "utf8", what="st_size of a symlink counts bytes", rule="lstat(): st_size in bytes",
           value=lambda v: v["size"] == len("日本語 target".encode()), shows=f"size {len('日本語 target'.encode())}"),
        ok("stat", d / "lx", what="stat follows a symlink", rule="stat(2)", **mode_is(stat.S_IFREG, 0o640)),
        # --- rename ---------------------------------------------------------------------------------
        ok("open", d / "src", CREAT, 0o600, what="fixture: create src", rule="open(2)"),
        ok("write", d / "src", "new content", what="fixture: write src", rule="write(2)"),
        ok("chown", d / "src", 1111, 2222, what="fixture: chown src", rule="chown(2)"),
        ok("utimensat", d / "src", [1_000_000_000, 0], [1_200_000_000, 0], what="fixture: times of src",
           rule="utimensat(2)"),
        ok("open", d / "dst", CREAT, 0o644, what="fixture: create dst", rule="open(2)"),
        ok("write", d / "dst", "old content, longer", what="fixture: write dst", rule="write(2)"),
        ok("rename", d / "src", d / "dst", what="rename over an existing file",
           rule="rename(2): newpath is atomically replaced"),
        err("ENOENT", "lstat", d / "src", what="the old name is gone", rule="rename(2)"),
        ok("read", d / "dst", what="the new name has the moved file's content", rule="rename(2)",
           value=lambda v: v == "new content", shows="'new content'"),
        ok("stat", d / "dst", what="the moved file keeps mode, owner and mtime",
           rule="rename(2): the file itself is unchanged, only its name",
           value=lambda v: stat.S_IMODE(v["mode"]) == 0o600 and (v["uid"], v["gid"]) == (1111, 2222)
           and v["mtime_ns"] // 10**9 == 1_200_000_000, shows="mode 0600, owner 1111:2222, mtime 1200000000"),
        ok("rename", d / "dst", d / "dst", what="rename of a name to itself",
           rule="rename(2): if oldpath and newpath are the same file, rename does nothing and succeeds"),
        ok("read", d / "dst", what="rename to itself kept the file", rule="rename(2)",
           value=lambda v: v == "new content", shows="'new content'"),
        ok("rename", d / "lx", d / "lx2", what="rename of a symlink", rule="rename(2): a symlink is renamed, not followed"),
        ok("readlink", d / "lx2", what="a renamed symlink keeps its target", rule="rename(2)",
           value=lambda v: v == "x", shows="'x'"),
        ok("lstat", d / "x", what="renaming a symlink left its target", rule="rename(2)", **owner_is(NOBODY, NOBODY)),
        ok("mkdir", d / "tree", 0o755, what="fixture: mkdir tree", rule="mkdir(2)"),
        ok("mkdir", d / "tree" / "sub", 0o750, what="fixture: mkdir tree/sub", rule="mkdir(2)"),
        ok("open", d / "tree" / "sub" / "leaf", CREAT, 0o640, what="fixture: create tree/sub/leaf", rule="open(2)"),
        ok("write", d / "tree" / "sub" / "leaf", "leaf", what="fixture: write leaf", rule="write(2)"),
        ok("symlink", "sub/leaf", d / "tree" / "ln", what="fixture: symlink tree/ln", rule="symlink(2)"),
        ok("mkdir", d / "empty_target", 0o755, what="fixture: mkdir empty_target", rule="mkdir(2)"),
        ok("rename", d / "tree", d / "empty_target", what="rename of a directory over an empty directory",
           rule="rename(2): newpath may be an empty directory, which is replaced"),
        err("ENOENT", "lstat", d / "tree", what="the moved directory's old name is gone", rule="rename(2)"),
        ok("read", d / "empty_target" / "sub" / "leaf", what="a moved directory keeps its content", rule="rename(2)",
           value=lambda v: v == "leaf", shows="'leaf'"),
        ok("stat", d / "empty_target" / "sub", what="a moved directory's subdirectory keeps its mode", rule="rename(2)",
           **mode_is(stat.S_IFDIR, 0o750)),
        ok("stat", d / "empty_target" / "ln", what="a relative symlink in a moved directory still resolves",
           rule="rename(2)/symlink(7): the link's text is unchanged", **mode_is(stat.S_IFREG, 0o640)),
        ok("listdir", d / "empty_target", what="a moved directory lists the same names", rule="rename(2)",
           value=lambda v: v == ["ln", "sub"], shows="['ln', 'sub']"),
        # --- unlink / rmdir ---------------------------------------------------------------------------
        ok("unlink", d / "lx2", what="unlink of a symlink", rule="unlink(2): the link is removed, not the file"),
        ok("stat", d / "x", what="unlinking a symlink left its target", rule="unlink(2)", **owner_is(NOBODY, NOBODY)),
        ok("unlink", d / "x", what="unlink of a file", rule="unlink(2)"),
        err("ENOENT", "stat", d / "x", what="an unlinked file is gone", rule="unlink(2)"),
        ok("rmdir", d / "d777", what="rmdir of an empty directory", rule="rmdir(2)"),
        err("ENOENT", "stat", d / "d777", what="a removed directory is gone", rule="rmdir(2)"),
        ok("mkdir", d / "d777", 0o711, what="mkdir again on a removed name", rule="mkdir(2)"),
        ok("stat", d / "d777", what="the new directory has the new mode", rule="mkdir(2)", **mode_is(stat.S_IFDIR, 0o711)),
    ]
    check.table(rows)

    # COSFS's format in the bucket, and a new mount sees the same.
    for key, mode, uid, gid in (("d/m4755", stat.S_IFREG | 0o4755, 0, 0), ("d/d1777/", stat.S_IFDIR | 0o1755, 4242, 4343),
                                ("d/dst", stat.S_IFREG | 0o600, 1111, 2222), ("d/abs", stat.S_IFLNK | 0o777, 0, 0)):
        meta = bucket.meta(key) if bucket.exists(key) else {}
        check.that(meta.get("mode") == str(mode) and meta.get("uid") == str(uid) and meta.get("gid") == str(gid),
                   f"{key}: x-cos-meta-mode/uid/gid hold mode {mode:o} and owner {uid}:{gid}",
                   "COSFS format: st_mode, uid and gid in decimal", f"meta {meta}")
    check.that(bucket.exists("d/abs") and bucket.get("d/abs") == b"/an/absolute/target",
               "a symlink's object body is its target", "COSFS format", "")
    m2 = mount_factory(cos_server).path
    for name, mode, uid, gid in (("m4755", stat.S_IFREG | 0o4755, 0, 0), ("d1777", stat.S_IFDIR | 0o1755, 4242, 4343),
                                 ("dst", stat.S_IFREG | 0o600, 1111, 2222), ("m000", stat.S_IFREG, 0, 0)):
        try:
            st = os.lstat(m2 / "d" / name)
            got = (st.st_mode, st.st_uid, st.st_gid)
        except OSError as exc:
            got = exc.strerror
        check.that(got == (mode, uid, gid), f"a new mount shows d/{name} with mode {mode:o} and owner {uid}:{gid}",
                   "stat(2): mode and owner are attributes of the file", f"got {got}")
    check.verify()
