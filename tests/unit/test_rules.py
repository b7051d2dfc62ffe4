"""cosfs.cos.rules: the COS rules the in-memory store and `cosfs serve` share, on fixed vectors.

(Property-based tests of listing live in tests/server/test_units.py. The rules only the server
applies have their vectors next to it: tests/server/test_request_rules.py and
tests/server/test_acl_cors_rules.py.)
"""

from __future__ import annotations

import dataclasses

import pytest

from cosfs import errors
from cosfs.cos import rules, xml

MiB = 1024 * 1024


def code_of(excinfo) -> str:
    return excinfo.value.code


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code, status, cls", [
    ("NoSuchKey", 404, errors.CosNotFound),
    ("NoSuchUpload", 404, errors.CosNotFound),
    ("NoSuchCORSConfiguration", 404, errors.CosNotFound),
    ("AccessDenied", 403, errors.CosAccessDenied),
    ("AccessForbidden", 403, errors.CosAccessDenied),
    ("PreconditionFailed", 412, errors.CosPreconditionFailed),
    ("AppendPositionErr", 409, errors.CosConflict),
    ("ObjectNotAppendable", 409, errors.CosConflict),
    ("EntityTooLarge", 400, errors.CosTooLarge),
    ("InvalidRange", 416, errors.CosError),
    ("MissingContentLength", 411, errors.CosError),
    ("MethodNotAllowed", 405, errors.CosUnsupported),
    ("NotImplemented", 501, errors.CosUnsupported),  # not retried: the server will not do it
    ("SlowDown", 503, errors.CosTransient),
    ("InternalError", 500, errors.CosTransient),
    ("KmsInternalException", 500, errors.CosTransient),
    ("SomethingNew", 400, errors.CosError),
    ("SomethingInternalNew", 500, errors.CosTransient),
])
def test_status_and_typed_error(code, status, cls):
    assert rules.status_for(code) == status
    exc = rules.error(code, "message", "res")
    assert isinstance(exc, cls)
    assert (exc.status, exc.code, exc.message, exc.resource) == (status, code, "message", "res")


def test_one_cos_error_hierarchy():
    from cosfs.server.common import CosError as ServerCosError

    assert issubclass(ServerCosError, errors.CosError)
    exc = ServerCosError("InvalidRange", "no", headers=[("Content-Range", "bytes */3")])
    assert (exc.status, exc.code, exc.headers) == (416, "InvalidRange", [("Content-Range", "bytes */3")])


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, ok", [
    ("examplebucket-1250000000", True), ("a-1", True), ("a-b-c-12", True), ("-a-1", False), ("a--1", False),
    ("a-b-1", True),
    ("Upper-1", False), ("nodash", False), ("a_b-1", False), ("a" * 50 + "-1", True), ("a" * 51 + "-1", False),
])
def test_bucket_names(name, ok):
    assert bool(rules.BUCKET_RE.fullmatch(name)) is ok


def test_keys():
    rules.check_key("x" * 850)
    rules.check_key("中" * 283)  # 849 bytes
    with pytest.raises(errors.CosError) as info:
        rules.check_key("中" * 284)  # 852 bytes
    assert code_of(info) == "KeyTooLong"
    with pytest.raises(errors.CosError) as info:
        rules.check_key("a\x00b")
    assert code_of(info) == "InvalidObjectName"


# --- listing -----------------------------------------------------------------------------------

KEYS = sorted(["a", "a/", "a/b", "a/b/c", "a/c", "a b", "a+b", "b/x", "b/y/z", "c", "d/", "d/e", "目录/文件"])


@pytest.mark.parametrize("prefix, delimiter, marker, max_keys, expected", [
    ("", "/", "", 1000, (["a", "a b", "a+b", "c"], ["a/", "b/", "d/", "目录/"], False, None)),
    ("a/", "/", "", 1000, (["a/", "a/b", "a/c"], ["a/b/"], False, None)),
    ("", "/", "", 3, (["a", "a b", "a+b"], [], True, "a+b")),
    ("", "/", "a+b", 2, ([], ["a/", "b/"], True, "b/")),
    ("", "/", "a/", 1000, (["c"], ["b/", "d/", "目录/"], False, None)),
    ("", "", "b/y/z", 2, (["c", "d/"], [], True, "d/")),
    ("目", "/", "", 10, ([], ["目录/"], False, None)),
    ("zzz", "", "", 10, ([], [], False, None)),
    ("", "", "", 0, ([], [], False, None)),
])
def test_list_keys_vectors(prefix, delimiter, marker, max_keys, expected):
    result = rules.list_keys(KEYS, prefix, delimiter, marker, max_keys)
    assert (result.keys, result.common_prefixes, result.is_truncated, result.next_marker) == expected


