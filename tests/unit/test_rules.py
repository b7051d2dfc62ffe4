"""cosfs.cos.rules: the COS rules the in-memory store and `cosfs serve` share, on fixed vectors.

(Property-based tests of listing live in tests/server/test_units.py; fuzzing of the XML
readers in tests/server/test_fuzz.py.)
"""

from __future__ import annotations

import dataclasses

import pytest

from cosfs import errors
from cosfs.cos import rules, xml
from cosfs.cos.rules import Acl, CorsRule

MiB = 1024 * 1024
OWNER = "qcs::cam::uin/1250000000:uin/1250000000"


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
    assert isinstance(exc, cls) and (exc.status, exc.code, exc.message, exc.resource) == (status, code, "message", "res")


def test_one_cos_error_hierarchy():
    from cosfs.server.common import CosError as ServerCosError

    assert issubclass(ServerCosError, errors.CosError)
    exc = ServerCosError("InvalidRange", "no", headers=[("Content-Range", "bytes */3")])
    assert (exc.status, exc.code, exc.headers) == (416, "InvalidRange", [("Content-Range", "bytes */3")])


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, ok", [
    ("examplebucket-1250000000", True), ("a-1", True), ("a-b-c-12", True), ("-a-1", False), ("a--1", False), ("a-b-1", True),
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


@dataclasses.dataclass
class _U:
    key: str
    upload_id: str


def test_select_uploads_vectors():
    uploads = [_U("a/1", "2"), _U("a/1", "1"), _U("b", "9"), _U("c/d/e", "3")]
    chosen, prefixes, truncated = rules.select_uploads(uploads, "", "/", "", "", 10)
    assert [(u.key, u.upload_id) for u in chosen] == [("b", "9")] and prefixes == ["a/", "c/"] and not truncated
    chosen, prefixes, truncated = rules.select_uploads(uploads, "a/", "", "a/1", "1", 1)
    assert [(u.key, u.upload_id) for u in chosen] == [("a/1", "2")] and not truncated


# --- reads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("header, etag, match", [
    ('"abc"', "abc", True), ("abc", "abc", True), ('W/"abc"', "abc", True), ('"ABC"', "abc", True),
    ('"x", "abc"', "abc", True), ("*", "abc", True), ('"x"', "abc", False), ("", "abc", False),
])
def test_etag_matches(header, etag, match):
    assert rules.etag_matches(header, etag) is match


def test_conditions_vectors():
    modified = 1_700_000_000.5
    when = "Tue, 14 Nov 2023 22:13:20 GMT"
    assert rules.check_conditions({}, "e", modified) is None
    assert rules.check_conditions({"if-match": '"x"'}, "e", modified) == 412
    assert rules.check_conditions({"if-match": '"e"', "if-unmodified-since": "Mon, 13 Nov 2023 00:00:00 GMT"},
                                  "e", modified) is None  # If-Match wins
    assert rules.check_conditions({"if-none-match": '"e"'}, "e", modified) == 304
    assert rules.check_conditions({"if-modified-since": when}, "e", modified) == 304
    assert rules.check_conditions({"if-none-match": '"x"', "if-modified-since": when}, "e", modified) is None
    assert rules.check_conditions({"x-cos-copy-source-if-match": '"x"'}, "e", modified, "x-cos-copy-source-") == 412


@pytest.mark.parametrize("header, size, expected", [
    ("bytes=0-4", 10, (0, 4)), ("bytes=-3", 10, (7, 9)), ("bytes=8-100", 10, (8, 9)), ("bytes=10-", 10, "invalid"),
    ("bytes=0-1,3-4", 10, None), ("bytes=0-", 0, "invalid"), (None, 5, None),
])
def test_range_vectors(header, size, expected):
    assert rules.parse_range(header, size) == expected


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


def test_metadata_directive_and_copy():
    assert rules.replaces_metadata(None) is False
    assert rules.replaces_metadata("Copy") is False
    assert rules.replaces_metadata("Replaced") is True and rules.replaces_metadata("REPLACE") is True
    with pytest.raises(errors.CosError):
        rules.replaces_metadata("Merge")
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


