"""Link counts (st_nlink): a directory has 2 (its name and its own ".") plus one per
subdirectory (their ".."); a regular file, a symlink and a FIFO have 1 (hard links are
refused on this filesystem); an open file whose last name is gone has 0.

Sources: POSIX (IEEE Std 1003.1-2017) <sys/stat.h> st_nlink, mkdir(), rmdir(), rename(),
unlink() ("When the file's link count becomes 0 and no process has the file open, the space
occupied by the file shall be freed"); the Linux man pages inode(7), stat(2), mkdir(2).
"""

from __future__ import annotations

import os
import stat

from tests.posix.conftest import err, ok

RULE_DIR = "inode(7)/stat(2): a directory's st_nlink is 2 plus its number of subdirectories"


def nlink_is(n):
    return dict(value=lambda v: v["nlink"] == n, shows=f"st_nlink {n}")


def test_link_counts(cos_server, bucket, mount_factory, conformance):
    m = mount_factory(cos_server).path
    check = conformance
    check.base = str(m)
    d, e = m / "d", m / "e"
    creat = ["O_WRONLY", "O_CREAT"]
    rows = [
        ok("mkdir", d, 0o755, what="fixture: mkdir d", rule="mkdir(2)"),
        ok("mkdir", e, 0o755, what="fixture: mkdir e", rule="mkdir(2)"),
        ok("stat", d, what="a new directory has st_nlink 2", rule="mkdir(2)/inode(7): its name and its '.'",
           **nlink_is(2)),
        ok("open", d / "f", creat, 0o644, what="fixture: create d/f", rule="open(2)"),
        ok("stat", d / "f", what="a new regular file has st_nlink 1", rule="stat(2) st_nlink", **nlink_is(1)),
        ok("symlink", "f", d / "l", what="fixture: symlink d/l", rule="symlink(2)"),
        ok("lstat", d / "l", what="a symlink has st_nlink 1", rule="stat(2) st_nlink", **nlink_is(1)),
        ok("mkfifo", d / "p", 0o644, what="fixture: mkfifo d/p", rule="mkfifo(3)"),
        ok("lstat", d / "p", what="a FIFO has st_nlink 1", rule="stat(2) st_nlink", **nlink_is(1)),
        ok("stat", d, what="files, symlinks and FIFOs do not count in the parent's st_nlink", rule=RULE_DIR,
           **nlink_is(2)),
        ok("mkdir", d / "a", 0o755, what="mkdir d/a", rule="mkdir(2)"),
        ok("stat", d, what="a subdirectory adds one to the parent's st_nlink", rule=RULE_DIR, **nlink_is(3)),
        ok("mkdir", d / "b", 0o755, what="mkdir d/b", rule="mkdir(2)"),
        ok("stat", d, what="a second subdirectory adds one more", rule=RULE_DIR, **nlink_is(4)),
        ok("stat", d / "a", what="the new subdirectory has st_nlink 2", rule="mkdir(2)", **nlink_is(2)),
        ok("mkdir", d / "a" / "deeper", 0o755, what="mkdir d/a/deeper", rule="mkdir(2)"),
        ok("stat", d / "a", what="a grandchild counts in its own parent only", rule=RULE_DIR, **nlink_is(3)),
        ok("stat", d, what="a grandchild does not count in the grandparent", rule=RULE_DIR, **nlink_is(4)),
        ok("rmdir", d / "b", what="rmdir d/b", rule="rmdir(2)"),
        ok("stat", d, what="rmdir takes one from the parent's st_nlink", rule=RULE_DIR, **nlink_is(3)),
        ok("rename", d / "a", e / "a", what="rename d/a to e/a", rule="rename(2)"),
        ok("stat", d, what="moving a subdirectory out takes one from the old parent", rule=RULE_DIR, **nlink_is(2)),
        ok("stat", e, what="moving a subdirectory in adds one to the new parent", rule=RULE_DIR, **nlink_is(3)),
        ok("stat", e / "a", what="a moved directory keeps its own st_nlink", rule=RULE_DIR, **nlink_is(3)),
        ok("mkdir", d / "c", 0o755, what="mkdir d/c", rule="mkdir(2)"),
        ok("mkdir", e / "empty", 0o755, what="mkdir e/empty", rule="mkdir(2)"),
        ok("stat", e, what="e has two subdirectories", rule=RULE_DIR, **nlink_is(4)),
        ok("rename", d / "c", e / "empty", what="rename d/c over the empty e/empty", rule="rename(2)"),
        ok("stat", d, what="moving a subdirectory over another takes one from the old parent", rule=RULE_DIR,
           **nlink_is(2)),
        ok("stat", e, what="replacing a subdirectory by another leaves the new parent's count", rule=RULE_DIR,
           **nlink_is(4)),
        ok("rename", e / "a", e / "a2", what="rename e/a to e/a2 in place", rule="rename(2)"),
        ok("stat", e, what="renaming a subdirectory in place leaves the count", rule=RULE_DIR, **nlink_is(4)),
        ok("rename", d / "f", e / "f", what="rename of a file across", rule="rename(2)"),
        ok("stat", e, what="moving a file does not change directory link counts", rule=RULE_DIR, **nlink_is(4)),
        ok("stat", e / "f", what="a moved file keeps st_nlink 1", rule="rename(2)", **nlink_is(1)),
        err("ENOTSUP", "link", e / "f", e / "f2", what="link is refused (by design)", rule="link(2): ENOTSUP, as s3fs"),
        ok("stat", e / "f", what="a refused link leaves st_nlink 1", rule="stat(2)", **nlink_is(1)),
        ok("open", e / "victim", creat, 0o644, what="fixture: create e/victim", rule="open(2)"),
        ok("write", e / "victim", "still readable", what="fixture: write e/victim", rule="write(2)"),
        ok("unlinked_open_fstat", e / "victim",
           what="fstat of an open file whose last name was unlinked shows st_nlink 0",
           rule="POSIX unlink(): the link count becomes 0; the file lives on while open", **nlink_is(0)),
        err("ENOENT", "stat", e / "victim", what="the unlinked name is gone", rule="unlink(2)"),
    ]
    check.table(rows)
    # A fresh mount of the bucket has not seen the subdirectories made: it shows the exact
    # count, or 1 for a directory ("count unknown", which find(1)/fts(3) honour, as on btrfs);
    # never 2 for a directory that has subdirectories (find would skip them as a leaf).
    m2 = mount_factory(cos_server).path
    for path, n, what in ((m2 / "d", 2, "d (no subdirectory left)"), (m2 / "e", 4, "e (a2, empty and its parent)"),
                          (m2 / "e" / "a2", 3, "e/a2 (one subdirectory)"), (m2 / "e" / "f", 1, "a file")):
        st = os.stat(path) if os.path.exists(path) else None
        allowed = {n, 1} if st is not None and stat.S_ISDIR(st.st_mode) else {n}
        check.that(st is not None and st.st_nlink in allowed,
                   f"a new mount shows st_nlink {' or '.join(map(str, sorted(allowed)))} for {what}",
                   RULE_DIR + "; 1 means 'not counted' to find(1)/fts(3), 2 claims no subdirectories",
                   f"st_nlink {st.st_nlink if st else 'missing'}" + (f", mode {stat.filemode(st.st_mode)}" if st else ""))
    # an unlinked open file reads on until closed
    path = m / "e" / "reader"
    path.write_bytes(b"kept while open")
    with open(path, "rb") as handle:
        os.unlink(path)
        st = os.fstat(handle.fileno())
        check.that(st.st_nlink == 0, "fstat of a file held open by a reader after its unlink shows st_nlink 0",
                   "POSIX unlink()/inode(7)", f"st_nlink {st.st_nlink}")
        check.that(handle.read() == b"kept while open", "an unlinked open file still reads",
                   "POSIX unlink(): the file is removed only when no process has it open", "")
    check.verify()
