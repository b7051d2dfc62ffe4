"""MemoryStore: COS listing semantics, multipart rules, op counts, failure injection, and parity
with CosClient -> `cosfs serve` for the same sequence of operations."""

from __future__ import annotations

import dataclasses

import pytest

from cosfs.cos import crc64, rules
from cosfs.cos.memory import MemoryStore
from cosfs.cos.store import MIN_PART_BYTES, ListPage, ObjectStore, WriteOptions
from cosfs.errors import CosError, NotFound, Stale, TransientError

from .conftest import client_for

KEYS = ["a", "a/", "a/b", "a/b/c", "a/c", "a b", "a+b", "b/x", "b/y/z", "c", "d/", "d/e", "目录/文件", "z/1", "z/2"]

LISTINGS = [
    dict(prefix="", delimiter=""),
    dict(prefix="", delimiter="/"),
    dict(prefix="a/", delimiter="/"),
    dict(prefix="a", delimiter="/"),
    dict(prefix="b/", delimiter=""),
    dict(prefix="", delimiter="/", max_keys=2),
    dict(prefix="", delimiter="/", marker="a/"),
    dict(prefix="", delimiter="/", marker="b/x", max_keys=3),
    dict(prefix="", delimiter="", marker="a/b", max_keys=4),
    dict(prefix="z/", delimiter="/", max_keys=1),
    dict(prefix="nothing", delimiter="/"),
    dict(prefix="目", delimiter="/"),
]


def shape(page: ListPage):
    return ([e.key for e in page.entries], list(page.common_prefixes), page.is_truncated, page.next_marker)


async def fill(store: ObjectStore) -> None:
    for key in KEYS:
        await store.put_object(key, key.encode())


async def all_pages(store: ObjectStore, prefix: str = "", delimiter: str = ""):
    return [shape(page) async for page in store.list_all(prefix, delimiter=delimiter)]


async def test_listing_semantics():
    store = MemoryStore()
    await fill(store)
    page = await store.list_objects(delimiter="/")
    assert [e.key for e in page.entries] == ["a", "a b", "a+b", "c"]
    assert page.common_prefixes == ("a/", "b/", "d/", "z/", "目录/")
    page = await store.list_objects("a/", delimiter="/")
    assert [e.key for e in page.entries] == ["a/", "a/b", "a/c"] and page.common_prefixes == ("a/b/",)
    # UTF-8 byte order: ' ' < '+' < '/'.
    page = await store.list_objects(delimiter="/", max_keys=2)
    assert shape(page) == (["a", "a b"], [], True, "a b")
    page = await store.list_objects(delimiter="/", marker="a+b", max_keys=2)
    assert shape(page) == ([], ["a/", "b/"], True, "b/")
    # A marker equal to a common prefix skips everything under it.
    page = await store.list_objects(delimiter="/", marker="a/", max_keys=3)
    assert shape(page) == (["c"], ["b/", "d/"], True, "d/")
    pages = await all_pages(store, delimiter="/")
    assert [k for p in pages for k in p[0]] == ["a", "a b", "a+b", "c"]
    everything = [k for p in await all_pages(store) for k in p[0]]
    assert everything == sorted(KEYS, key=lambda k: k.encode())
    entry = (await store.list_objects("c")).entries[0]
    assert entry.size_bytes == 1 and entry.etag == "4a8a08f09d37b73795649038408b5f33"
    with pytest.raises(ValueError):
        await store.list_objects(max_keys=0)


async def test_paging_over_a_thousand():
    store = MemoryStore()
    for i in range(2500):
        await store.put_object(f"k/{i:05d}", b"")
    pages = await all_pages(store, "k/", "/")
    assert [len(p[0]) for p in pages] == [1000, 1000, 500]
    assert pages[0][3] == "k/00999"
    assert store.counts["list_objects"] == 3


async def test_objects_and_conditions():
    store = MemoryStore(clock=lambda: 1234.0)
    put = await store.put_object("k", b"hello", WriteOptions(content_type="text/plain", user_meta={"Mode": "1"}))
    assert put.crc64 == crc64.crc64(b"hello")
    meta = await store.head_object("k")
    assert meta.user_meta == {"mode": "1"} and meta.last_modified_s == 1234.0 and meta.content_type == "text/plain"
    assert (await store.get_object("k", byte_range=(1, 2)))[1] == b"el"
    assert (await store.get_object("k", byte_range=(10, 20)))[1] == b""
    with pytest.raises(Stale):
        await store.get_object("k", if_match="nope")
    async with store.open_object("k") as (meta, chunks):
        assert b"".join([c async for c in chunks]) == b"hello"
    with pytest.raises(NotFound):
        await store.head_object("missing")
    await store.delete_object("missing")
    copied = await store.copy_object("k", "k2")
    assert copied.etag == put.etag and (await store.head_object("k2")).user_meta == {"mode": "1"}
    with pytest.raises(CosError):
        await store.copy_object("k", "k")
    await store.copy_object("k", "k", replace_metadata=WriteOptions(user_meta={"mode": "2"}))
    assert (await store.head_object("k")).user_meta == {"mode": "2"}
    result = await store.delete_objects(["k", "k2", "never"])
    assert result.deleted == ("k", "k2", "never") and store.keys() == []