def test_parse_complete_and_delete():
    body = (b'<CompleteMultipartUpload xmlns="http://www.qcloud.com/document/product/436/7751">'
            b'<Part><PartNumber>1</PartNumber><ETag>"AbC"</ETag></Part>'
            b'<Part><PartNumber>2</PartNumber><Etag>def</Etag></Part></CompleteMultipartUpload>')
    assert rules.parse_complete(body) == [(1, "abc"), (2, "def")]
    for bad in (b"<CompleteMultipartUpload/>", b"<Other/>", b"not xml",
                b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber></Part></CompleteMultipartUpload>"):
        with pytest.raises(errors.CosError) as info:
            rules.parse_complete(bad)
        assert code_of(info) == "MalformedXML"
    keys, quiet = rules.parse_delete(b"<Delete><Quiet>true</Quiet><Object><Key>a b</Key></Object></Delete>")
    assert keys == ["a b"] and quiet
    for bad in (b"<Delete/>", b"<Delete><Object/></Delete>", b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001
                + b"</Delete>"):
        with pytest.raises(errors.CosError) as info:
            rules.parse_delete(bad)
        assert code_of(info) == "MalformedXML"


# --- append --------------------------------------------------------------------------------------


@pytest.mark.parametrize("position, size, appendable, code", [
    (0, None, False, None), (3, None, False, "AppendPositionErr"), (5, 5, True, None), (4, 5, True, "AppendPositionErr"),
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


# --- ACL -----------------------------------------------------------------------------------------


def test_grantee_lists():
    assert rules.parse_grantees('id="qcs::cam::uin/1:uin/2",id="qcs::cam::uin/1:uin/3"') == [
        ("id", "qcs::cam::uin/1:uin/2"), ("id", "qcs::cam::uin/1:uin/3")]
    assert rules.parse_grantees(f' uri="{rules.ALL_USERS_URI}" ') == [("uri", rules.ALL_USERS_URI)]
    for bad in ("", "id=unquoted", 'name="x"', 'id="a" id="b"'):
        with pytest.raises(errors.CosError):
            rules.parse_grantees(bad)


def test_acl_from_headers():
    assert rules.acl_from_headers({}, for_object=True) is None
    assert rules.acl_from_headers({"x-cos-acl": "public-read"}, for_object=False) == Acl("public-read")
    assert rules.acl_from_headers({"x-cos-acl": "default"}, for_object=True) == Acl("default")
    with pytest.raises(errors.CosError):
        rules.acl_from_headers({"x-cos-acl": "default"}, for_object=False)
    with pytest.raises(errors.CosError):
        rules.acl_from_headers({"x-cos-acl": "authenticated-read"}, for_object=True)
    acl = rules.acl_from_headers({"x-cos-grant-read": 'id="qcs::cam::anyone:anyone"',
                                  "x-cos-grant-full-control": 'id="qcs::cam::uin/1:uin/1"'}, for_object=True)
    assert acl == Acl("private", (("READ", "id", "qcs::cam::anyone:anyone"),
                                  ("FULL_CONTROL", "id", "qcs::cam::uin/1:uin/1")))
    assert acl.public() == {"READ"}


def test_acl_document_vector_and_round_trip():
    acl = Acl("public-read", (("READ", "id", "qcs::cam::uin/1:uin/2"),))
    document = rules.acl_xml(acl, OWNER)
    assert document == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<AccessControlPolicy xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><Owner><ID>' + OWNER.encode()
        + b"</ID><DisplayName>" + OWNER.encode() + b"</DisplayName></Owner><AccessControlList>"
        b'<Grant><Grantee xsi:type="CanonicalUser"><ID>' + OWNER.encode() + b"</ID><DisplayName>" + OWNER.encode()
        + b"</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant>"
        b'<Grant><Grantee xsi:type="Group"><URI>http://cam.qcloud.com/groups/global/AllUsers</URI></Grantee>'
        b"<Permission>READ</Permission></Grant>"
        b'<Grant><Grantee xsi:type="CanonicalUser"><ID>qcs::cam::uin/1:uin/2</ID><DisplayName>qcs::cam::uin/1:uin/2'
        b"</DisplayName></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>")
    parsed = rules.parse_acl_xml(document, for_object=False)
    assert parsed.public() == {"READ"}
    assert ("READ", "id", "qcs::cam::uin/1:uin/2") in parsed.grants
    with pytest.raises(errors.CosError) as info:
        rules.parse_acl_xml(b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>x</ID></Grantee>"
                            b"<Permission>OWN</Permission></Grant></AccessControlList></AccessControlPolicy>",
                            for_object=True)
    assert code_of(info) == "MalformedACLError"


@pytest.mark.parametrize("bucket, obj, permission, allowed", [
    ("private", None, "READ", False),
    ("public-read", None, "READ", True),
    ("public-read", None, "WRITE", False),
    ("public-read-write", None, "WRITE", True),
    ("public-read", "default", "READ", True),      # default: as the bucket
    ("public-read", "private", "READ", False),     # the object's own ACL wins
    ("private", "public-read", "READ", True),
    ("private", "public-read-write", "READ", True),
    ("public-read", None, "READ_ACP", False),
])
def test_anonymous_access_table(bucket, obj, permission, allowed):
    assert rules.anonymous_may(permission, Acl(bucket), Acl(obj) if obj else None) is allowed


def test_anonymous_grants():
    everyone = Acl("private", (("FULL_CONTROL", "uri", rules.ALL_USERS_URI),))
    assert everyone.public() == set(rules.PERMISSIONS)
    assert Acl("private", (("READ", "id", "qcs::cam::uin/1:uin/2"),)).public() == set()
    assert Acl.from_json(everyone.to_json()) == everyone and Acl.from_json(None) is None


# --- CORS ----------------------------------------------------------------------------------------

CORS_DOC = (b"<CORSConfiguration><CORSRule><ID>r1</ID><AllowedOrigin>http://*.example.com</AllowedOrigin>"
            b"<AllowedMethod>get</AllowedMethod><AllowedMethod>PUT</AllowedMethod>"
            b"<AllowedHeader>x-cos-meta-*</AllowedHeader><AllowedHeader>Content-Type</AllowedHeader>"
            b"<ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule>"
            b"<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod></CORSRule>"
            b"</CORSConfiguration>")


def test_cors_document():
    cors = rules.parse_cors_xml(CORS_DOC)
    assert cors == (CorsRule(("http://*.example.com",), ("GET", "PUT"), ("x-cos-meta-*", "Content-Type"), ("ETag",),
                             600, "r1"),
                    CorsRule(("*",), ("HEAD",)))
    assert rules.parse_cors_xml(rules.cors_xml(cors)) == cors
    assert tuple(CorsRule.from_json(rule.to_json()) for rule in cors) == cors
    for bad, code in [
        (b"<CORSConfiguration/>", "MalformedXML"),
        (b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>",
         "MalformedXML"),
        (b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod>"
         b"</CORSRule></CORSConfiguration>", "InvalidArgument"),
        (b"<CORSConfiguration><CORSRule><AllowedOrigin>*.*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
         b"</CORSRule></CORSConfiguration>", "InvalidArgument"),
        (b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
         b"<MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule></CORSConfiguration>", "MalformedXML"),
    ]:
        with pytest.raises(errors.CosError) as info:
            rules.parse_cors_xml(bad)
        assert code_of(info) == code


def test_cors_matching_and_headers():
    cors = rules.parse_cors_xml(CORS_DOC)
    assert rules.cors_match(cors, "http://app.example.com", "GET") is cors[0]
    assert rules.cors_match(cors, "http://app.example.com", "GET", ["x-cos-meta-mode", "content-type"]) is cors[0]
    assert rules.cors_match(cors, "http://app.example.com", "GET", ["authorization"]) is None
    assert rules.cors_match(cors, "https://app.example.com", "GET") is None
    assert rules.cors_match(cors, "http://anything", "HEAD") is cors[1]
    assert rules.cors_match(cors, "http://anything", "DELETE") is None
    assert rules.preflight(cors, "http://app.example.com", "PUT", "X-Cos-Meta-Mode") == [
        ("Access-Control-Allow-Origin", "http://app.example.com"), ("Vary", "Origin"),
        ("Access-Control-Allow-Methods", "GET, PUT"), ("Access-Control-Allow-Headers", "x-cos-meta-mode"),
        ("Access-Control-Max-Age", "600"), ("Access-Control-Expose-Headers", "ETag")]
    assert rules.cors_headers(cors[1], "http://x", preflight=False) == [
        ("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "HEAD")]
    with pytest.raises(errors.CosError) as info:
        rules.preflight(cors, "http://evil.test", "GET", None)
    assert (info.value.status, code_of(info)) == (403, "AccessForbidden")
    with pytest.raises(errors.CosError) as info:
        rules.preflight(cors, None, "GET", None)
    assert info.value.status == 400
    with pytest.raises(errors.CosError):
        rules.preflight(None, "http://app.example.com", "GET", None)


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
