"""Permission checks as another user (nobody, uid/gid 65534, no supplementary groups) on an
`allow_other` mount (default_permissions is always on: the kernel decides from the mode,
owner and group the filesystem reports, so these hold only if cosfs reports and stores them
right): search permission on every directory of a path, write permission on the parent for
every call that adds or removes a name, owner-only chmod/chown/explicit times, write
permission for utimes(NULL), the sticky directory rules, setgid directories, and the
S_ISUID/S_ISGID bits an unprivileged chmod/chown clears. Root sets the fixtures up (chown
and chmod as needed), nobody acts, then root checks what nobody's calls left behind.

Sources: POSIX (IEEE Std 1003.1-2017) XBD 4.5 "File Access Permissions", open(), mkdir(),
rmdir(), unlink(), rename(), symlink(), chmod(), chown(), truncate(), utimensat(), mknod();
the Linux man pages path_resolution(7), chmod(2), chown(2), utimensat(2), unlink(2),
rename(2), rmdir(2), mknod(2), mkdir(2), open(2), inode(7) ("The set-group-ID bit").
"""

from __future__ import annotations

import stat

from tests.posix.conftest import NOBODY, err, ok

RD, WR, RW = ["O_RDONLY"], ["O_WRONLY"], ["O_RDWR"]
CREAT = ["O_WRONLY", "O_CREAT"]
SEARCH = "path_resolution(7)/XBD 4.5: search (x) permission is needed on every directory of the path"
PARENT_W = "write and search permission on the parent directory is needed to add or remove a name"
OWNER = "only the owner (or a privileged process) may"
STICKY = ("unlink(2)/rename(2)/rmdir(2) EPERM (or EACCES): in a sticky directory only the owner of the entry, "
          "the owner of the directory or a privileged process may remove or rename it")


def owned(uid, gid, perm=None, kind=None):
    def good(v):
        return (v["uid"] == uid and v["gid"] == gid and (perm is None or stat.S_IMODE(v["mode"]) == perm)
                and (kind is None or stat.S_IFMT(v["mode"]) == kind))
    shows = f"owner {uid}:{gid}" + (f", mode {perm:04o}" if perm is not None else "")
    return dict(value=good, shows=shows)


def root_setup(m):
    """Directories and files owned by root or nobody, with the modes each case needs."""
    rows = []

    def mkdir(path, perm, uid=0, gid=0):
        rows.append(ok("mkdir", m / path, 0o700, what=f"fixture: mkdir {path}", rule="mkdir(2)"))
        if (uid, gid) != (0, 0):
            rows.append(ok("chown", m / path, uid, gid, what=f"fixture: chown {path}", rule="chown(2)"))
        rows.append(ok("chmod", m / path, perm, what=f"fixture: chmod {path} {perm:04o}", rule="chmod(2)"))

    def file(path, perm, uid=0, gid=0, data="data"):
        rows.append(ok("open", m / path, CREAT, 0o600, what=f"fixture: create {path}", rule="open(2)"))
        if data:
            rows.append(ok("write", m / path, data, what=f"fixture: write {path}", rule="write(2)"))
        if (uid, gid) != (0, 0):
            rows.append(ok("chown", m / path, uid, gid, what=f"fixture: chown {path}", rule="chown(2)"))
        rows.append(ok("chmod", m / path, perm, what=f"fixture: chmod {path} {perm:04o}", rule="chmod(2)"))

    mkdir("pub", 0o777)
    file("pub/rootfile", 0o644)
    file("pub/root666", 0o666, data="shared")
    file("pub/root600", 0o600)
    file("pub/root_victim", 0o600)
    file("pub/mine", 0o644, NOBODY, NOBODY, data="mine")
    file("pub/mine_mv", 0o644, NOBODY, NOBODY)
    file("pub/mine_sgid", 0o755, NOBODY, 0)
    file("pub/mine_suid", 0o4755, NOBODY, 0)
    file("pub/mine_noread", 0o066, NOBODY, NOBODY)
    file("pub/grp_read", 0o640, 0, NOBODY)
    file("pub/grp_denied", 0o604, 0, NOBODY)
    mkdir("pub/rootdir", 0o755)
    mkdir("pub/minedir", 0o755, NOBODY, NOBODY)
    mkdir("pub/minedir_empty", 0o755, NOBODY, NOBODY)
    mkdir("ro", 0o755)
    file("ro/f", 0o644)
    mkdir("ro/emptysub", 0o755)
    mkdir("nosearch", 0o700)
    file("nosearch/f", 0o666)
    mkdir("nosearch/sub", 0o777)
    rows.append(ok("chmod", m / "nosearch", 0o666, what="fixture: chmod nosearch 0666 (rw, no x)", rule="chmod(2)"))
    mkdir("private", 0o700)
    file("private/f", 0o644)
    mkdir("sticky", 0o1777)
    file("sticky/rootfile", 0o666)
    file("sticky/rootfile2", 0o666)
    file("sticky/mine", 0o644, NOBODY, NOBODY)
    file("sticky/mine2", 0o644, NOBODY, NOBODY)
    mkdir("sticky/rootdir", 0o777)
    mkdir("stickymine", 0o1777, NOBODY, NOBODY)
    file("stickymine/rootfile", 0o644)
    mkdir("sgid", 0o2777)
    return rows


