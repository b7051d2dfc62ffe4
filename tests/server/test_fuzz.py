"""Issue 11, part 8: property-based and fuzz tests of the request parser, the signature
verifier and the XML readers (hypothesis; few examples each, no deadline, to stay brief in CI).

Properties: a request, however broken, gets an HTTP answer or a closed connection, never an
exception out of the connection; `App.parse` yields a request or a COS error; a correctly
signed request verifies, and changing anything it signed (or adding anything unsigned) makes
it fail; the XML readers return or raise a COS error (MalformedXML...), and read back what the
builders write.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cosfs import errors
from cosfs.cos import rules
from cosfs.cos import xml as cosxml
from cosfs.cos.auth import cos_authorization_for_key_time
from cosfs.cos.store import PartInfo
from cosfs.server import acl, cors, request_rules
from cosfs.server.app import App
from cosfs.server.authn import Authenticator
from cosfs.server.common import BUCKET_RE
from cosfs.server.http import Connection, Limits, Request
from cosfs.server.storage import Storage

from .helpers import encode_key

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
BUCKET = "examplebucket-1250000000"
SECRET_ID, SECRET_KEY = "AKIDfuzz", "fuzz-secret-key"


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> App:
    storage = Storage(Path(tmp_path_factory.mktemp("fuzz")) / "root")
    storage.load(BUCKET_RE)
    storage.create_bucket(BUCKET)
    return App(storage, Authenticator({SECRET_ID: SECRET_KEY}))


# --- the request parser ------------------------------------------------------------------------

VALID = (b"PUT /examplebucket-1250000000/k?acl HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
         b"x-cos-acl: public-read\r\n\r\nhello"
         b"GET /examplebucket-1250000000/?prefix=a&max-keys=2 HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n")


@st.composite
def mangled_requests(draw) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "duplicate"]))
        at = draw(st.integers(0, len(data)))
        if kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=20))
        elif kind == "delete":
            del data[at: at + draw(st.integers(1, 20))]
        elif kind == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        else:
            data[at:at] = data[at: at + draw(st.integers(1, 60))] * draw(st.integers(1, 5))
    return bytes(data)


async def converse(app: App, data: bytes) -> bytes:
    """Send `data` on a fresh in-memory connection, close; what the server answered."""
    client, server = trio.testing.memory_stream_pair()
    connection = Connection(server, app.handle, lambda status, code, message: app.error_response(status, code, message),
                            app.after_response, Limits(idle_timeout_s=2, io_timeout_s=2, max_connections=4))
    received = bytearray()

    async def read_all() -> None:
        while True:
            chunk = await client.receive_some(65536)
            if not chunk:
                return
            received.extend(chunk)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.serve)  # must return, whatever it was sent
            nursery.start_soon(read_all)
            await client.send_all(data)
            await client.send_stream.aclose()
    return bytes(received)


@FEW
@given(data=st.one_of(st.binary(max_size=600), mangled_requests()))
async def test_any_bytes_get_an_http_answer_or_a_close(app, data):
    answer = await converse(app, data)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:80]
    assert b"500 Internal" not in answer


_target_chars = st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFF)


@FEW
@given(target=st.text(_target_chars, max_size=80), host=st.text(_target_chars, max_size=40),
       method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"]))
def test_parse_gives_a_request_or_a_cos_error(app, target, host, method):
    request = Request(method, target, {"host": host}, body=None)  # type: ignore[arg-type]
    try:
        ctx = app.parse(request, "id")
    except errors.CosError as exc:
        assert exc.code in ("InvalidURI", "InvalidArgument")
        return
    assert ctx.path.startswith("/") and (ctx.bucket_name is None or ctx.bucket_name)


# --- the signature verifier --------------------------------------------------------------------

_names = st.sampled_from(["prefix", "marker", "max-keys", "uploadid", "partnumber", "acl", "a b", "中", "x+y"])
_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12)
_header_names = st.sampled_from(["x-cos-meta-a", "x-cos-acl", "content-type", "range", "x-cos-storage-class",
                                 "cache-control"])
_keys = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20)


def signed_request(method: str, key: str, params: dict[str, str], headers: dict[str, str]) -> tuple[str, dict]:
    path = f"/{BUCKET}/{key}"
    headers = {"host": "127.0.0.1:9000", **headers}
    now = int(time.time())
    headers["authorization"] = cos_authorization_for_key_time(SECRET_ID, SECRET_KEY, method, path, params,
                                                              dict(headers), f"{now - 60};{now + 600}")
    query = urlencode(params, quote_via=quote, safe="") if params else ""
    return encode_key(path) + (("?" + query) if query else ""), headers


@FEW
@given(method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]), key=_keys,
       params=st.dictionaries(_names, _values, max_size=3), headers=st.dictionaries(_header_names, _values, max_size=3),
       mutation=st.sampled_from([None, "method", "path", "param", "header", "host", "signature", "extra-param",
                                 "extra-header", "drop-header"]))
def test_signatures_verify_exactly_what_was_signed(app, method, key, params, headers, mutation):
    target, sent = signed_request(method, key, params, headers)
    if mutation == "method":
        method = "PUT" if method != "PUT" else "GET"
    elif mutation == "path":
        target = target.replace(f"/{BUCKET}/", f"/{BUCKET}/x", 1)
    elif mutation == "param":
        assume(params)
        name = sorted(params)[0]
        target, sent_again = signed_request(method, key, {**params, name: params[name] + "!"}, headers)
        sent["host"] = sent_again["host"]  # the new query, the old signature
    elif mutation == "header":
        assume(headers)
        name = sorted(headers)[0]
        sent[name] = sent[name] + "!"
    elif mutation == "host":
        sent["host"] = "127.0.0.2:9000"
    elif mutation == "signature":
        auth = sent["authorization"]
        last = auth[-1]
        sent["authorization"] = auth[:-1] + ("0" if last != "0" else "1")
    elif mutation == "extra-param":
        target += ("&" if "?" in target else "?") + "uploads="
    elif mutation == "extra-header":
        sent["x-cos-copy-source"] = "/other-1250000000/k"
    elif mutation == "drop-header":
        assume(headers)
        del sent[sorted(headers)[0]]
    request = Request(method, target, sent, body=None)  # type: ignore[arg-type]
    ctx = app.parse(request, "id")
    if mutation is None:
        assert app.auth.check(ctx) == SECRET_ID
        return
    with pytest.raises(errors.CosError) as info:
        app.auth.check(ctx)
    assert info.value.status in (400, 403)


@FEW
@given(authorization=st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200),
    st.builds(lambda parts: "&".join(parts), st.lists(st.builds(
        lambda k, v: f"{k}={v}", st.sampled_from(["q-sign-algorithm", "q-ak", "q-sign-time", "q-key-time",
                                                  "q-header-list", "q-url-param-list", "q-signature", "junk"]),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)), max_size=8)),
    st.builds(lambda rest: "AWS4-HMAC-SHA256 " + rest, st.text(max_size=120)),
))
def test_any_authorization_is_refused_cleanly(app, authorization):
    request = Request("GET", f"/{BUCKET}/k", {"host": "h", "authorization": authorization, "x-amz-date": "x"},
                      body=None)  # type: ignore[arg-type]
    ctx = app.parse(request, "id")
    if not authorization.strip():
        assert app.auth.is_anonymous(ctx)
        return
    with pytest.raises(errors.CosError) as info:
        app.auth.check(ctx)
    assert info.value.status in (400, 403, 501)


# --- the XML readers ---------------------------------------------------------------------------

TAGS = ["CompleteMultipartUpload", "Part", "PartNumber", "ETag", "Delete", "Object", "Key", "Quiet",
        "AccessControlPolicy", "AccessControlList", "Grant", "Grantee", "ID", "URI", "Permission", "CORSConfiguration",
        "CORSRule", "AllowedOrigin", "AllowedMethod", "AllowedHeader", "ExposeHeader", "MaxAgeSeconds", "Owner"]
_xml_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12).map(
    lambda t: t.replace("&", "&amp;").replace("<", "&lt;"))
_element = st.recursive(
    _xml_text,
    lambda children: st.builds(lambda tag, inner: f"<{tag}>{''.join(inner)}</{tag}>", st.sampled_from(TAGS),
                               st.lists(children, max_size=4)),
    max_leaves=20,
)
READERS = [request_rules.parse_complete, request_rules.parse_delete, lambda b: acl.parse_acl_xml(b, for_object=True),
           cors.parse_cors_xml]


@FEW
@given(body=st.one_of(st.binary(max_size=400), _element.map(str.encode),
                      st.sampled_from(["<!DOCTYPE x [<!ENTITY a 'aaaa'>]><Delete>&a;</Delete>",
                                       '<?xml version="1.0"?><!DOCTYPE d SYSTEM "file:///etc/passwd"><Delete/>'])
                      .map(str.encode)))
def test_xml_readers_return_or_refuse_cleanly(body):
    for reader in READERS:
        try:
            reader(body)
        except errors.CosError as exc:
            assert exc.status == 400 and exc.code in ("MalformedXML", "InvalidArgument", "MalformedACLError")


_xml_safe = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=15)
_md5 = st.binary(min_size=16, max_size=16).map(bytes.hex)


@FEW
@given(numbers=st.lists(st.integers(1, 10_000), min_size=1, max_size=30, unique=True), etags=st.data())
def test_complete_documents_read_back(numbers, etags):
    parts = [PartInfo(n, etags.draw(_md5)) for n in sorted(numbers)]
    assert request_rules.parse_complete(cosxml.build_complete(parts)) == [(p.part_number, p.etag) for p in parts]


@FEW
@given(keys=st.lists(_xml_safe.filter(lambda k: "\r" not in k), min_size=1, max_size=20), quiet=st.booleans())
def test_delete_documents_read_back(keys, quiet):
    assert request_rules.parse_delete(cosxml.build_delete(keys, quiet)) == (keys, quiet)


_stripped = _xml_safe.map(str.strip).filter(bool)


@FEW
@given(canned=st.sampled_from(rules.CANNED_BUCKET),
       grants=st.lists(st.tuples(st.sampled_from(acl.PERMISSIONS), st.sampled_from(["id", "uri"]), _stripped),
                       max_size=5))
def test_acl_documents_read_back(canned, grants):
    wanted = acl.Acl(canned, tuple(grants))
    parsed = acl.parse_acl_xml(acl.acl_xml(wanted, "qcs::cam::uin/1:uin/1"), for_object=False)
    assert set(wanted.grants) <= set(parsed.grants)
    assert parsed.public() == wanted.public()


_origins = st.one_of(st.just("*"), st.builds(lambda host: f"https://{host}.example.com",
                                             st.text("abc", min_size=1, max_size=5)),
                     st.just("http://*.example.com"))


@FEW
@given(rule_list=st.lists(st.builds(
    cors.CorsRule,
    st.lists(_origins, min_size=1, max_size=3).map(tuple),
    st.lists(st.sampled_from(cors.CORS_METHODS), min_size=1, max_size=5, unique=True).map(tuple),
    st.lists(_stripped, max_size=3).map(tuple),
    st.lists(_stripped, max_size=3).map(tuple),
    st.one_of(st.none(), st.integers(0, 86400)),
    st.one_of(st.just(""), _stripped),
), min_size=1, max_size=5))
def test_cors_documents_read_back(rule_list):
    assert cors.parse_cors_xml(cors.cors_xml(rule_list)) == tuple(rule_list)
