"""cosfs.server.acl and cosfs.server.cors: the ACL and CORS rules only `cosfs serve` applies,
on fixed vectors. (Round trips of their XML documents are fuzzed in tests/server/test_fuzz.py;
tests/server/test_acl_cors.py drives them through the official SDK.)
"""

from __future__ import annotations

import pytest

from cosfs import errors
from cosfs.server.acl import (
    ALL_USERS_URI,
    PERMISSIONS,
    Acl,
    acl_from_headers,
    acl_xml,
    anonymous_may,
    parse_acl_xml,
    parse_grantees,
)
from cosfs.server.cors import (
    CorsRule,
    cors_headers,
    cors_match,
    cors_xml,
    parse_cors_xml,
    preflight,
)

OWNER = "qcs::cam::uin/1250000000:uin/1250000000"


def code_of(excinfo) -> str:
    return excinfo.value.code


# --- ACL -----------------------------------------------------------------------------------------


def test_grantee_lists():
    assert parse_grantees('id="qcs::cam::uin/1:uin/2",id="qcs::cam::uin/1:uin/3"') == [
        ("id", "qcs::cam::uin/1:uin/2"), ("id", "qcs::cam::uin/1:uin/3")]
    assert parse_grantees(f' uri="{ALL_USERS_URI}" ') == [("uri", ALL_USERS_URI)]
    for bad in ("", "id=unquoted", 'name="x"', 'id="a" id="b"'):
        with pytest.raises(errors.CosError):
            parse_grantees(bad)


def test_acl_from_headers():
    assert acl_from_headers({}, for_object=True) is None
    assert acl_from_headers({"x-cos-acl": "public-read"}, for_object=False) == Acl("public-read")
    assert acl_from_headers({"x-cos-acl": "default"}, for_object=True) == Acl("default")
    with pytest.raises(errors.CosError):
        acl_from_headers({"x-cos-acl": "default"}, for_object=False)
    with pytest.raises(errors.CosError):
        acl_from_headers({"x-cos-acl": "authenticated-read"}, for_object=True)
    acl = acl_from_headers({"x-cos-grant-read": 'id="qcs::cam::anyone:anyone"',
                                  "x-cos-grant-full-control": 'id="qcs::cam::uin/1:uin/1"'}, for_object=True)
    assert acl == Acl("private", (("READ", "id", "qcs::cam::anyone:anyone"),
                                  ("FULL_CONTROL", "id", "qcs::cam::uin/1:uin/1")))
    assert acl.public() == {"READ"}


def test_acl_document_vector_and_round_trip():
    acl = Acl("public-read", (("READ", "id", "qcs::cam::uin/1:uin/2"),))
    document = acl_xml(acl, OWNER)
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
    parsed = parse_acl_xml(document, for_object=False)
    assert parsed.public() == {"READ"}
    assert ("READ", "id", "qcs::cam::uin/1:uin/2") in parsed.grants
    with pytest.raises(errors.CosError) as info:
        parse_acl_xml(b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>x</ID></Grantee>"
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
    assert anonymous_may(permission, Acl(bucket), Acl(obj) if obj else None) is allowed


def test_anonymous_grants():
    everyone = Acl("private", (("FULL_CONTROL", "uri", ALL_USERS_URI),))
    assert everyone.public() == set(PERMISSIONS)
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
    cors = parse_cors_xml(CORS_DOC)
    assert cors == (CorsRule(("http://*.example.com",), ("GET", "PUT"), ("x-cos-meta-*", "Content-Type"), ("ETag",),
                             600, "r1"),
                    CorsRule(("*",), ("HEAD",)))
    assert parse_cors_xml(cors_xml(cors)) == cors
    assert tuple(CorsRule.from_json(rule.to_json()) for rule in cors) == cors
    for bad, code in [
        (b"<CORSConfiguration/>", "MalformedXML"),
        (b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>",
         "MalformedXML"),
        ((b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod>"
          b"</CORSRule></CORSConfiguration>"), "InvalidArgument"),
        ((b"<CORSConfiguration><CORSRule><AllowedOrigin>*.*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
          b"</CORSRule></CORSConfiguration>"), "InvalidArgument"),
        ((b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
          b"<MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule></CORSConfiguration>"), "MalformedXML"),
    ]:
        with pytest.raises(errors.CosError) as info:
            parse_cors_xml(bad)
        assert code_of(info) == code


def test_cors_matching_and_headers():
    cors = parse_cors_xml(CORS_DOC)
    assert cors_match(cors, "http://app.example.com", "GET") is cors[0]
    assert cors_match(cors, "http://app.example.com", "GET", ["x-cos-meta-mode", "content-type"]) is cors[0]
    assert cors_match(cors, "http://app.example.com", "GET", ["authorization"]) is None
    assert cors_match(cors, "https://app.example.com", "GET") is None
    assert cors_match(cors, "http://anything", "HEAD") is cors[1]
    assert cors_match(cors, "http://anything", "DELETE") is None
    assert preflight(cors, "http://app.example.com", "PUT", "X-Cos-Meta-Mode") == [
        ("Access-Control-Allow-Origin", "http://app.example.com"), ("Vary", "Origin"),
        ("Access-Control-Allow-Methods", "GET, PUT"), ("Access-Control-Allow-Headers", "x-cos-meta-mode"),
        ("Access-Control-Max-Age", "600"), ("Access-Control-Expose-Headers", "ETag")]
    assert cors_headers(cors[1], "http://x", preflight=False) == [
        ("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "HEAD")]
    with pytest.raises(errors.CosError) as info:
        preflight(cors, "http://evil.test", "GET", None)
    assert (info.value.status, code_of(info)) == (403, "AccessForbidden")
    with pytest.raises(errors.CosError) as info:
        preflight(cors, None, "GET", None)
    assert info.value.status == 400
    with pytest.raises(errors.CosError):
        preflight(None, "http://app.example.com", "GET", None)
