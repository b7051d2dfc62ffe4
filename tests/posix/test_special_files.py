"""FIFOs, UNIX sockets and device nodes (as root): created with the right type, permissions
and st_rdev, then stat'ed, chmod'ed, chown'ed, given times, renamed and unlinked like any
other entry. COSFS and s3fs store them as zero-byte objects whose x-cos-meta-mode holds the
type bits (and x-cos-meta-rdev the device number, as s3fs's x-amz-meta-rdev), so another
mount of the bucket shows the same node.

Sources: POSIX (IEEE Std 1003.1-2017) mknod(), mkfifo(), <sys/stat.h> (S_ISFIFO, S_ISSOCK,
S_ISCHR, S_ISBLK, st_rdev); the Linux man pages mknod(2), mkfifo(3), unix(7), fifo(7),
stat(2), inode(7).
"""

from __future__ import annotations

import errno
import os
import stat

from tests.posix.conftest import NOBODY, err, ok

UMASK = 0o022  # the conftest's fixed umask
KINDS = {  # name: (type bits, permission bits asked, (major, minor) or None, how it is made)
    "fifo": (stat.S_IFIFO, 0o640, None, "mkfifo"),
    "fifo_by_mknod": (stat.S_IFIFO, 0o600, None, "mknod"),
    "sock": (stat.S_IFSOCK, 0o777, None, "bind"),
    "chr": (stat.S_IFCHR, 0o620, (1, 3), "mknod"),
    "blk": (stat.S_IFBLK, 0o660, (8, 1), "mknod"),
    "chr_wide": (stat.S_IFCHR, 0o600, (259, 65_537), "mknod"),  # major > 255, minor > 65535
}
TYPE_NAME = {stat.S_IFIFO: "S_ISFIFO", stat.S_IFSOCK: "S_ISSOCK", stat.S_IFCHR: "S_ISCHR", stat.S_IFBLK: "S_ISBLK"}


def make(path, kind, perm, dev, how, what):
    rule = {"mkfifo": "mkfifo(3): creates a FIFO with mode & ~umask",
            "bind": "unix(7): bind creates a socket file with 0777 & ~umask",
            "mknod": "mknod(2): creates a node of the type in mode, with st_rdev = dev for devices"}[how]
    if how == "mkfifo":
        return ok("mkfifo", path, perm, what=what, rule=rule)
    if how == "bind":
        return ok("bind", path, what=what, rule=rule)
    major, minor = dev or (0, 0)
    return ok("mknod", path, kind | perm, major, minor, what=what, rule=rule)


def is_node(kind, perm, dev, uid=0, gid=0):
    def good(v):
        return (stat.S_IFMT(v["mode"]) == kind and stat.S_IMODE(v["mode"]) == perm and v["uid"] == uid
                and v["gid"] == gid and v["nlink"] == 1 and (dev is None or v["rdev"] == os.makedev(*dev))
                and (kind in (stat.S_IFCHR, stat.S_IFBLK) or v["size"] == 0))
    shows = f"{TYPE_NAME[kind]}, mode {perm:04o}, owner {uid}:{gid}, st_nlink 1"
    shows += f", st_rdev makedev{dev}" if dev else ", size 0"
    return dict(value=good, shows=shows)