def nobody_rows(m):
    pub, ro, ns, st = m / "pub", m / "ro", m / "nosearch", m / "sticky"
    return [
        # --- EACCES: search permission on a directory of the path --------------------------------
        err("EACCES", "stat", ns / "f", what="stat through a directory without x", rule="stat(2) EACCES: " + SEARCH),
        err("EACCES", "open", ns / "f", RD, what="open through a directory without x", rule="open(2) EACCES: " + SEARCH),
        err("EACCES", "open", ns / "new", CREAT, 0o644, what="create in a directory without x",
            rule="open(2) EACCES: " + SEARCH),
        err("EACCES", "mkdir", ns / "d", 0o755, what="mkdir in a directory without x", rule="mkdir(2) EACCES"),
        err("EACCES", "unlink", ns / "f", what="unlink in a directory without x", rule="unlink(2) EACCES"),
        err("EACCES", "rmdir", ns / "sub", what="rmdir in a directory without x", rule="rmdir(2) EACCES"),
        err("EACCES", "rename", ns / "f", pub / "stolen", what="rename out of a directory without x",
            rule="rename(2) EACCES"),
        err("EACCES", "symlink", "t", ns / "l", what="symlink in a directory without x", rule="symlink(2) EACCES"),
        err("EACCES", "mkfifo", ns / "p", 0o644, what="mkfifo in a directory without x", rule="mknod(2) EACCES"),
        err("EACCES", "chmod", ns / "f", 0o600, what="chmod through a directory without x", rule="chmod(2) EACCES"),
        err("EACCES", "chown", ns / "f", -1, -1, what="chown through a directory without x", rule="chown(2) EACCES"),
        err("EACCES", "truncate", ns / "f", 0, what="truncate through a directory without x",
            rule="truncate(2) EACCES"),
        err("EACCES", "utimensat", ns / "f", None, None, what="utimes through a directory without x",
            rule="utimensat(2) EACCES"),
        err("EACCES", "stat", m / "private" / "f", what="stat inside a 0700 directory of another user",
            rule="stat(2) EACCES: " + SEARCH),
        err("EACCES", "listdir", m / "private", what="readdir of a 0700 directory of another user",
            rule="opendir(3) EACCES: read permission is needed to list a directory"),
        # --- EACCES: write permission on the parent ------------------------------------------------
        err("EACCES", "open", ro / "new", CREAT, 0o644, what="create in a 0755 directory of root",
            rule="open(2) EACCES: " + PARENT_W),
        err("EACCES", "mkdir", ro / "d", 0o755, what="mkdir in a 0755 directory of root", rule="mkdir(2) EACCES"),
        err("EACCES", "symlink", "t", ro / "l", what="symlink in a 0755 directory of root", rule="symlink(2) EACCES"),
        err("EACCES", "mkfifo", ro / "p", 0o644, what="mkfifo in a 0755 directory of root", rule="mknod(2) EACCES"),
        err("EACCES", "mknod", ro / "n", stat.S_IFREG | 0o644, what="mknod in a 0755 directory of root",
            rule="mknod(2) EACCES"),
        err("EACCES", "bind", ro / "s", what="bind a socket in a 0755 directory of root",
            rule="unix(7) EACCES: search or write permission denied"),
        err("EACCES", "unlink", ro / "f", what="unlink in a 0755 directory of root", rule="unlink(2) EACCES: " + PARENT_W),
        err("EACCES", "rmdir", ro / "emptysub", what="rmdir in a 0755 directory of root", rule="rmdir(2) EACCES"),
        err("EACCES", "rename", ro / "f", ro / "g", what="rename inside a 0755 directory of root",
            rule="rename(2) EACCES: write permission is denied for the directory containing oldpath or newpath"),
        err("EACCES", "rename", ro / "f", pub / "g", what="rename out of a 0755 directory of root",
            rule="rename(2) EACCES"),
        err("EACCES", "rename", pub / "mine", ro / "g", what="rename into a 0755 directory of root",
            rule="rename(2) EACCES"),
        err("EACCES", "rename", pub / "rootdir", pub / "minedir" / "rootdir",
            what="moving another user's directory to a new parent",
            rule="rename(2) EACCES: oldpath is a directory without write permission (its .. entry must change)"),
        # --- EACCES: permission on the file itself ------------------------------------------------
        err("EACCES", "open", pub / "rootfile", WR, what="open for writing a 0644 file of root",
            rule="open(2) EACCES: the requested access to the file is not allowed"),
        err("EACCES", "open", pub / "rootfile", ["O_WRONLY", "O_TRUNC"], what="O_TRUNC on a 0644 file of root",
            rule="open(2) EACCES"),
        err("EACCES", "open", pub / "root600", RD, what="open for reading a 0600 file of root", rule="open(2) EACCES"),
        err("EACCES", "open", ro / "f", RW, what="open read-write a 0644 file of root", rule="open(2) EACCES"),
        err("EACCES", "write", pub / "rootfile", "x", what="append to a 0644 file of root", rule="open(2) EACCES"),
        err("EACCES", "truncate", pub / "rootfile", 0, what="truncate a 0644 file of root",
            rule="truncate(2) EACCES: the named file is not writable by the user"),
        err("EACCES", "open", pub / "mine_noread", RD, what="the owner class applies to the owner (0066, own file)",
            rule="XBD 4.5: the file owner class bits decide for the owner, not the group or other bits"),
        ok("open", pub / "grp_read", RD, what="the group class grants read (0640, group nogroup)",
           rule="XBD 4.5: the file group class bits decide for a group member"),
        err("EACCES", "open", pub / "grp_denied", RD, what="the group class denies read (0604, group nogroup)",
            rule="XBD 4.5: for a group member the group bits decide, even if the other bits would allow"),
        err("EACCES", "utimensat", pub / "rootfile", None, None, what="utimes(NULL) on a file not writable by the caller",
            rule="utimensat(2) EACCES: times is NULL and the caller is not the owner and has no write access"),
        err("EACCES", "utimensat", pub / "rootfile", "NOW", "NOW",
            what="UTIME_NOW for both on a file not writable by the caller", rule="utimensat(2) EACCES"),
        # --- EPERM: owner-only changes --------------------------------------------------------------
        err("EPERM", "chmod", pub / "rootfile", 0o666, what="chmod of root's file by nobody",
            rule=f"chmod(2) EPERM: {OWNER} change the mode"),
        err("EPERM", "chmod", pub / "root666", 0o600, what="chmod of a world-writable file by a non-owner",
            rule=f"chmod(2) EPERM: {OWNER} change the mode, write permission is not enough"),
        err("EPERM", "chmod", ro, 0o777, what="chmod of root's directory by nobody", rule="chmod(2) EPERM"),
        err("EPERM", "chown", pub / "rootfile", NOBODY, NOBODY, what="chown of root's file by nobody",
            rule="chown(2) EPERM: only a privileged process may change the owner"),
        err("EPERM", "chown", pub / "mine", 0, -1, what="giving one's own file away",
            rule="chown(2) EPERM: an unprivileged owner cannot change the owner"),
        err("EPERM", "chown", pub / "mine", -1, 0, what="chown of one's own file to a group one is not in",
            rule="chown(2) EPERM: the owner may change the group only to a group of which it is a member"),
        err("EPERM", "chown", pub / "root666", -1, NOBODY, what="chown of the group of another user's file",
            rule="chown(2) EPERM"),
        err("EPERM", "utimensat", pub / "root666", [1_000_000_000, 0], [1_000_000_000, 0],
            what="explicit times on a writable file of another user",
            rule="utimensat(2) EPERM: explicit times need the owner (write permission is not enough)"),
        err("EPERM", "utimensat", pub / "root666", "OMIT", "NOW", what="UTIME_NOW for mtime only, by a non-owner",
            rule="utimensat(2) EPERM: one timestamp to now and the other omitted needs the owner"),
        err("EPERM", "utimensat", pub / "rootfile", [1_000_000_000, 0], [1_000_000_000, 0],
            what="explicit times on a read-only file of another user", rule="utimensat(2) EPERM"),
        err("EPERM", "mknod", pub / "chr", stat.S_IFCHR | 0o644, 1, 3, what="mknod of a device by nobody",
            rule="mknod(2) EPERM: creating a device node needs privilege (CAP_MKNOD)"),
        err("EPERM", "mknod", pub / "blk", stat.S_IFBLK | 0o644, 8, 1, what="mknod of a block device by nobody",
            rule="mknod(2) EPERM"),
        err("ENOTSUP", "link", pub / "mine", pub / "mine_link", what="link of one's own file (refused by design)",
            rule="link(2) of a filesystem without hard links: ENOTSUP, as s3fs and COSFS answer"),
        # --- the sticky directory --------------------------------------------------------------------
        err(("EPERM", "EACCES"), "unlink", st / "rootfile", what="unlink of root's file in a sticky directory",
            rule=STICKY),
        err(("EPERM", "EACCES"), "rename", st / "rootfile2", st / "taken", what="rename of root's file in a sticky dir",
            rule=STICKY),
        err(("EPERM", "EACCES"), "rename", st / "mine", st / "rootfile",
            what="rename of one's own file over root's file in a sticky directory", rule=STICKY + " (the target too)"),
        err(("EPERM", "EACCES"), "rmdir", st / "rootdir", what="rmdir of root's empty directory in a sticky directory",
            rule=STICKY),
        ok("unlink", st / "mine2", what="unlink of one's own file in a sticky directory", rule=STICKY),
        ok("rename", st / "mine", st / "mine_renamed", what="rename of one's own file in a sticky directory",
           rule=STICKY),
        ok("unlink", m / "stickymine" / "rootfile", what="the owner of a sticky directory removes root's file in it",
           rule=STICKY),
        # --- what nobody may do --------------------------------------------------------------------
        ok("read", pub / "rootfile", what="read a 0644 file of root", rule="open(2): other has r",
           value=lambda v: v == "data", shows="'data'"),
        ok("write", pub / "root666", "+nobody", what="append to a 0666 file of root", rule="open(2): other has w"),
        ok("truncate", pub / "root666", 3, what="truncate a 0666 file of root", rule="truncate(2): write permission suffices"),
        ok("utimensat", pub / "root666", None, None, what="utimes(NULL) with write permission on another user's file",
           rule="utimensat(2): times NULL needs the owner or write permission"),
        ok("utimensat", pub / "root666", "NOW", "NOW", what="UTIME_NOW for both with write permission",
           rule="utimensat(2): both UTIME_NOW is as times = NULL"),
        ok("unlink", pub / "root_victim", what="unlink of root's 0600 file in a 0777 (not sticky) directory",
           rule="unlink(2): permission on the directory decides, not on the file"),
        ok("open", pub / "new", CREAT, 0o666, what="create in a 0777 directory", rule="open(2)"),
        ok("mkdir", pub / "newdir", 0o777, what="mkdir in a 0777 directory", rule="mkdir(2)"),
        ok("symlink", "new", pub / "newlink", what="symlink in a 0777 directory", rule="symlink(2)"),
        ok("mkfifo", pub / "newfifo", 0o666, what="mkfifo by an unprivileged user",
           rule="mknod(2): a FIFO needs no privilege"),
        ok("bind", pub / "newsock", what="bind a UNIX socket in a 0777 directory", rule="unix(7)"),
        ok("chmod", pub / "mine", 0o600, what="chmod of one's own file", rule="chmod(2): the owner may"),
        ok("chown", pub / "mine", NOBODY, NOBODY, what="chown of one's own file to oneself", rule="chown(2)"),
        ok("utimensat", pub / "mine", [1_000_000_000, 0], [1_100_000_000, 0], what="explicit times on one's own file",
           rule="utimensat(2): the owner may set any times"),
        ok("chmod", pub / "mine_sgid", 0o2755, what="chmod g+s of one's own file whose group one is not in",
           rule="chmod(2): S_ISGID is cleared silently when the caller is not in the file's group"),
        ok("chown", pub / "mine_suid", -1, NOBODY, what="chown of the group of one's own set-user-ID file",
           rule="chown(2): the owner may change the group to one of its groups"),
        ok("rename", pub / "mine_mv", pub / "mine_mv2", what="rename of one's own file", rule="rename(2)"),
        ok("unlink", pub / "mine_mv2", what="unlink of one's own file", rule="unlink(2)"),
        ok("rmdir", pub / "minedir_empty", what="rmdir of one's own empty directory", rule="rmdir(2)"),
        ok("open", m / "sgid" / "newfile", CREAT, 0o644, what="create in a set-group-ID directory", rule="open(2)"),
        ok("mkdir", m / "sgid" / "newdir", 0o755, what="mkdir in a set-group-ID directory", rule="mkdir(2)"),
        # nobody sees its own changes
        ok("stat", pub / "mine", what="nobody's chmod and times are visible to nobody", rule="chmod(2)/utimensat(2)",
           value=lambda v: stat.S_IMODE(v["mode"]) == 0o600 and v["mtime_ns"] // 10**9 == 1_100_000_000,
           shows="mode 0600, mtime 1100000000"),
    ]