async def test_append():
    store = MemoryStore()
    assert (await store.append_object("log", 0, b"ab")).next_position == 2
    assert (await store.append_object("log", 2, b"cd")).next_position == 4
    assert (await store.get_object("log"))[1] == b"abcd" and (await store.head_object("log")).appendable
    with pytest.raises(CosError) as info:
        await store.append_object("log", 1, b"x")
    assert info.value.code == "AppendPositionErr"
    await store.put_object("plain", b"x")
    with pytest.raises(CosError) as info:
        await store.append_object("plain", 1, b"x")
    assert info.value.code == "ObjectNotAppendable"


async def test_multipart_rules():
    store = MemoryStore()
    big = b"x" * MIN_PART_BYTES
    await store.put_object("src", b"0123456789" * 200_000)
    upload = await store.create_multipart_upload("mp", WriteOptions(user_meta={"mode": "33188"}))
    p1 = await store.upload_part("mp", upload, 1, big)
    p2 = await store.upload_part_copy("mp", upload, 2, "src", (0, MIN_PART_BYTES - 1))
    p3 = await store.upload_part("mp", upload, 3, b"tail")
    assert [p.part_number for p in await store.list_parts("mp", upload)] == [1, 2, 3]
    assert [u.upload_id for u in await store.list_multipart_uploads()] == [upload]
    with pytest.raises(CosError) as info:
        await store.complete_multipart_upload("mp", upload, [p2, p1, p3])
    assert info.value.code == "InvalidPartOrder"
    small = await store.upload_part("mp", upload, 2, b"small")
    with pytest.raises(CosError) as info:
        await store.complete_multipart_upload("mp", upload, [p1, small, p3])
    assert info.value.code == "EntityTooSmall"
    with pytest.raises(CosError) as info:
        await store.complete_multipart_upload("mp", upload, [p1, p2, p3])  # p2 was overwritten
    assert info.value.code == "InvalidPart"
    p2 = await store.upload_part_copy("mp", upload, 2, "src", (0, MIN_PART_BYTES - 1))
    result = await store.complete_multipart_upload("mp", upload, [p1, p2, p3])
    data = big + (b"0123456789" * 200_000)[:MIN_PART_BYTES] + b"tail"
    assert result.etag.endswith("-3") and result.crc64 == crc64.crc64(data)
    meta, body = await store.get_object("mp")
    assert body == data and meta.user_meta == {"mode": "33188"}
    assert store.pending_uploads() == 0
    with pytest.raises(NotFound):
        await store.upload_part("mp", upload, 1, b"x")
    other = await store.create_multipart_upload("other")
    await store.abort_multipart_upload("other", other)
    with pytest.raises(NotFound):
        await store.abort_multipart_upload("other", other)


async def test_counts_and_failure_injection():
    store = MemoryStore()
    await store.put_object("k", b"v")
    store.fail_next("head_object", TransientError("boom"), times=2)
    for _ in range(2):
        with pytest.raises(TransientError):
            await store.head_object("k")
    assert (await store.head_object("k")).size_bytes == 1
    assert store.counts["head_object"] == 3 and store.counts["put_object"] == 1
    store.fail_next("get_object", NotFound("gone"))
    with pytest.raises(NotFound):
        await store.get_object("k")
    assert (await store.get_object("k"))[1] == b"v"


async def run_sequence(store: ObjectStore):
    """The same operations on any store; returns everything observable through listings."""
    await fill(store)
    await store.delete_object("a+b")
    await store.copy_object("b/x", "b/x2")
    await store.delete_objects(["z/1", "never-existed"])
    upload = await store.create_multipart_upload("m/p")
    part = await store.upload_part("m/p", upload, 1, b"part")
    await store.complete_multipart_upload("m/p", upload, [part])
    await store.append_object("log", 0, b"12")
    await store.append_object("log", 2, b"34")
    observed = []
    for listing in LISTINGS:
        page = await store.list_objects(
            listing["prefix"], delimiter=listing["delimiter"], marker=listing.get("marker", ""),
            max_keys=listing.get("max_keys", 1000))
        observed.append((listing, shape(page), [e.size_bytes for e in page.entries]))
    observed.append(("all", await all_pages(store, delimiter="/"), None))
    observed.append(("sizes", [(await store.head_object(k)).size_bytes for k in ("log", "m/p", "b/x2")], None))
    return observed