def test_fifo_socket_and_device_nodes(cos_server, bucket, mount_factory, conformance):
    m = mount_factory(cos_server).path
    check = conformance
    check.base = str(m)
    rows = []
    for name, (kind, perm, dev, how) in KINDS.items():
        want = perm & ~UMASK
        for copy in (name, "kept_" + name):
            rows += [
                make(m / copy, kind, perm, dev, how, f"create a {TYPE_NAME[kind]} node ({copy})"),
                ok("lstat", m / copy, what=f"{copy}: type, permissions, owner and st_rdev as created",
                   rule="mknod(2)/stat(2): st_mode holds the type and mode & ~umask; st_rdev the device",
                   **is_node(kind, want, dev)),
            ]
        rule = "chmod(2)/chown(2)/utimensat(2)/rename(2)/unlink(2) apply to every file type"
        rows += [
            ok("chmod", m / name, 0o604, what=f"chmod of a {TYPE_NAME[kind]}", rule="chmod(2)"),
            ok("lstat", m / name, what=f"{name}: chmod changed the permissions and kept the type", rule=rule,
               **is_node(kind, 0o604, dev)),
            ok("chown", m / name, NOBODY, NOBODY, what=f"chown of a {TYPE_NAME[kind]}", rule="chown(2)"),
            ok("lstat", m / name, what=f"{name}: chown changed the owner and kept the type", rule=rule,
               **is_node(kind, 0o604, dev, NOBODY, NOBODY)),
            ok("utimensat", m / name, [1_000_000_000, 0], [1_100_000_000, 0],
               what=f"explicit times on a {TYPE_NAME[kind]}", rule="utimensat(2)"),
            ok("lstat", m / name, what=f"{name}: utimensat set the times", rule="utimensat(2)",
               value=lambda v: v["mtime_ns"] // 10**9 == 1_100_000_000 and v["atime_ns"] // 10**9 == 1_000_000_000,
               shows="atime 1000000000 s, mtime 1100000000 s"),
            ok("rename", m / name, m / (name + "_moved"), what=f"rename of a {TYPE_NAME[kind]}", rule="rename(2)"),
            err("ENOENT", "lstat", m / name, what=f"{name}: the old name is gone after rename", rule="rename(2)"),
            ok("lstat", m / (name + "_moved"), what=f"{name}: the renamed node keeps type, mode, owner, st_rdev",
               rule=rule, **is_node(kind, 0o604, dev, NOBODY, NOBODY)),
            ok("unlink", m / (name + "_moved"), what=f"unlink of a {TYPE_NAME[kind]}", rule="unlink(2)"),
            err("ENOENT", "lstat", m / (name + "_moved"), what=f"{name}: gone after unlink", rule="unlink(2)"),
        ]
    rows += [
        ok("mknod", m / "regular", stat.S_IFREG | 0o600, what="mknod of a regular file",
           rule="mknod(2): S_IFREG (or 0) makes an empty regular file",
           ),
        ok("lstat", m / "regular", what="mknod S_IFREG made an empty regular file", rule="mknod(2)",
           value=lambda v: stat.S_ISREG(v["mode"]) and stat.S_IMODE(v["mode"]) == 0o600 and v["size"] == 0,
           shows="a regular file, 0600, size 0"),
        ok("mknod", m / "regular0", 0o644, what="mknod with no type bits", rule="mknod(2): a zero type is S_IFREG"),
        ok("lstat", m / "regular0", what="mknod with type 0 made a regular file", rule="mknod(2)",
           value=lambda v: stat.S_ISREG(v["mode"]), shows="a regular file"),
        err("EINVAL", "mknod", m / "bad_type", 0o170000 | 0o644, what="mknod with an invalid type",
            rule="mknod(2) EINVAL: mode requested creation of something other than a file, device, FIFO or socket"),
        err("EPERM", "mknod", m / "dir_by_mknod", stat.S_IFDIR | 0o755, what="mknod of a directory",
            rule="mknod(2) EPERM: the filesystem does not support the type of node requested (use mkdir)"),
        err("EEXIST", "mknod", m / "kept_fifo", stat.S_IFIFO | 0o644, what="mknod over an existing FIFO",
            rule="mknod(2) EEXIST"),
        err("EEXIST", "mkfifo", m / "kept_chr", 0o644, what="mkfifo over an existing device node",
            rule="mkfifo(3) EEXIST"),
        err("EADDRINUSE", "bind", m / "kept_fifo", what="bind to an existing name",
            rule="unix(7) EADDRINUSE: the socket path already exists"),
        ok("open", m / "kept_fifo", ["O_RDWR", "O_NONBLOCK"], what="a FIFO on the mount opens as a pipe",
           rule="fifo(7): opening a FIFO for reading and writing succeeds on Linux"),
        ok("open", m / "kept_fifo", ["O_RDONLY", "O_NONBLOCK"], what="O_RDONLY|O_NONBLOCK on a FIFO without writer",
           rule="open(2)/fifo(7): a non-blocking open for reading succeeds at once"),
        err("ENXIO", "open", m / "kept_fifo", ["O_WRONLY", "O_NONBLOCK"], what="O_WRONLY|O_NONBLOCK on a FIFO without reader",
            rule="open(2) ENXIO: O_NONBLOCK | O_WRONLY is set, the named file is a FIFO, and no process has it open for reading"),
        err("ENXIO", "open", m / "kept_sock", ["O_RDONLY"], what="open of a UNIX socket file",
            rule="open(2) ENXIO: the file is a UNIX domain socket"),
    ]
    check.table(rows)

    # fifo(7): data written to the FIFO on the mount comes out of it (the kernel's pipe).
    try:
        fd = os.open(m / "kept_fifo", os.O_RDWR | os.O_NONBLOCK)
        try:
            os.write(fd, b"through the pipe")
            got = os.read(fd, 100)
        finally:
            os.close(fd)
    except OSError as exc:
        got = f"{errno.errorcode.get(exc.errno, exc.errno)}"
    check.that(got == b"through the pipe", "a FIFO on the mount carries data", "fifo(7)", f"read {got!r}")

    # The bucket holds each node as a zero-byte object in COSFS's format.
    for name, (kind, perm, dev, _) in KINDS.items():
        key = "kept_" + name
        if not bucket.exists(key):
            check.that(False, f"{key} is an object in the bucket", "COSFS format: a node is a zero-byte object",
                       "missing")
            continue
        meta = bucket.meta(key)
        check.that(bucket.get(key) == b"", f"{key} is a zero-byte object", "COSFS format", "")
        check.that(meta.get("mode") == str(kind | (perm & ~UMASK)), f"{key}: x-cos-meta-mode holds type and mode",
                   "COSFS format: x-cos-meta-mode is st_mode in decimal", f"meta {meta}")
        check.that(meta.get("uid") == "0" and meta.get("gid") == "0", f"{key}: x-cos-meta-uid/gid", "COSFS format",
                   f"meta {meta}")
        if dev:
            check.that(meta.get("rdev") == str(os.makedev(*dev)), f"{key}: x-cos-meta-rdev holds the device number",
                       "s3fs/COSFS format: the rdev header holds st_rdev in decimal", f"meta {meta}")
    # A chmod reaches the bucket too.
    check.table([ok("chmod", m / "kept_chr", 0o640, what="chmod of a kept device node", rule="chmod(2)")])
    meta = bucket.meta("kept_chr") if bucket.exists("kept_chr") else {}
    check.that(meta.get("mode") == str(stat.S_IFCHR | 0o640), "chmod of a device node is stored with its type",
               "COSFS format", f"meta {meta}")

    # Another mount of the bucket shows the same nodes (looked up by name, no listing first).
    m2 = mount_factory(cos_server).path
    rows = []
    for name, (kind, perm, dev, _) in KINDS.items():
        want = 0o640 if name == "chr" else perm & ~UMASK
        rows.append(ok("lstat", m2 / ("kept_" + name), what=f"a new mount shows kept_{name} as created",
                       rule="stat(2): the type, mode and st_rdev are attributes of the file", **is_node(kind, want, dev)))
    check.table(rows)
    check.verify()
