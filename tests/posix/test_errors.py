"""Every errno the calls document that can happen on this filesystem, as root, one table per
errno family: ENOENT, ENOTDIR, EEXIST, EISDIR, ENOTEMPTY, EINVAL, ENAMETOOLONG, ELOOP, EPERM
(link), EFBIG/EINVAL (truncate sizes), EBADF.

Sources: POSIX (IEEE Std 1003.1-2017) open(), mkdir(), rmdir(), unlink(), rename(),
symlink(), link(), chmod(), chown(), truncate(), ftruncate(), utimensat(); the Linux man pages
open(2), mkdir(2), rmdir(2), unlink(2), rename(2), symlink(2), link(2), chmod(2), chown(2),
truncate(2), utimensat(2), stat(2), path_resolution(7). Where POSIX and Linux allow two
errnos for one case (rmdir of a non-empty directory: ENOTEMPTY or EEXIST), both are accepted.
"""

from __future__ import annotations

import stat

from tests.posix.conftest import err, ok

MAX_OBJECT_BYTES = 10_000 * 5 * 1024**3  # COS: at most 10,000 parts of 5 GiB = 48.8 TiB
RDONLY, WRONLY, RDWR, CREAT, EXCL = ["O_RDONLY"], ["O_WRONLY"], ["O_RDWR"], ["O_WRONLY", "O_CREAT"], \
    ["O_WRONLY", "O_CREAT", "O_EXCL"]


def build_tree(check, bucket, m, *, chain: bool = False):
    """The fixtures every table uses, made through the mount (and a few keys through the SDK,
    as another COS client would write them); `chain` adds 41 symlinks in a row."""
    d = m / "d"
    bucket.put("implicit/child", b"only an implicit directory holds me")
    bucket.put("marker_only/", b"", ContentType="application/x-directory")
    bucket.put("marker_only/sub/", b"", ContentType="application/x-directory")
    bucket.put("remote_file", b"written by another client")
    bucket.put("remote_dir/", b"", ContentType="application/x-directory")
    rows = [
        ok("mkdir", d, 0o755, what="fixture: mkdir d", rule="mkdir(2)"),
        ok("open", d / "f", CREAT, 0o644, what="fixture: create d/f", rule="open(2)"),
        ok("write", d / "f", "data", what="fixture: write d/f", rule="write(2)"),
        ok("mkdir", d / "sub", 0o755, what="fixture: mkdir d/sub", rule="mkdir(2)"),
        ok("open", d / "sub" / "inner", CREAT, 0o644, what="fixture: create d/sub/inner", rule="open(2)"),
        ok("mkdir", d / "empty", 0o755, what="fixture: mkdir d/empty", rule="mkdir(2)"),
        ok("mkdir", d / "full", 0o755, what="fixture: mkdir d/full", rule="mkdir(2)"),
        ok("open", d / "full" / "x", CREAT, 0o644, what="fixture: create d/full/x", rule="open(2)"),
        ok("symlink", "f", d / "link_f", what="fixture: symlink d/link_f -> f", rule="symlink(2)"),
        ok("symlink", "sub", d / "link_dir", what="fixture: symlink d/link_dir -> sub", rule="symlink(2)"),
        ok("symlink", "nowhere", d / "dangling", what="fixture: dangling symlink", rule="symlink(2)"),
        ok("symlink", "made_by_open", d / "dangling_create", what="fixture: dangling symlink", rule="symlink(2)"),
        ok("symlink", "loop_b", d / "loop_a", what="fixture: symlink loop a -> b", rule="symlink(2)"),
        ok("symlink", "loop_a", d / "loop_b", what="fixture: symlink loop b -> a", rule="symlink(2)"),
        ok("symlink", "self", d / "self", what="fixture: symlink to itself", rule="symlink(2)"),
    ]
    if chain:  # c0 -> c1 -> ... -> c40 -> end: resolving c0 follows 41 links, c1 follows 40.
        rows += [ok("mkdir", d / "chain", 0o755, what="fixture: mkdir d/chain", rule="mkdir(2)"),
                 ok("open", d / "chain" / "end", CREAT, 0o644, what="fixture: create d/chain/end", rule="open(2)")]
        rows += [ok("symlink", f"c{i + 1}" if i < 40 else "end", d / "chain" / f"c{i}",
                    what=f"fixture: symlink chain c{i}", rule="symlink(2)") for i in range(41)]
    check.table(rows)
    return d


