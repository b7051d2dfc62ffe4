"""HTTP/1.1 framing of the client (cosfs/cos/http1.py) with fixed vectors: every response is
fed whole, byte by byte, and split in two at every position, and must frame the same."""

from __future__ import annotations

import pytest

from cosfs.cos.http1 import FramingError, ResponseReader, parse_head, request_head

# (name, method, wire bytes, status, body, reusable, leftover)
CORPUS = [
    ("content-length", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\nhello", 200, b"hello",
     True, b""),
    ("empty content-length", "PUT", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, b"", True, b""),
    ("chunked", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
     200, b"hello world", True, b""),
    ("chunked with extensions and trailers", "GET",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;name=value\r\nabc\r\nA\r\n0123456789\r\n"
     b"0;last\r\nx-cos-trailer: 1\r\nother: 2\r\n\r\n", 200, b"abc0123456789", True, b""),
    ("chunked, upper-case hex", "GET",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
     200, b"0123456789", True, b""),
    ("HEAD with a Content-Length", "HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n", 200, b"", True, b""),
    ("HEAD announcing chunks", "HEAD", b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n", 404, b"",
     True, b""),
    ("204 with a Content-Length", "DELETE", b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", 204, b"", True,
     b""),
    ("304 with a Content-Length", "GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", 304, b"", True,
     b""),
    ("100 Continue first", "PUT",
     b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", True, b""),
    ("Connection: close", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 200, b"ok",
     False, b""),
    ("HTTP/1.0", "GET", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False, b""),
    ("bytes after the response", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", 200, b"ok", False,
     b"EXTRA"),
    ("empty reason, odd spacing in values", "GET", b"HTTP/1.1 500 \r\nContent-Length:3 \r\nX-A:\t v \r\n\r\nabc",
     500, b"abc", True, b""),
]


def feeds(wire: bytes):
    yield "whole", [wire]
    yield "byte by byte", [wire[i:i + 1] for i in range(len(wire))]
    for cut in range(1, len(wire)):
        yield f"cut at {cut}", [wire[:cut], wire[cut:]]


@pytest.mark.parametrize("name,method,wire,status,body,reusable,leftover", CORPUS, ids=[c[0] for c in CORPUS])
def test_every_split_frames_the_same(name, method, wire, status, body, reusable, leftover):
    for how, pieces in feeds(wire):
        reader = ResponseReader(method)
        for piece in pieces:
            reader.feed(piece)
        assert reader.done, how
        assert reader.head is not None and reader.head.status == status, how
        assert bytes(reader.body) == body, how
        assert (reader.reusable, reader.leftover) == (reusable, leftover), how


@pytest.mark.parametrize("how", ["whole", "byte by byte"])
def test_a_body_to_the_connection_end(how):
    wire = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nall of it"
    reader = ResponseReader("GET")
    for piece in ([wire] if how == "whole" else [wire[i:i + 1] for i in range(len(wire))]):
        reader.feed(piece)
        assert not reader.done
    reader.feed(b"")  # the server closes
    assert (reader.done, bytes(reader.body), reader.reusable) == (True, b"all of it", False)
    unknown = ResponseReader("GET")
    unknown.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz")
    unknown.feed(b"")
    assert (bytes(unknown.body), unknown.reusable) == (b"zz", False)


@pytest.mark.parametrize("wire,why", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", "in the middle of the response"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "in the middle of the response"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "in the middle of the response"),
    (b"", "without a response"),
])
def test_the_connection_ending_early_is_an_error(wire, why):
    reader = ResponseReader("GET")
    if wire:
        reader.feed(wire)
    with pytest.raises(FramingError, match=why):
        reader.feed(b"")


@pytest.mark.parametrize("wire", [
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX",
    b"HTTP/1.1 200 OK\r\nX: " + b"y" * (70 * 1024),
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * (9 * 1024),
])
def test_bytes_that_are_not_a_response_are_refused(wire):
    with pytest.raises(FramingError):
        ResponseReader("GET").feed(wire)


def test_a_head_keeps_names_lower_cased_and_values_as_sent():
    head = parse_head(b"HTTP/1.1 206 Partial Content\r\nETag: \"abc\"\r\nX-Cos-Meta-Mode:  33188\r\nx-empty:")
    assert (head.status, head.reason, head.http_minor) == (206, "Partial Content", 1)
    assert head.headers == [(b"etag", b'"abc"'), (b"x-cos-meta-mode", b"33188"), (b"x-empty", b"")]


def test_request_heads_and_what_they_refuse():
    assert request_head("HEAD", "/a%20b?acl", [("host", "b.cos.local"), ("x-cos-meta-mode", "33188 ")]) == (
        b"HEAD /a%20b?acl HTTP/1.1\r\nhost: b.cos.local\r\nx-cos-meta-mode: 33188\r\n\r\n")
    for method, target, headers in [
        ("GET", "/x", [("x-cos-meta-a", "1\r\nx-injected: 2")]),
        ("GET", "/x", [("x-cos-meta-a", "nul\0")]),
        ("GET", "/x", [("bad name", "1")]),
        ("GE T", "/x", []),
        ("GET", "/x y", []),
        ("GET", "", []),
    ]:
        with pytest.raises(FramingError):
            request_head(method, target, headers)
