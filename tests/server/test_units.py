"""Pure pieces of the server: fault specs, key mapping, listing, ranges, conditionals, copy sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosfs.cos.rules import list_keys, prefix_end
from cosfs.server.faults import FaultInjector, FaultSpec, FaultSpecError, Pacer, parse_fault_spec
from cosfs.server.objects import check_conditions, parse_copy_source
from cosfs.server.request_rules import parse_range, select_uploads
from cosfs.server.storage import ObjectRecord, Upload, object_relpath


# --- fault specs -------------------------------------------------------------------------


def test_fault_spec_full():
    spec = parse_fault_spec("503=0.1,500=0.02,reset=0.02,truncate=0.01,delay=50ms,seed=7")
    assert spec == FaultSpec(slowdown=0.1, internal=0.02, reset=0.02, truncate=0.01, delay_s=0.05, seed=7)
    assert spec.active


def test_fault_spec_forms():
    assert parse_fault_spec("") == FaultSpec()
    assert not parse_fault_spec("").active
    assert parse_fault_spec(" delay=0.2s ").delay_s == pytest.approx(0.2)
    assert parse_fault_spec("delay=10").delay_s == pytest.approx(0.01)
    assert parse_fault_spec("503=1").slowdown == 1.0
    assert parse_fault_spec("seed=3").seed == 3 and not parse_fault_spec("seed=3").active


def test_fault_spec_rate_and_pacer():
    assert parse_fault_spec("rate=50MB").rate_bps == 50e6
    assert parse_fault_spec("rate=8MiB").rate_bps == 8 * 2**20
    assert parse_fault_spec("rate=500kb/s").rate_bps == 500e3
    assert parse_fault_spec("rate=1000").rate_bps == 1000 and parse_fault_spec("rate=1000").active
    pacer = Pacer(1000.0)
    assert pacer.delay_s(500, now=10.0) == pytest.approx(0.5)
    assert pacer.delay_s(500, now=10.5) == pytest.approx(0.5)  # back to back: the link is busy
    assert pacer.delay_s(100, now=20.0) == pytest.approx(0.1)  # after idling: no saved credit


@pytest.mark.parametrize("text", ["503", "503=x", "503=1.5", "500=-0.1", "boom=0.1", "delay=fast", "seed=1.5",
                                  "503=0.1,503=0.2", "503=0.6,500=0.6", "rate=0", "rate=fast", "rate=5TB"])
def test_fault_spec_errors(text):
    with pytest.raises(FaultSpecError):
        parse_fault_spec(text)


def test_fault_injector_probabilities():
    always = FaultInjector(parse_fault_spec("503=1"))
    assert {always.choose() for _ in range(50)} == {"503"}
    never = FaultInjector(parse_fault_spec("truncate=0"))
    assert {never.choose() for _ in range(50)} == {None}
    mixed = FaultInjector(parse_fault_spec("503=0.3,500=0.3,reset=0.3,seed=1"))
    choices = [mixed.choose() for _ in range(2000)]
    for kind in ("503", "500", "reset", None):
        assert 0.05 < choices.count(kind) / len(choices) < 0.4
    again = FaultInjector(parse_fault_spec("503=0.3,500=0.3,reset=0.3,seed=1"))
    assert [again.choose() for _ in range(2000)] == choices


# --- key mapping -------------------------------------------------------------------------

HOSTILE = ["a/../b", "../../../../etc/passwd", "//x", "/", "dir/", ".", "..", "ü/中文", "x" * 850, "\x01\x1f",
           "a\\b", "C:\\windows", "a/./b", "~root", "$HOME", "%2e%2e", "\u202e", "nul\x7f"]


def test_object_paths_stay_inside_and_are_short(tmp_path: Path):
    base = tmp_path / "objects"
    for key in HOSTILE:
        rel = object_relpath(key)
        target = (base / rel).resolve()
        assert base.resolve() in target.parents
        assert all(len(part.encode()) <= 255 for part in Path(rel).parts)
        assert rel.count("/") == 2 and ".." not in rel.split("/")


@given(st.lists(st.text(min_size=1, max_size=60), min_size=2, max_size=50, unique=True))
@settings(max_examples=200, deadline=None)
def test_object_paths_never_collide(keys):
    assert len({object_relpath(k) for k in keys}) == len(keys)


def test_prefix_end():
    assert prefix_end("a/") == "a0"
    assert prefix_end("") is None
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\ud7ff") == "\ue000"


# --- listing -----------------------------------------------------------------------------


def naive_list(keys, prefix, delimiter, marker, max_keys):
    """The reference model: walk every key in UTF-8 byte order."""
    entries = []
    for key in sorted(keys, key=lambda k: k.encode()):
        if not key.startswith(prefix):
            continue
        if delimiter and delimiter in key[len(prefix):]:
            common = key[: key.index(delimiter, len(prefix)) + len(delimiter)]
            if common <= marker:
                continue
            if entries and entries[-1] == ("p", common):
                continue
            entries.append(("p", common))
        else:
            if key <= marker:
                continue
            entries.append(("k", key))
    page = entries[:max_keys] if max_keys > 0 else []
    truncated = max_keys > 0 and len(entries) > max_keys
    return ([v for t, v in page if t == "k"], [v for t, v in page if t == "p"], truncated,
            page[-1][1] if truncated else None)


CASES = [
    (["a", "a/b", "a/c/d", "b"], "", "/", "", 1000),
    (["a", "a/b", "a/c/d", "b"], "a/", "/", "", 1000),
    (["a", "a/b", "a/c/d", "b"], "", "/", "a/", 1000),
    (["a", "a/b", "a/c/d", "b"], "", "/", "a/b", 1000),
    (["a", "a/b", "a/c/d", "b"], "", "", "", 2),
    (["a", "a/b", "a/c/d", "b"], "", "/", "", 1),
    (["a", "b"], "", "", "", 0),
    (["a//b", "a/b", "a/"], "a/", "/", "", 10),
    (["x1", "x2", "y"], "x", "", "x1", 10),
    (["k"], "zz", "", "", 10),
    (["é", "e", "z", "中"], "", "", "e", 10),
    (["a-b-c", "a-b-d", "a-c"], "a-", "-", "", 10),
    (["dir/", "dir/a", "dir/sub/"], "dir/", "/", "", 10),
]


@pytest.mark.parametrize("keys, prefix, delimiter, marker, max_keys", CASES)
def test_list_keys_cases(keys, prefix, delimiter, marker, max_keys):
    result = list_keys(sorted(keys), prefix, delimiter, marker, max_keys)
    assert (result.keys, result.common_prefixes, result.is_truncated, result.next_marker) == naive_list(
        keys, prefix, delimiter, marker, max_keys)


_alphabet = st.sampled_from(["a", "b", "/", "-", "é", "中", "\U0001f600"])


@given(
    keys=st.lists(st.text(_alphabet, min_size=1, max_size=6), max_size=40, unique=True),
    prefix=st.text(_alphabet, max_size=2),
    delimiter=st.sampled_from(["", "/", "-", "ab"]),
    marker=st.text(_alphabet, max_size=3),
    max_keys=st.integers(0, 8),
)
@settings(max_examples=400, deadline=None)
def test_list_keys_matches_model(keys, prefix, delimiter, marker, max_keys):
    result = list_keys(sorted(keys), prefix, delimiter, marker, max_keys)
    assert (result.keys, result.common_prefixes, result.is_truncated, result.next_marker) == naive_list(
        keys, prefix, delimiter, marker, max_keys)


@given(keys=st.lists(st.text(_alphabet, min_size=1, max_size=6), max_size=40, unique=True),
       delimiter=st.sampled_from(["", "/"]), page=st.integers(1, 5))
@settings(max_examples=200, deadline=None)
def test_paging_visits_everything_once(keys, delimiter, page):
    everything = list_keys(sorted(keys), "", delimiter, "", 10_000)
    seen_keys, seen_prefixes, marker = [], [], ""
    while True:
        result = list_keys(sorted(keys), "", delimiter, marker, page)
        seen_keys += result.keys
        seen_prefixes += result.common_prefixes
        if not result.is_truncated:
            break
        marker = result.next_marker
    assert seen_keys == everything.keys and seen_prefixes == everything.common_prefixes


def test_list_keys_large_index_is_fast():
    import time

    keys = sorted(f"dir{i % 100:03d}/file{i:06d}" for i in range(50_000))
    started = time.perf_counter()
    for _ in range(20):
        result = list_keys(keys, "dir050/", "/", "dir050/file000300", 1000)
        assert len(result.keys) == 1000 - 0 or result.is_truncated is False
        top = list_keys(keys, "", "/", "", 1000)
        assert len(top.common_prefixes) == 100
    assert time.perf_counter() - started < 2.0


# --- ranges and conditionals -------------------------------------------------------------


@pytest.mark.parametrize(
    "header, size, expected",
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("bytes=10-", 10, "invalid"),
        ("bytes=10-20", 10, "invalid"),
        ("bytes=-0", 10, "invalid"),
        ("bytes=0-", 0, "invalid"),
        ("bytes=-1", 0, "invalid"),
        ("bytes=4-2", 10, None),
        ("bytes=0-1,3-4", 10, None),
        ("pages=1-2", 10, None),
        ("bytes=-", 10, None),
    ],
)
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


def test_check_conditions():
    record = ObjectRecord(key="k", size=1, etag="abc", crc64=0, last_modified=1_700_000_000.5)
    when = "Tue, 14 Nov 2023 22:13:20 GMT"  # == int(last_modified)
    assert check_conditions({}, record) is None
    assert check_conditions({"if-match": '"abc"'}, record) is None
    assert check_conditions({"if-match": '"x", "abc"'}, record) is None
    assert check_conditions({"if-match": '"x"'}, record) == 412
    assert check_conditions({"if-none-match": '"abc"'}, record) == 304
    assert check_conditions({"if-none-match": "*"}, record) == 304
    assert check_conditions({"if-modified-since": when}, record) == 304
    assert check_conditions({"if-unmodified-since": when}, record) is None
    assert check_conditions({"if-unmodified-since": "Mon, 13 Nov 2023 00:00:00 GMT"}, record) == 412
    assert check_conditions({"if-unmodified-since": "garbage"}, record) is None
    assert check_conditions({"x-cos-copy-source-if-match": '"no"'}, record, "x-cos-copy-source-") == 412


@pytest.mark.parametrize(
    "value, expected",
    [
        ("examplebucket-1250000000.cos.ap-guangzhou.myqcloud.com/a%20b/c", ("examplebucket-1250000000", "a b/c")),
        ("/examplebucket-1250000000/a%2Bb+c", ("examplebucket-1250000000", "a+b+c")),
        ("examplebucket-1250000000.cos.ap-beijing.myqcloud.com/k?versionId=1", ("examplebucket-1250000000", "k")),
        ("127.0.0.1:9000/examplebucket-1250000000/k", ("examplebucket-1250000000", "k")),
        ("http://b-1.cos.x.com/%E4%B8%AD", ("b-1", "中")),
    ],
)
def test_parse_copy_source(value, expected):
    assert parse_copy_source(value) == expected


def test_select_uploads():
    uploads = [Upload(f"id{i}", key, 0.0, "t", {}, "STANDARD") for i, key in enumerate(["a/1", "a/2", "b", "b", "c"])]
    chosen, prefixes, truncated = select_uploads(uploads, "", "", "", "", 2)
    assert [u.key for u in chosen] == ["a/1", "a/2"] and truncated
    chosen, prefixes, truncated = select_uploads(uploads, "", "", "b", "id2", 10)
    assert [(u.key, u.upload_id) for u in chosen] == [("b", "id3"), ("c", "id4")] and not truncated
    chosen, prefixes, truncated = select_uploads(uploads, "", "/", "", "", 10)
    assert prefixes == ["a/"] and [u.key for u in chosen] == ["b", "b", "c"]


def test_record_json_roundtrip():
    record = ObjectRecord(key="ü/\x01", size=3, etag="e", crc64=2**64 - 1, last_modified=1.5,
                          headers={"x-cos-meta-a": "b"}, appendable=True, parts=3)
    assert ObjectRecord.from_json(record.to_json()) == record
    assert os.sep not in object_relpath(record.key).replace("/", "")


_PIECES = st.one_of(st.sampled_from([0, 1, 100, 4095, 4096, 5000, 20000]).map(bytes),
                    st.binary(min_size=1, max_size=5000))


@settings(max_examples=150, deadline=None)
@given(lead=st.integers(0, 5000), pieces=st.lists(_PIECES, min_size=1, max_size=8),
       cuts=st.lists(st.integers(1, 9000), min_size=1, max_size=20))
def test_sparse_writes_and_copies_keep_every_byte(tmp_path_factory, lead, pieces, cuts):
    """Whatever the chunking and wherever the zeros fall, the bytes written sparse (and copied
    hole-preserving) read back as they were sent."""
    from cosfs.server.storage import _copy_range, _write_sparse

    data = b"".join(pieces)
    chunks, at = [], 0
    for n in cuts * (len(data) // sum(cuts) + 1):
        if at >= len(data):
            break
        chunks.append(data[at:at + n])
        at += n
    folder = tmp_path_factory.mktemp("sparse")
    fd = os.open(folder / "a", os.O_RDWR | os.O_CREAT)
    copy = os.open(folder / "b", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * lead)
        _write_sparse(fd, chunks)
        os.write(fd, b"END")
        assert os.pread(fd, len(data) + 3, lead) == data + b"END"
        _copy_range(fd, copy, lead, len(data) + 3)
        assert os.pread(copy, len(data) + 3, 0) == data + b"END"
    finally:
        os.close(fd)
        os.close(copy)
