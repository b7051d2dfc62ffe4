from hypothesis import given, strategies as st

from cosfs.inodes import ROOT_INO, Attr, InodeTable
from cosfs.prefetch import ReadAhead

FILE_ATTR = Attr(0, 0o100644, 10, 0, 0, 0)
DIR_ATTR = Attr(0, 0o040755, 0, 0, 0, 0)


def table() -> InodeTable:
    return InodeTable("", DIR_ATTR)


def test_upsert_reuses_number_while_kind_and_key_stay():
    t = table()
    a = t.upsert(ROOT_INO, "a", "a", FILE_ATTR, etag="1", expires_at_s=1)
    t.remember(a.ino)
    again = t.upsert(ROOT_INO, "a", "a", FILE_ATTR, etag="2", expires_at_s=2)
    assert again is a and a.etag == "2" and a.attr.ino == a.ino
    as_dir = t.upsert(ROOT_INO, "a", "a/", DIR_ATTR, etag=None, expires_at_s=2)
    assert as_dir.ino != a.ino
    assert t.get(a.ino) is a  # still known to the kernel until forgotten
    t.remember(as_dir.ino)
    t.forget(a.ino, 1)
    t.check_invariants()


@given(st.lists(st.tuples(st.sampled_from(["lookup", "forget", "open", "close", "unlink"]),
                          st.integers(0, 3), st.integers(1, 3)), max_size=60))
def test_lookup_counts_never_negative_and_free_only_at_zero(ops):
    t = table()
    names = [f"n{i}" for i in range(4)]
    opened: list[int] = []
    for op, which, n in ops:
        name = names[which]
        if op == "lookup":
            inode = t.upsert(ROOT_INO, name, name, FILE_ATTR, etag=None, expires_at_s=0)
            t.remember(inode.ino)
        elif op == "forget":
            child = t.child(ROOT_INO, name)
            if child is not None:
                t.forget(child.ino, n)
        elif op == "open":
            child = t.child(ROOT_INO, name)
            if child is not None:
                t.opened(child.ino)
                opened.append(child.ino)
        elif op == "close" and opened:
            t.closed(opened.pop())
        elif op == "unlink":
            t.unlink_name(ROOT_INO, name)
        t.check_invariants()


def test_readahead_grows_while_sequential_and_resets_on_seek():
    block = 1 << 20
    ra = ReadAhead(block, 16 * block)
    size = 100 * block
    first = ra.advise(0, 128 * 1024, size)
    assert first == (0, 1)
    windows = []
    for i in range(1, 64):
        ra.advise(i * 128 * 1024, 128 * 1024, size)
        windows.append(ra.window_blocks)
    assert windows[-1] == 16 and windows == sorted(windows)
    assert ra.advise(50 * block, 4096, size) is None  # a seek: no read-ahead
    assert ra.window_blocks == 0
    assert ra.advise(size - 4096, 4096, size) is None


def test_readahead_follows_a_stream_whose_reads_arrive_out_of_order():
    """The kernel's read-ahead sends 1 MiB reads concurrently: they arrive a few blocks ahead
    of the furthest read and then behind it (seen with read_ahead_kb=16384). That is one
    stream: its window and its streamed bytes (which decide disk admission) keep growing."""
    block = 1 << 20
    ra = ReadAhead(block, 64 * block)
    size = 1024 * block
    order = list(range(0, 11)) + [14, 15, 16, 17, 11, 12, 13] + list(range(18, 27)) + [40, 41] + list(range(27, 40))
    for index in order:
        assert ra.advise(index * block, block, size) is not None, index
    assert ra.window_blocks == 64
    assert ra.streamed_bytes == 42 * block
    # A random reader's jump is still a seek: no window is open, so only the next block counts.
    ra = ReadAhead(block, 64 * block)
    assert ra.advise(500 * block, 4096, size) is None
    assert ra.advise(503 * block, 4096, size) is None
    assert ra.window_blocks == 0
    # ... and a jump past an open window is one too.
    ra = ReadAhead(block, 64 * block)
    for index in range(4):
        ra.advise(index * block, block, size)
    assert ra.advise((4 + ra.window_blocks + 1) * block, block, size) is None


def test_a_forgotten_name_gets_its_number_back():
    """st_ino stays the same for the same key after the kernel forgot the inode (tar checks
    that a directory it made still has its number when it sets its times at the end)."""
    t = table()
    d = t.upsert(ROOT_INO, "d", "d/", DIR_ATTR, etag=None, expires_at_s=1)
    t.remember(d.ino)
    number = d.ino
    t.forget(number, 1)  # the kernel drops it: freed
    other = t.upsert(ROOT_INO, "e", "e/", DIR_ATTR, etag=None, expires_at_s=1)
    again = t.upsert(ROOT_INO, "d", "d/", DIR_ATTR, etag=None, expires_at_s=1)
    assert again.ino == number and other.ino != number
    t.remember(again.ino)
    t.remember(other.ino)
    t.check_invariants()
    gone = t.upsert(ROOT_INO, "f", "f", FILE_ATTR, etag="1", expires_at_s=1)
    t.remember(gone.ino)
    t.unlink_name(ROOT_INO, "f")
    t.forget(gone.ino, 1)  # unlinked, then forgotten: its number is not kept for the name
    assert t.upsert(ROOT_INO, "f", "f", FILE_ATTR, etag="2", expires_at_s=1).ino != gone.ino