def root_checks(m):
    pub = m / "pub"
    gone = "POSIX: a refused call has no effect"
    return [
        ok("stat", pub / "new", what="a file nobody created is owned by nobody, mode 0666 & ~umask",
           rule="open(2): the owner is the caller's euid, the group its egid (no set-group-ID parent)",
           **owned(NOBODY, NOBODY, 0o644, stat.S_IFREG)),
        ok("stat", pub / "newdir", what="a directory nobody made is owned by nobody, mode 0777 & ~umask",
           rule="mkdir(2): owner is the caller's euid", **owned(NOBODY, NOBODY, 0o755, stat.S_IFDIR)),
        ok("lstat", pub / "newlink", what="a symlink nobody made is owned by nobody", rule="symlink(2)/inode(7)",
           **owned(NOBODY, NOBODY, None, stat.S_IFLNK)),
        ok("lstat", pub / "newfifo", what="a FIFO nobody made is owned by nobody, mode 0666 & ~umask",
           rule="mkfifo(3)", **owned(NOBODY, NOBODY, 0o644, stat.S_IFIFO)),
        ok("lstat", pub / "newsock", what="a socket nobody bound is owned by nobody", rule="unix(7)",
           **owned(NOBODY, NOBODY, 0o755, stat.S_IFSOCK)),
        ok("stat", pub / "mine", what="nobody's chmod of its own file holds", rule="chmod(2)",
           **owned(NOBODY, NOBODY, 0o600)),
        ok("stat", pub / "mine_sgid", what="g+s by an owner outside the file's group is dropped",
           rule="chmod(2): S_ISGID turned off (no error) when the group is not one of the caller's",
           **owned(NOBODY, 0, 0o755)),
        ok("stat", pub / "mine_suid", what="an unprivileged chown clears S_ISUID",
           rule="chown(2): when an unprivileged user changes the owner or group, S_ISUID and S_ISGID are cleared",
           **owned(NOBODY, NOBODY, 0o755)),
        ok("stat", pub / "rootfile", what="refused chmod/chown/truncate left root's file alone", rule=gone,
           **owned(0, 0, 0o644)),
        ok("stat", pub / "root666", what="refused chmod/chown left the 0666 file; nobody's truncate holds", rule=gone,
           value=lambda v: v["uid"] == 0 and v["gid"] == 0 and stat.S_IMODE(v["mode"]) == 0o666 and v["size"] == 3,
           shows="owner 0:0, mode 0666, size 3"),
        ok("read", pub / "root666", what="nobody's write then truncate to 3 bytes", rule="write(2)/truncate(2)",
           value=lambda v: v == "sha", shows="'sha'"),
        ok("stat", m / "ro" / "f", what="root's file in a 0755 directory survived nobody's unlink and rename",
           rule=gone, **owned(0, 0, 0o644)),
        ok("stat", m / "sticky" / "rootfile", what="root's file in the sticky directory survived", rule=STICKY),
        ok("stat", m / "sticky" / "rootfile2", what="root's file in the sticky directory was not renamed", rule=STICKY),
        ok("stat", m / "sticky" / "rootdir", what="root's directory in the sticky directory survived", rule=STICKY),
        ok("stat", m / "sticky" / "mine_renamed", what="nobody renamed its own file in the sticky directory",
           rule=STICKY),
        err("ENOENT", "lstat", m / "stickymine" / "rootfile", what="the sticky directory's owner removed root's file",
            rule=STICKY),
        err("ENOENT", "lstat", pub / "root_victim", what="nobody removed root's file from a 0777 directory",
            rule="unlink(2)"),
        ok("stat", pub / "rootdir", what="nobody could not move root's directory", rule="rename(2) EACCES",
           **owned(0, 0, 0o755)),
        ok("stat", m / "sgid" / "newfile", what="a file created in a set-group-ID directory takes the directory's group",
           rule="open(2)/inode(7): with S_ISGID on the parent, the new file's group is the parent's group",
           **owned(NOBODY, 0)),
        ok("stat", m / "sgid" / "newdir", what="a directory made in a set-group-ID directory takes its group and S_ISGID",
           rule="mkdir(2)/inode(7): the new directory inherits the group and the set-group-ID bit",
           value=lambda v: v["uid"] == NOBODY and v["gid"] == 0 and v["mode"] & stat.S_ISGID,
           shows="owner 65534:0 with S_ISGID"),
        err("ENOENT", "lstat", m / "ro" / "new", what="a refused create left nothing", rule=gone),
        err("ENOENT", "lstat", m / "ro" / "d", what="a refused mkdir left nothing", rule=gone),
        err("ENOENT", "lstat", pub / "chr", what="a refused mknod left nothing", rule=gone),
        err("ENOENT", "lstat", pub / "mine_link", what="a refused link left nothing", rule=gone),
        err("ENOENT", "lstat", pub / "stolen", what="a refused rename left nothing", rule=gone),
        # root is privileged: DAC does not stop it
        ok("write", pub / "mine", "+root", what="root writes nobody's 0600 file", rule="capabilities(7) CAP_DAC_OVERRIDE"),
        ok("chmod", pub / "newdir", 0o700, what="root chmods nobody's directory", rule="chmod(2): privileged"),
        ok("open", pub / "newdir" / "by_root", CREAT, 0o644, what="root creates in nobody's 0700 directory",
           rule="capabilities(7) CAP_DAC_OVERRIDE"),
        ok("unlink", m / "sticky" / "mine_renamed", what="root removes nobody's file in a sticky directory",
           rule=STICKY),
    ]


def test_permissions_as_another_user(cos_server, bucket, shared_mount, conformance):
    m = shared_mount(cos_server, "allow_other").path
    check = conformance
    check.base = str(m)
    check.table(root_setup(m))
    check.table(nobody_rows(m), user="nobody")
    check.table(root_checks(m))
    # The owner nobody got is what the bucket stores (COSFS's x-cos-meta-uid/gid).
    for key in ("pub/new", "pub/newdir/"):
        meta = bucket.meta(key) if bucket.exists(key) else {}
        check.that(meta.get("uid") == str(NOBODY) and meta.get("gid") == str(NOBODY),
                   f"{key}: the creator's uid/gid are stored", "COSFS format: x-cos-meta-uid/gid", f"meta {meta}")
    check.verify()