def test_enoent_enotdir_eexist(cos_server, bucket, mount_factory, conformance):
    m = mount_factory(cos_server).path
    check = conformance
    check.base = str(m)
    d = build_tree(check, bucket, m)
    f, sub, nodir = d / "f", d / "sub", d / "nodir"
    pr = "path_resolution(7)"
    rows = [
        # --- ENOENT: a component of the path, or the file itself, does not exist -----------
        err("ENOENT", "open", d / "missing", RDONLY, what="open of a missing file without O_CREAT",
            rule="open(2) ENOENT: O_CREAT is not set and the named file does not exist"),
        err("ENOENT", "open", nodir / "x", CREAT, what="create under a missing directory",
            rule="open(2) ENOENT: a directory component in pathname does not exist"),
        err("ENOENT", "open", d / "dangling", RDONLY, what="open through a dangling symlink",
            rule="open(2) ENOENT: pathname is a dangling symbolic link"),
        err("ENOENT", "stat", "", what="the empty pathname", rule=f"{pr}: empty pathname gives ENOENT"),
        err("ENOENT", "stat", d / "missing", what="stat of a missing file", rule="stat(2) ENOENT"),
        err("ENOENT", "lstat", nodir / "x", what="lstat under a missing directory", rule="stat(2) ENOENT"),
        err("ENOENT", "stat", d / "dangling", what="stat follows a dangling symlink",
            rule="stat(2) ENOENT: a component of pathname does not exist or is a dangling symlink"),
        err("ENOENT", "mkdir", nodir / "x", 0o755, what="mkdir under a missing directory",
            rule="mkdir(2) ENOENT: a directory component in pathname does not exist"),
        err("ENOENT", "rmdir", d / "missing", what="rmdir of a missing directory", rule="rmdir(2) ENOENT"),
        err("ENOENT", "unlink", d / "missing", what="unlink of a missing file", rule="unlink(2) ENOENT"),
        err("ENOENT", "unlink", nodir / "x", what="unlink under a missing directory", rule="unlink(2) ENOENT"),
        err("ENOENT", "rename", d / "missing", d / "x", what="rename of a missing file",
            rule="rename(2) ENOENT: the link named by oldpath does not exist"),
        err("ENOENT", "rename", f, nodir / "x", what="rename into a missing directory",
            rule="rename(2) ENOENT: a directory component in newpath does not exist"),
        err("ENOENT", "symlink", "t", nodir / "l", what="symlink under a missing directory",
            rule="symlink(2) ENOENT: a directory component in linkpath does not exist"),
        err("ENOENT", "readlink", d / "missing", what="readlink of a missing name", rule="readlink(2) ENOENT"),
        err("ENOENT", "chmod", d / "missing", 0o600, what="chmod of a missing file", rule="chmod(2) ENOENT"),
        err("ENOENT", "chmod", d / "dangling", 0o600, what="chmod follows a dangling symlink",
            rule="chmod(2) ENOENT: the file does not exist"),
        err("ENOENT", "chown", d / "missing", 0, 0, what="chown of a missing file", rule="chown(2) ENOENT"),
        err("ENOENT", "truncate", d / "missing", 0, what="truncate of a missing file", rule="truncate(2) ENOENT"),
        err("ENOENT", "truncate", d / "dangling", 0, what="truncate follows a dangling symlink",
            rule="truncate(2) ENOENT: the named file does not exist"),
        err("ENOENT", "utimensat", d / "missing", None, None, what="utimensat of a missing file",
            rule="utimensat(2) ENOENT"),
        err("ENOENT", "link", d / "missing", d / "x", what="link of a missing file",
            rule="link(2) ENOENT: oldpath does not exist"),
        err("ENOENT", "mkfifo", nodir / "p", 0o644, what="mkfifo under a missing directory",
            rule="mkfifo(3)/mknod(2) ENOENT"),
        err("ENOENT", "mknod", nodir / "n", stat.S_IFREG | 0o644, what="mknod under a missing directory",
            rule="mknod(2) ENOENT"),
        err("ENOENT", "listdir", d / "missing", what="opendir of a missing directory", rule="opendir(3) ENOENT"),
        # O_CREAT through a dangling symlink creates the file it points to.
        ok("open", d / "dangling_create", CREAT, 0o644, what="O_CREAT through a dangling symlink creates its target",
           rule="open(2) O_CREAT: if pathname is a dangling symlink the target is created (no O_EXCL)"),
        ok("lstat", d / "made_by_open", what="O_CREAT through a dangling symlink created the target",
           rule="open(2) O_CREAT through a dangling symlink", value=lambda v: stat.S_ISREG(v["mode"]),
           shows="a regular file"),
        ok("lstat", d / "dangling_create", what="O_CREAT through a symlink leaves the symlink a symlink",
           rule="open(2) O_CREAT follows the link", value=lambda v: stat.S_ISLNK(v["mode"]), shows="a symlink"),
        # --- ENOTDIR: a component used as a directory is not one -----------------------------
        err("ENOTDIR", "open", f / "x", RDONLY, what="open below a regular file",
            rule="open(2) ENOTDIR: a component used as a directory in pathname is not a directory"),
        err("ENOTDIR", "open", f / "x", CREAT, what="create below a regular file", rule="open(2) ENOTDIR"),
        err("ENOTDIR", "open", str(f) + "/", RDONLY, what="trailing slash on a regular file",
            rule=f"{pr}: a pathname with a trailing slash must name a directory"),
        err("ENOTDIR", "open", f, ["O_RDONLY", "O_DIRECTORY"], what="O_DIRECTORY on a regular file",
            rule="open(2) ENOTDIR: O_DIRECTORY was specified and pathname was not a directory"),
        err("ENOTDIR", "stat", f / "x", what="stat below a regular file", rule="stat(2) ENOTDIR"),
        err("ENOTDIR", "mkdir", f / "x", 0o755, what="mkdir below a regular file", rule="mkdir(2) ENOTDIR"),
        err("ENOTDIR", "rmdir", f, what="rmdir of a regular file",
            rule="rmdir(2) ENOTDIR: pathname is not, in fact, a directory"),
        err("ENOTDIR", "rmdir", d / "link_dir", what="rmdir of a symlink to a directory",
            rule="rmdir(2) ENOTDIR: the last component (a symlink) is not followed"),
        err("ENOTDIR", "unlink", f / "x", what="unlink below a regular file", rule="unlink(2) ENOTDIR"),
        err("ENOTDIR", "rename", f / "x", d / "y", what="rename from below a regular file",
            rule="rename(2) ENOTDIR: a component used as a directory in oldpath is not a directory"),
        err("ENOTDIR", "rename", sub, f, what="rename of a directory over a regular file",
            rule="rename(2) ENOTDIR: oldpath is a directory and newpath exists but is not a directory"),
        err("ENOTDIR", "symlink", "t", f / "l", what="symlink below a regular file", rule="symlink(2) ENOTDIR"),
        err("ENOTDIR", "chmod", f / "x", 0o600, what="chmod below a regular file", rule="chmod(2) ENOTDIR"),
        err("ENOTDIR", "chown", f / "x", 0, 0, what="chown below a regular file", rule="chown(2) ENOTDIR"),
        err("ENOTDIR", "truncate", f / "x", 0, what="truncate below a regular file", rule="truncate(2) ENOTDIR"),
        err("ENOTDIR", "utimensat", f / "x", None, None, what="utimensat below a regular file",
            rule="utimensat(2) ENOTDIR"),
        err("ENOTDIR", "mkfifo", f / "p", 0o644, what="mkfifo below a regular file", rule="mknod(2) ENOTDIR"),
        err("ENOTDIR", "listdir", f, what="opendir of a regular file", rule="opendir(3) ENOTDIR"),
        # --- EEXIST: the name is taken, whatever it is --------------------------------------
        err("EEXIST", "mkdir", f, 0o755, what="mkdir over a regular file", rule="mkdir(2) EEXIST: pathname already exists"),
        err("EEXIST", "mkdir", sub, 0o755, what="mkdir over a directory", rule="mkdir(2) EEXIST"),
        err("EEXIST", "mkdir", d / "link_f", 0o755, what="mkdir over a symlink",
            rule="mkdir(2) EEXIST: pathname exists (not necessarily as a directory), symlinks included"),
        err("EEXIST", "mkdir", d / "dangling", 0o755, what="mkdir over a dangling symlink",
            rule="mkdir(2) EEXIST: this includes the case where pathname is a symbolic link, dangling or not"),
        err("EEXIST", "mkdir", m / "remote_file", 0o755, what="mkdir over an object another client wrote",
            rule="mkdir(2) EEXIST"),
        err("EEXIST", "mkdir", m / "remote_dir", 0o755, what="mkdir over a directory marker another client wrote",
            rule="mkdir(2) EEXIST"),
        err("EEXIST", "mkdir", m / "implicit", 0o755, what="mkdir over an implicit directory (keys below it)",
            rule="mkdir(2) EEXIST"),
        err("EEXIST", "open", f, EXCL, what="O_CREAT|O_EXCL on a regular file",
            rule="open(2) EEXIST: pathname already exists and O_CREAT and O_EXCL were used"),
        err("EEXIST", "open", sub, EXCL, what="O_CREAT|O_EXCL on a directory", rule="open(2) EEXIST"),
        err("EEXIST", "open", d / "dangling", EXCL, what="O_CREAT|O_EXCL on a dangling symlink",
            rule="open(2) O_EXCL: symbolic links are not followed; EEXIST whatever the link points to"),
        err("EEXIST", "open", d / "link_f", EXCL, what="O_CREAT|O_EXCL on a symlink to a file", rule="open(2) EEXIST"),
        err("EEXIST", "open", m / "remote_file", EXCL, what="O_CREAT|O_EXCL on an object another client wrote",
            rule="open(2) EEXIST"),
        err("EEXIST", "symlink", "t", f, what="symlink over a regular file",
            rule="symlink(2) EEXIST: linkpath already exists"),
        err("EEXIST", "symlink", "t", sub, what="symlink over a directory", rule="symlink(2) EEXIST"),
        err("EEXIST", "symlink", "t", d / "dangling", what="symlink over a dangling symlink", rule="symlink(2) EEXIST"),
        err("EEXIST", "mkfifo", f, 0o644, what="mkfifo over a regular file", rule="mknod(2) EEXIST"),
        err("EEXIST", "mknod", sub, stat.S_IFREG | 0o644, what="mknod over a directory", rule="mknod(2) EEXIST"),
        err("EEXIST", "link", f, d / "link_f", what="link over an existing name",
            rule="link(2) EEXIST: newpath already exists"),
        # --- the names stayed what they were -------------------------------------------------
        ok("lstat", f, what="failed calls left the file alone", rule="POSIX: a failed call has no effect",
           value=lambda v: stat.S_ISREG(v["mode"]) and v["size"] == 4, shows="a regular file of 4 bytes"),
        ok("lstat", d / "dangling", what="failed calls left the dangling symlink alone",
           rule="POSIX: a failed call has no effect", value=lambda v: stat.S_ISLNK(v["mode"]), shows="a symlink"),
        ok("readlink", d / "dangling", what="failed calls left the symlink's target alone",
           rule="POSIX: a failed call has no effect", value=lambda v: v == "nowhere", shows="'nowhere'"),
        ok("read", m / "remote_file", what="failed calls left another client's object alone",
           rule="POSIX: a failed call has no effect", value=lambda v: v == "written by another client",
           shows="its content"),
    ]
    check.table(rows)
    check.verify()