async def test_parity_with_server(cos_server):
    memory = await run_sequence(MemoryStore())
    async with client_for(cos_server) as client:
        served = await run_sequence(client)
    for mine, theirs in zip(memory, served, strict=True):
        assert mine == theirs


# --- one source of COS rules (cosfs.cos.rules) -----------------------------------------------------


async def test_memory_refuses_what_cos_refuses():
    """The in-memory store applies the rules `cosfs serve` applies (it used to accept these)."""
    store = MemoryStore()
    refusals = [
        (store.put_object("k" * 851, b"x"), "KeyTooLong"),
        (store.put_object("meta", b"x", WriteOptions(user_meta={"m": "v" * 2048})), "MetadataTooLarge"),
        (store.put_object("class", b"x", WriteOptions(storage_class="GLACIER")), "InvalidArgument"),
        (store.put_object("acl", b"x", WriteOptions(acl="authenticated-read")), "InvalidArgument"),
        (store.create_multipart_upload("k" * 851), "KeyTooLong"),
    ]
    for call, code in refusals:
        with pytest.raises(CosError) as info:
            await call
        assert info.value.code == code
    assert store.keys() == []
    upload = await store.create_multipart_upload("mp")
    await store.put_object("src", b"source")
    with pytest.raises(CosError) as info:
        await store.upload_part_copy("mp", upload, 10_001, "src")
    assert info.value.code == "InvalidArgument"


async def test_memory_reads_etags_as_cos_does():
    store = MemoryStore()
    put = await store.put_object("k", b"hello")
    for header in (f'W/"{put.etag}"', f'"other", "{put.etag}"', put.etag.upper(), "*"):
        assert (await store.get_object("k", if_match=header))[1] == b"hello"
    upload = await store.create_multipart_upload("mp")
    part = await store.upload_part("mp", upload, 1, b"only part")
    shouting = dataclasses.replace(part, etag=f'"{part.etag.upper()}"')
    assert (await store.complete_multipart_upload("mp", upload, [shouting])).etag == rules.multipart_etag([part.etag])


async def test_appendable_etag_is_the_rules_one():
    store = MemoryStore()
    await store.append_object("log", 0, b"ab")
    result = await store.append_object("log", 2, b"cd")
    assert result.etag == rules.append_etag(crc64.crc64(b"abcd"), 4)


async def run_refusals(store: ObjectStore) -> list[tuple[str, str | None]]:
    """The same refusals on any store: (what, COS error code or None if accepted)."""
    outcomes = []

    async def attempt(what: str, call) -> None:
        try:
            await call
        except CosError as exc:
            outcomes.append((what, exc.code))
        else:
            outcomes.append((what, None))

    await attempt("meta 2KB", store.put_object("meta", b"x", WriteOptions(user_meta={"m": "v" * 2046})))
    await attempt("meta > 2KB", store.put_object("meta", b"x", WriteOptions(user_meta={"m": "v" * 2048})))
    await attempt("append 0", store.append_object("log", 0, b"ab"))
    await attempt("append gap", store.append_object("log", 5, b"x"))
    await attempt("append plain", store.append_object("meta", 1, b"x"))
    await attempt("self copy", store.copy_object("meta", "meta"))
    upload = await store.create_multipart_upload("mp")
    p1 = await store.upload_part("mp", upload, 1, b"small")
    p2 = await store.upload_part("mp", upload, 2, b"tail")
    await attempt("small part", store.complete_multipart_upload("mp", upload, [p1, p2]))
    # (not the order of parts: CosClient sorts them before it sends Complete)
    await attempt("etag", store.complete_multipart_upload("mp", upload, [dataclasses.replace(p2, etag="0" * 32)]))
    await attempt("complete", store.complete_multipart_upload("mp", upload, [p2]))
    await attempt("upload gone", store.upload_part("mp", upload, 1, b"x"))
    return outcomes


async def test_refusals_match_the_server(cos_server):
    memory = await run_refusals(MemoryStore())
    async with client_for(cos_server) as client:
        served = await run_refusals(client)
    assert memory == served
    assert [code for _, code in memory] == [None, "MetadataTooLarge", None, "AppendPositionErr",
                                            "ObjectNotAppendable", "InvalidRequest", "EntityTooSmall",
                                            "InvalidPart", None, "NoSuchUpload"]
