"""cosfs.server.request_rules: the request-side COS rules only `cosfs serve` applies, on fixed
vectors (conditionals, ranges, the metadata directive, the Complete and Delete XML bodies, List
Multipart Uploads paging), and the purity of the server's rule modules.

(More cases of ranges, conditionals and upload paging are in tests/server/test_units.py, fuzzing
of the XML readers in tests/server/test_fuzz.py, the ACL and CORS vectors in
tests/server/test_acl_cors_rules.py.)
"""

from __future__ import annotations

import dataclasses

import pytest

from cosfs import errors
from cosfs.cos import xml
from cosfs.server import acl, cors, request_rules
from cosfs.server.request_rules import (
    check_conditions,
    parse_complete,
    parse_delete,
    parse_range,
    replaces_metadata,
    select_uploads,
)


def code_of(excinfo) -> str:
    return excinfo.value.code


# --- uploads -------------------------------------------------------------------------------------


@dataclasses.dataclass
class _U:
    key: str
    upload_id: str


def test_select_uploads_vectors():
    uploads = [_U("a/1", "2"), _U("a/1", "1"), _U("b", "9"), _U("c/d/e", "3")]
    chosen, prefixes, truncated = select_uploads(uploads, "", "/", "", "", 10)
    assert [(u.key, u.upload_id) for u in chosen] == [("b", "9")] and prefixes == ["a/", "c/"] and not truncated
    chosen, prefixes, truncated = select_uploads(uploads, "a/", "", "a/1", "1", 1)
    assert [(u.key, u.upload_id) for u in chosen] == [("a/1", "2")] and not truncated


# --- conditionals and ranges ---------------------------------------------------------------------


def test_conditions_vectors():
    modified = 1_700_000_000.5
    when = "Tue, 14 Nov 2023 22:13:20 GMT"
    assert check_conditions({}, "e", modified) is None
    assert check_conditions({"if-match": '"x"'}, "e", modified) == 412
    assert check_conditions({"if-match": '"e"', "if-unmodified-since": "Mon, 13 Nov 2023 00:00:00 GMT"},
                            "e", modified) is None  # If-Match wins
    assert check_conditions({"if-none-match": '"e"'}, "e", modified) == 304
    assert check_conditions({"if-modified-since": when}, "e", modified) == 304
    assert check_conditions({"if-none-match": '"x"', "if-modified-since": when}, "e", modified) is None
    assert check_conditions({"x-cos-copy-source-if-match": '"x"'}, "e", modified, "x-cos-copy-source-") == 412


@pytest.mark.parametrize("header, size, expected", [
    ("bytes=0-4", 10, (0, 4)), ("bytes=-3", 10, (7, 9)), ("bytes=8-100", 10, (8, 9)), ("bytes=10-", 10, "invalid"),
    ("bytes=0-1,3-4", 10, None), ("bytes=0-", 0, "invalid"), (None, 5, None),
])
def test_range_vectors(header, size, expected):
    assert parse_range(header, size) == expected


# --- copy ----------------------------------------------------------------------------------------


def test_metadata_directive():
    assert replaces_metadata(None) is False
    assert replaces_metadata("Copy") is False
    assert replaces_metadata("Replaced") is True and replaces_metadata("REPLACE") is True
    with pytest.raises(errors.CosError):
        replaces_metadata("Merge")


# --- XML bodies ----------------------------------------------------------------------------------


def test_parse_complete_and_delete():
    body = (b'<CompleteMultipartUpload xmlns="http://www.qcloud.com/document/product/436/7751">'
            b'<Part><PartNumber>1</PartNumber><ETag>"AbC"</ETag></Part>'
            b'<Part><PartNumber>2</PartNumber><Etag>def</Etag></Part></CompleteMultipartUpload>')
    assert parse_complete(body) == [(1, "abc"), (2, "def")]
    for bad in (b"<CompleteMultipartUpload/>", b"<Other/>", b"not xml",
                b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber></Part></CompleteMultipartUpload>"):
        with pytest.raises(errors.CosError) as info:
            parse_complete(bad)
        assert code_of(info) == "MalformedXML"
    keys, quiet = parse_delete(b"<Delete><Quiet>true</Quiet><Object><Key>a b</Key></Object></Delete>")
    assert keys == ["a b"] and quiet
    for bad in (b"<Delete/>", b"<Delete><Object/></Delete>", b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001
                + b"</Delete>"):
        with pytest.raises(errors.CosError) as info:
            parse_delete(bad)
        assert code_of(info) == "MalformedXML"


# --- purity ------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [request_rules, acl, cors], ids=lambda m: m.__name__.rpartition(".")[2])
def test_server_rules_are_pure(module):
    """The server's rule modules do no I/O either: they import nothing that touches files,
    sockets or trio, nor any other part of the server but `request_rules`."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(module))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name.split(".")[0] for name in imported} & {"os", "socket", "trio", "httpx", "pathlib", "shutil",
                                                            "subprocess", "time"}
    assert {name for name in imported if name.startswith("cosfs.server")} <= {"cosfs.server.request_rules"}
    assert xml.parse  # XML reading goes through the safe parser of cosfs.cos.xml