def test_eisdir_enotempty_einval(cos_server, bucket, mount_factory, conformance):
    m = mount_factory(cos_server).path
    check = conformance
    check.base = str(m)
    d = build_tree(check, bucket, m)
    f, sub = d / "f", d / "sub"
    # (paths ending in "." or ".." are strings: pathlib would drop a trailing ".")
    rows = [
        # --- EISDIR ----------------------------------------------------------------------------
        err("EISDIR", "open", sub, WRONLY, what="open of a directory for writing",
            rule="open(2) EISDIR: pathname refers to a directory and the access requested involved writing"),
        err("EISDIR", "open", sub, RDWR, what="open of a directory for reading and writing", rule="open(2) EISDIR"),
        err("EISDIR", "open", sub, CREAT, what="O_CREAT|O_WRONLY on an existing directory", rule="open(2) EISDIR"),
        err("EISDIR", "open", d / "link_dir", WRONLY, what="open for writing through a symlink to a directory",
            rule="open(2) EISDIR"),
        err("EISDIR", "rename", f, d / "empty", what="rename of a file over a directory",
            rule="rename(2) EISDIR: newpath is an existing directory, but oldpath is not a directory"),
        err(("EISDIR", "EPERM"), "unlink", sub, what="unlink of a directory",
            rule="unlink(2) EISDIR (Linux; POSIX: EPERM): pathname refers to a directory"),
        err("EISDIR", "truncate", sub, 0, what="truncate of a directory",
            rule="truncate(2) EISDIR: the named file is a directory"),
        # --- ENOTEMPTY ---------------------------------------------------------------------------
        err(("ENOTEMPTY", "EEXIST"), "rmdir", d / "full", what="rmdir of a directory holding a file",
            rule="rmdir(2) ENOTEMPTY: pathname contains entries other than . and .."),
        err(("ENOTEMPTY", "EEXIST"), "rmdir", m / "implicit", what="rmdir of an implicit directory (keys below it)",
            rule="rmdir(2) ENOTEMPTY"),
        err(("ENOTEMPTY", "EEXIST"), "rmdir", m / "marker_only", what="rmdir of a directory holding only a subdirectory",
            rule="rmdir(2) ENOTEMPTY"),
        err(("ENOTEMPTY", "EEXIST"), "rmdir", f"{sub}/..", what="rmdir of a path ending in ..",
            rule="rmdir(2) ENOTEMPTY: pathname has .. as its final component"),
        err(("ENOTEMPTY", "EEXIST"), "rename", d / "empty", d / "full", what="rename of a directory over a non-empty one",
            rule="rename(2) ENOTEMPTY or EEXIST: newpath is a nonempty directory"),
        err(("ENOTEMPTY", "EEXIST"), "rename", d / "empty", m / "implicit",
            what="rename of a directory over an implicit (non-empty) one", rule="rename(2) ENOTEMPTY"),
        # --- EINVAL --------------------------------------------------------------------------------
        err("EINVAL", "rename", sub, sub / "new", what="rename of a directory into itself",
            rule="rename(2) EINVAL: an attempt was made to make a directory a subdirectory of itself"),
        err("EINVAL", "rename", d, sub / "deeper", what="rename of a directory into its own subdirectory",
            rule="rename(2) EINVAL: newpath contains a path prefix of oldpath"),
        err("EINVAL", "rmdir", f"{sub}/.", what="rmdir of a path ending in .",
            rule="rmdir(2) EINVAL: pathname has . as last component"),
        err(("EINVAL", "EBUSY"), "rename", f"{sub}/.", d / "x", what="rename of a path ending in .",
            rule="rename(2) EINVAL/EBUSY: the last component of oldpath is . or .."),
        err("EINVAL", "truncate", f, -1, what="truncate to a negative length",
            rule="truncate(2) EINVAL: the argument length is negative"),
        err("EINVAL", "ftruncate", f, WRONLY, -1, what="ftruncate to a negative length",
            rule="ftruncate(2) EINVAL: length is negative"),
        err("EINVAL", "utimensat", f, [0, 1_000_000_000], [0, 0], what="utimensat with tv_nsec out of range",
            rule="utimensat(2) EINVAL: invalid value in one of the tv_nsec fields"),
        # --- EXDEV: names on another filesystem ---------------------------------------------
        err("EXDEV", "rename", f, m.parent / "outside_the_mount", what="rename to another filesystem",
            rule="rename(2) EXDEV: oldpath and newpath are not on the same mounted filesystem"),
        err("EXDEV", "link", f, m.parent / "outside_the_mount", what="link to another filesystem",
            rule="link(2) EXDEV: oldpath and newpath are not on the same mounted filesystem"),
        # --- the refused calls changed nothing -----------------------------------------------
        ok("listdir", d / "full", what="failed calls left d/full's content", rule="POSIX: a failed call has no effect",
           value=lambda v: v == ["x"], shows="['x']"),
        ok("listdir", sub, what="failed calls left d/sub's content", rule="POSIX: a failed call has no effect",
           value=lambda v: v == ["inner"], shows="['inner']"),
        ok("stat", d / "empty", what="failed calls left d/empty a directory", rule="POSIX: a failed call has no effect",
           value=lambda v: stat.S_ISDIR(v["mode"]), shows="a directory"),
        ok("read", f, what="failed calls left d/f's content", rule="POSIX: a failed call has no effect",
           value=lambda v: v == "data", shows="'data'"),
        ok("stat", m / "implicit" / "child", what="failed calls left the implicit directory's child",
           rule="POSIX: a failed call has no effect", value=lambda v: v["size"] == len(b"only an implicit directory holds me"),
           shows="the child's size"),
    ]
    check.table(rows)
    check.verify()