# --- ETags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("header, etag, match", [
    ('"abc"', "abc", True), ("abc", "abc", True), ('W/"abc"', "abc", True), ('"ABC"', "abc", True),
    ('"x", "abc"', "abc", True), ("*", "abc", True), ('"x"', "abc", False), ("", "abc", False),
])
def test_etag_matches(header, etag, match):
    assert rules.etag_matches(header, etag) is match


# --- writes --------------------------------------------------------------------------------------


def test_user_meta_limit():
    rules.check_user_meta({"k": "v" * 2047})
    with pytest.raises(errors.CosError) as info:
        rules.check_user_meta({"k": "v" * 2048})
    assert code_of(info) == "MetadataTooLarge"
    with pytest.raises(errors.CosError) as info:
        rules.check_user_meta({"": "v"})
    assert code_of(info) == "InvalidArgument"


def test_storage_classes():
    assert rules.storage_class(None) == "STANDARD"
    assert rules.storage_class("standard_ia") == "STANDARD_IA"
    with pytest.raises(errors.CosError):
        rules.storage_class("GLACIER")


def test_check_copy():
    rules.check_copy(False, False, 10)
    rules.check_copy(True, True, 10)
    with pytest.raises(errors.CosError) as info:
        rules.check_copy(True, False, 10)
    assert code_of(info) == "InvalidRequest"
    with pytest.raises(errors.CosError):
        rules.check_copy(False, False, 5 * 1024**3 + 1)


# --- multipart -----------------------------------------------------------------------------------


@dataclasses.dataclass
class _P:
    etag: str
    size: int


def test_check_complete():
    parts = {1: _P("aa", MiB), 2: _P("bb", 5), 3: _P("cc", MiB - 1)}
    assert rules.check_complete(parts, [(1, '"AA"'), (2, "bb")]) == [parts[1], parts[2]]
    for wanted, code in [
        ([], "MalformedXML"),
        ([(2, "bb"), (1, "aa")], "InvalidPartOrder"),
        ([(1, "aa"), (1, "aa")], "InvalidPartOrder"),
        ([(1, "aa"), (4, "dd")], "InvalidPart"),
        ([(1, "ab")], "InvalidPart"),
        ([(3, "cc"), (4, "dd")], "EntityTooSmall"),  # parts are checked in order
        ([(2, "bb"), (3, "cc")], "EntityTooSmall"),
    ]:
        with pytest.raises(errors.CosError) as info:
            rules.check_complete(parts, wanted)
        assert code_of(info) == code, wanted


def test_multipart_etag_vector():
    assert rules.multipart_etag(["108f528eb63b65e734f27ae331f5ffaa", "ee8de918d05640145b18f70f4c3aa602"]) == \
        "c0169b363e1e5e911eb9f2b4f1c8c17c-2"


def test_part_numbers():
    rules.check_part_number(1)
    rules.check_part_number(10_000)
    for bad in (0, 10_001, -1):
        with pytest.raises(errors.CosError):
            rules.check_part_number(bad)


# --- append --------------------------------------------------------------------------------------


@pytest.mark.parametrize("position, size, appendable, code", [
    (0, None, False, None), (3, None, False, "AppendPositionErr"), (5, 5, True, None),
    (4, 5, True, "AppendPositionErr"),
    (5, 5, False, "ObjectNotAppendable"), (-1, None, False, "InvalidArgument"),
])
def test_check_append(position, size, appendable, code):
    if code is None:
        rules.check_append(position, size, appendable)
    else:
        with pytest.raises(errors.CosError) as info:
            rules.check_append(position, size, appendable)
        assert code_of(info) == code


def test_append_etag_vector():
    assert rules.append_etag(16749565679157681890, 16) == "0c9cccb700f4c5e6f6fe6490723c491d"


# --- canned ACLs ---------------------------------------------------------------------------------


def test_check_canned_acl():
    assert rules.check_canned_acl(" Public-Read ", for_object=False) == "public-read"
    assert rules.check_canned_acl("default", for_object=True) == "default"
    for value, for_object in [("default", False), ("authenticated-read", True), ("", True)]:
        with pytest.raises(errors.CosError) as info:
            rules.check_canned_acl(value, for_object=for_object)
        assert (info.value.status, code_of(info)) == (400, "InvalidArgument")
    assert info.value.message == "x-cos-acl must be one of default, private, public-read, public-read-write."


def test_rules_are_pure():
    """The rules module does no I/O: it imports nothing that touches files, sockets or trio."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(rules))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"os", "socket", "trio", "httpx", "pathlib", "shutil", "subprocess", "time"}
    assert xml.parse  # XML reading goes through the safe parser of cosfs.cos.xml


def test_in_memory_store_does_not_import_the_server():
    """The server's own rules (cosfs.server.request_rules, acl, cors) stay out of the in-memory store."""
    import subprocess
    import sys

    code = ("import sys, cosfs.cos.memory, cosfs.cos.rules; "
            "print(sorted(m for m in sys.modules if m.startswith('cosfs.server')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