def test_enametoolong(cos_server, bucket, mount_factory, conformance):
    """NAME_MAX is FUSE's 1,024 bytes per component (statvfs f_namemax; counted in bytes, not
    characters), as in s3fs, so that every key COS stores can be a name; a name whose key
    COS cannot store (over 850 bytes) is refused with ENAMETOOLONG, never taken and failed at
    upload; PATH_MAX (4096 bytes with the NUL) is the kernel's."""
    m = mount_factory(cos_server).path
    check = conformance
    check.base = str(m)
    d = m / "d"
    check.table([ok("mkdir", d, 0o755, what="fixture: mkdir d", rule="mkdir(2)"),
                 ok("open", d / "f", CREAT, 0o644, what="fixture: create d/f", rule="open(2)")])
    n255, n300 = "n" * 255, "n" * 300
    wide300 = "日" * 100  # 3 bytes each: 300 bytes
    n1025 = "n" * 1025  # over FUSE's NAME_MAX: the kernel refuses it before cosfs sees it
    nkey = "k" * 849  # d/ + 849 = 851 bytes: a key COS cannot store
    long_path = d / ("x/" * 2100)  # 4200 bytes > PATH_MAX
    kernel = "open(2)/mkdir(2)/... ENAMETOOLONG: a component is longer than NAME_MAX (FUSE: 1024 bytes)"
    cos = "ENAMETOOLONG: the component makes a key longer than COS's 850 bytes"
    rows = [
        # up to NAME_MAX works, for every kind of entry
        ok("open", d / n255, CREAT, 0o644, what="create with a 255-byte name", rule="NAME_MAX"),
        ok("unlink", d / n255, what="unlink of a 255-byte name", rule="unlink(2), NAME_MAX"),
        ok("open", d / n300, CREAT, 0o644, what="create with a 300-byte name", rule="NAME_MAX 1024 (FUSE, s3fs)"),
        ok("stat", d / n300, what="stat of a 300-byte name", rule="NAME_MAX", value=lambda v: stat.S_ISREG(v["mode"]),
           shows="a regular file"),
        ok("rename", d / n300, d / ("m" * 300), what="rename to a 300-byte name", rule="rename(2), NAME_MAX"),
        ok("unlink", d / ("m" * 300), what="unlink of a 300-byte name", rule="unlink(2), NAME_MAX"),
        ok("mkdir", d / n300, 0o755, what="mkdir with a 300-byte name", rule="mkdir(2), NAME_MAX"),
        ok("rmdir", d / n300, what="rmdir of a 300-byte name", rule="rmdir(2), NAME_MAX"),
        ok("symlink", "f", d / n300, what="symlink with a 300-byte name", rule="symlink(2), NAME_MAX"),
        ok("readlink", d / n300, what="readlink of a 300-byte name", rule="readlink(2)", value=lambda v: v == "f",
           shows="'f'"),
        ok("unlink", d / n300, what="unlink of a 300-byte symlink name", rule="unlink(2)"),
        ok("open", d / wide300, CREAT, 0o644, what="create with 100 three-byte characters (300 bytes)",
           rule="NAME_MAX counts bytes"),
        ok("unlink", d / wide300, what="unlink of a 300-byte multibyte name", rule="unlink(2)"),
        ok("symlink", "t" * 1000, d / "long_target", what="symlink with a 1000-byte target",
           rule="symlink(2): the target may be any string up to PATH_MAX"),
        ok("readlink", d / "long_target", what="readlink returns the 1000-byte target whole", rule="readlink(2)",
           value=lambda v: v == "t" * 1000, shows="the 1000-byte target"),
        # a name past NAME_MAX is refused by every call that takes it (the kernel)
        err("ENAMETOOLONG", "open", d / n1025, CREAT, 0o644, what="create with a 1025-byte name", rule=kernel),
        err("ENAMETOOLONG", "mkdir", d / n1025, 0o755, what="mkdir with a 1025-byte name", rule=kernel),
        err("ENAMETOOLONG", "symlink", "f", d / n1025, what="symlink with a 1025-byte name", rule=kernel),
        err("ENAMETOOLONG", "rename", d / "f", d / n1025, what="rename to a 1025-byte name", rule=kernel),
        err("ENAMETOOLONG", "link", d / "f", d / n1025, what="link to a 1025-byte name", rule=kernel),
        err("ENAMETOOLONG", "stat", d / n1025, what="stat of a 1025-byte name", rule=kernel),
        err("ENAMETOOLONG", "unlink", d / n1025, what="unlink of a 1025-byte name", rule=kernel),
        # a name within NAME_MAX whose key COS cannot store: refused the same way, by cosfs
        err("ENAMETOOLONG", "open", d / nkey, CREAT, 0o644, what="create of a name whose key is 851 bytes", rule=cos),
        err("ENAMETOOLONG", "mkdir", d / nkey, 0o755, what="mkdir of such a name", rule=cos),
        err("ENAMETOOLONG", "symlink", "f", d / nkey, what="symlink of such a name", rule=cos),
        err("ENAMETOOLONG", "rename", d / "f", d / nkey, what="rename to such a name", rule=cos),
        err("ENAMETOOLONG", "mkfifo", d / nkey, 0o644, what="mkfifo of such a name", rule=cos),
        err("ENAMETOOLONG", "stat", d / nkey, what="stat of such a name", rule=cos),
        err("ENAMETOOLONG", "open", d / nkey, RDONLY, what="open of such a name", rule=cos),
        err("ENAMETOOLONG", "chmod", d / nkey, 0o600, what="chmod of such a name", rule=cos),
        err("ENAMETOOLONG", "truncate", d / nkey, 0, what="truncate of such a name", rule=cos),
        # PATH_MAX: checked by the kernel before the filesystem sees the path
        err("ENAMETOOLONG", "stat", long_path, what="stat of a path longer than PATH_MAX",
            rule="stat(2) ENAMETOOLONG: pathname is too long (PATH_MAX)"),
        err("ENAMETOOLONG", "open", long_path, CREAT, 0o644, what="create with a path longer than PATH_MAX",
            rule="open(2) ENAMETOOLONG"),
        err("ENAMETOOLONG", "mkdir", long_path, 0o755, what="mkdir with a path longer than PATH_MAX",
            rule="mkdir(2) ENAMETOOLONG"),
        err("ENAMETOOLONG", "symlink", "x" * 4200, d / "too_long_target", what="symlink with a target over PATH_MAX",
            rule="symlink(2) ENAMETOOLONG: target or linkpath was too long"),
        # the refused names left nothing behind
        ok("listdir", d, what="refused names created nothing", rule="POSIX: a failed call has no effect",
           value=lambda v: v == ["f", "long_target"], shows="['f', 'long_target']"),
    ]
    # A path under PATH_MAX of components under NAME_MAX may still make a key over COS's
    # 850-byte limit: refusing it is ENAMETOOLONG (too long for this filesystem), never EIO.
    deep = d / n255 / ("o" * 255) / ("p" * 255) / ("q" * 255)
    rows += [
        ok("mkdir", d / n255, 0o755, what="fixture: mkdir of a 255-byte name", rule="mkdir(2)"),
        ok("mkdir", d / n255 / ("o" * 255), 0o755, what="fixture: 2 levels of 255 bytes", rule="mkdir(2)"),
        ok("mkdir", d / n255 / ("o" * 255) / ("p" * 255), 0o755, what="fixture: 3 levels of 255 bytes",
           rule="mkdir(2)"),
        err("ENAMETOOLONG", "open", deep, CREAT, 0o644,
            what="a path of 1000+ bytes (over COS's key limit, under PATH_MAX) is refused with ENAMETOOLONG, "
                 "never EIO", rule="open(2) ENAMETOOLONG: " + cos),
        err("ENAMETOOLONG", "mkdir", str(deep) + "_dir", 0o755,
            what="a directory path of 1000+ bytes is refused with ENAMETOOLONG, never EIO",
            rule="mkdir(2) ENAMETOOLONG"),
    ]
    check.table(rows)
    check.verify()


def test_eloop(cos_server, bucket, mount_factory, conformance):
    m = mount_factory(cos_server).path
    check = conformance
    check.base = str(m)
    d = build_tree(check, bucket, m, chain=True)
    loop, self_link, chain = d / "loop_a", d / "self", d / "chain"
    rule = "path_resolution(7)/symlink(7): too many symbolic links (a loop, or more than 40) gives ELOOP"
    rows = [
        err("ELOOP", "stat", loop, what="stat of a two-link loop", rule="stat(2) ELOOP: " + rule),
        err("ELOOP", "stat", self_link, what="stat of a link to itself", rule="stat(2) ELOOP"),
        err("ELOOP", "open", loop, RDONLY, what="open of a loop", rule="open(2) ELOOP"),
        err("ELOOP", "open", loop, CREAT, 0o644, what="O_CREAT through a loop", rule="open(2) ELOOP"),
        err("ELOOP", "open", loop / "x", RDONLY, what="a loop as a directory component", rule="open(2) ELOOP"),
        err("ELOOP", "open", d / "link_f", ["O_RDONLY", "O_NOFOLLOW"], what="O_NOFOLLOW on a symlink",
            rule="open(2) ELOOP: O_NOFOLLOW was specified and pathname was a symbolic link"),
        err("ELOOP", "mkdir", loop / "x", 0o755, what="mkdir below a loop", rule="mkdir(2) ELOOP"),
        err("ELOOP", "rmdir", loop / "x", what="rmdir below a loop", rule="rmdir(2) ELOOP"),
        err("ELOOP", "unlink", loop / "x", what="unlink below a loop", rule="unlink(2) ELOOP"),
        err("ELOOP", "rename", loop / "x", d / "y", what="rename from below a loop", rule="rename(2) ELOOP"),
        err("ELOOP", "rename", d / "f", loop / "y", what="rename to below a loop", rule="rename(2) ELOOP"),
        err("ELOOP", "symlink", "t", loop / "l", what="symlink below a loop", rule="symlink(2) ELOOP"),
        err("ELOOP", "chmod", loop, 0o600, what="chmod of a loop", rule="chmod(2) ELOOP"),
        err("ELOOP", "chown", loop, 0, 0, what="chown of a loop", rule="chown(2) ELOOP"),
        err("ELOOP", "truncate", loop, 0, what="truncate of a loop", rule="truncate(2) ELOOP"),
        err("ELOOP", "utimensat", loop, None, None, what="utimensat of a loop", rule="utimensat(2) ELOOP"),
        err("ELOOP", "link", loop / "x", d / "y", what="link from below a loop", rule="link(2) ELOOP"),
        err("ELOOP", "stat", chain / "c0", what="41 symlinks in a row", rule="path_resolution(7): at most 40 links"),
        ok("stat", chain / "c1", what="40 symlinks in a row resolve", rule="path_resolution(7): 40 links are allowed",
           value=lambda v: stat.S_ISREG(v["mode"]), shows="the regular file at the end"),
        # the link itself is an ordinary entry: lstat, readlink, rename and unlink work on it
        ok("lstat", loop, what="lstat of a looping link", rule="stat(2): lstat does not follow the last link",
           value=lambda v: stat.S_ISLNK(v["mode"]) and v["size"] == len("loop_b"), shows="a symlink of size 6"),
        ok("readlink", self_link, what="readlink of a self-link", rule="readlink(2)", value=lambda v: v == "self",
           shows="'self'"),
        ok("rename", d / "loop_b", d / "loop_b2", what="rename of a looping link", rule="rename(2) does not follow links"),
        ok("unlink", self_link, what="unlink of a self-link", rule="unlink(2): a symlink is removed, not its target"),
        err("ENOENT", "lstat", self_link, what="the unlinked link is gone", rule="unlink(2)"),
    ]
    check.table(rows)
    check.verify()


def test_link_is_refused_with_enotsup(cos_server, bucket, mount_factory, conformance):
    """Hard links cannot be stored in COS: link(2) answers ENOTSUP, as COSFS and s3fs do
    (their link handler returns -ENOTSUP), and creates nothing; the kernel itself refuses a
    directory with EPERM before asking the filesystem."""
    m = mount_factory(cos_server).path
    check = conformance
    check.base = str(m)
    d = m / "d"
    rule = "link(2) of a filesystem without hard links: ENOTSUP, as s3fs and COSFS answer"
    check.table([
        ok("mkdir", d, 0o755, what="fixture: mkdir d", rule="mkdir(2)"),
        ok("open", d / "f", CREAT, 0o644, what="fixture: create d/f", rule="open(2)"),
        ok("mkdir", d / "sub", 0o755, what="fixture: mkdir d/sub", rule="mkdir(2)"),
        ok("symlink", "f", d / "l", what="fixture: symlink d/l", rule="symlink(2)"),
        err("ENOTSUP", "link", d / "f", d / "f2", what="link of a regular file", rule=rule),
        err("ENOTSUP", "link", d / "f", d / "sub" / "f2", what="link into another directory", rule=rule),
        err("ENOTSUP", "link", d / "l", d / "l2", what="link of a symlink", rule=rule),
        err("EPERM", "link", d / "sub", d / "sub2", what="link of a directory",
            rule="link(2) EPERM: oldpath is a directory"),
        err("ENOENT", "lstat", d / "f2", what="a refused link created nothing", rule="POSIX: a failed call has no effect"),
        err("ENOENT", "lstat", d / "sub" / "f2", what="a refused link created nothing",
            rule="POSIX: a failed call has no effect"),
        ok("stat", d / "f", what="a refused link left the file's link count at 1", rule="stat(2) st_nlink",
           value=lambda v: v["nlink"] == 1, shows="st_nlink 1"),
    ])
    check.verify()


def test_truncate_sizes_efbig_einval_ebadf(cos_server, bucket, mount_factory, conformance, expect_log):
    """truncate/ftruncate: negative lengths are EINVAL; lengths past the largest object COS
    can store (10,000 parts x 5 GiB = 48.8 TiB) are EFBIG (or EINVAL); descriptors not open
    for writing are EBADF/EINVAL; growing fills with zeros and shrinking drops the tail."""
    # BUG: each refused over-size truncate is logged at WARNING (an ordinary errno for the
    # application, it should be DEBUG like the other refusals).
    expect_log(r"^WARNING cosfs\.fuse_ops: setattr failed \(EFBIG\)", required=False,
               why="BUG: EFBIG refusals of truncate logged at WARNING")
    m = mount_factory(cos_server).path
    check = conformance
    check.base = str(m)
    f, g = m / "f", m / "g"
    big_rule = "truncate(2) EFBIG (or EINVAL): the argument length is larger than the maximum file size"
    rows = [
        ok("open", f, CREAT, 0o644, what="fixture: create f", rule="open(2)"),
        ok("write", f, "0123456789", what="fixture: write 10 bytes", rule="write(2)"),
        ok("open", g, CREAT, 0o644, what="fixture: create g", rule="open(2)"),
        err(("EFBIG", "EINVAL"), "truncate", f, MAX_OBJECT_BYTES + 1, what="truncate one byte past COS's largest object",
            rule=big_rule),
        err(("EFBIG", "EINVAL"), "truncate", f, 2**62, what="truncate to 2**62 bytes", rule=big_rule),
        err(("EFBIG", "EINVAL"), "truncate", f, 2**63 - 1, what="truncate to the largest off_t", rule=big_rule),
        err(("EFBIG", "EINVAL"), "ftruncate", f, WRONLY, MAX_OBJECT_BYTES + 1,
            what="ftruncate one byte past COS's largest object",
            rule="ftruncate(2) EFBIG/EINVAL: length is larger than the maximum file size"),
        err(("EFBIG", "EINVAL"), "ftruncate", g, RDWR, 2**62, what="ftruncate to 2**62 bytes", rule="ftruncate(2) EFBIG"),
        err("EINVAL", "truncate", f, -1, what="truncate to -1", rule="truncate(2) EINVAL: the length is negative"),
        err("EINVAL", "ftruncate", f, WRONLY, -5, what="ftruncate to -5", rule="ftruncate(2) EINVAL: length is negative"),
        err(("EBADF", "EINVAL"), "ftruncate", f, RDONLY, 0, what="ftruncate of a descriptor open read-only",
            rule="ftruncate(2) EBADF or EINVAL: fd is not open for writing"),
        err("EBADF", "ftruncate_closed_fd", 0, what="ftruncate of a closed descriptor",
            rule="ftruncate(2) EBADF: fd is not a valid file descriptor"),
        err("EBADF", "fchmod_closed_fd", 0o644, what="fchmod of a closed descriptor", rule="fchmod(2) EBADF"),
        err("EBADF", "fstat_closed_fd", what="fstat of a closed descriptor", rule="fstat(2) EBADF"),
        ok("read", f, what="refused truncates left the content", rule="POSIX: a failed call has no effect",
           value=lambda v: v == "0123456789", shows="'0123456789'"),
        ok("stat", g, what="refused ftruncate left the size", rule="POSIX: a failed call has no effect",
           value=lambda v: v["size"] == 0, shows="size 0"),
        # the sizes that are allowed do what truncate(2) says
        ok("truncate", f, 4, what="truncate shrinks", rule="truncate(2): the extra data is lost"),
        ok("read", f, what="shrunk file keeps its head", rule="truncate(2)", value=lambda v: v == "0123",
           shows="'0123'"),
        ok("truncate", f, 8, what="truncate extends", rule="truncate(2): the extended part reads as null bytes"),
        ok("read", f, what="the extension reads as zeros", rule="truncate(2)",
           value=lambda v: v == "0123" + "\0" * 4, shows="'0123' and 4 NULs"),
        ok("ftruncate", g, WRONLY, 3 * 1024 * 1024, what="ftruncate extends an empty file to 3 MiB",
           rule="ftruncate(2)"),
        ok("stat", g, what="the extended size is reported", rule="ftruncate(2)",
           value=lambda v: v["size"] == 3 * 1024 * 1024, shows="3 MiB"),
        ok("ftruncate", g, RDWR, 0, what="ftruncate to 0", rule="ftruncate(2)"),
        ok("stat", g, what="the file is empty again", rule="ftruncate(2)", value=lambda v: v["size"] == 0,
           shows="size 0"),
    ]
    check.table(rows)
    check.that(bucket.exists("f") and bucket.get("f") == b"0123\0\0\0\0",
               "truncate by path is committed to the bucket", "README: truncate(2) by path commits at once",
               f"the bucket holds {bucket.get('f') if bucket.exists('f') else None!r}")
    check.verify()
