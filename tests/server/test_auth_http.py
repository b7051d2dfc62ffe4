"""Authentication against a `cosfs serve` process: q-sign (header, query), SigV4, tokens."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import quote

import httpx
import pytest

from cosfs.cos.auth import amz_date, cos_authorization_for_key_time, sigv4_authorization, sigv4_signature

from .helpers import CosHttp, encode_key, error_code


@pytest.fixture
async def cos(cos_server):
    async with httpx.AsyncClient(timeout=30) as client:
        yield CosHttp(cos_server, client)


async def test_unsigned_is_denied(cos):
    r = await cos.get("k", sign=False)
    assert r.status_code == 403 and error_code(r) == "AccessDenied"
    r = await cos.head("k", sign=False)
    assert r.status_code == 403 and r.content == b""


async def test_wrong_secret_id(cos):
    other = CosHttp(cos.server, cos.client, secret_id="AKIDunknown")
    r = await other.get("k")
    assert r.status_code == 403 and error_code(r) == "InvalidAccessKeyId"


async def test_wrong_signature(cos):
    other = CosHttp(cos.server, cos.client, secret_key="wrong-key")
    r = await other.get("k")
    assert r.status_code == 403 and error_code(r) == "SignatureDoesNotMatch"
    r = await other.put("k", b"data")
    assert r.status_code == 403
    assert (await cos.head("k")).status_code == 404


async def test_expired_and_skewed(cos):
    now = int(time.time())
    r = await cos.get("k", key_time=f"{now - 7200};{now - 3600}")
    assert r.status_code == 403 and error_code(r) == "AccessDenied"
    assert "expired" in r.text
    r = await cos.get("k", key_time=f"{now + 7200};{now + 9000}")
    assert r.status_code == 403 and error_code(r) == "RequestTimeTooSkewed"


async def test_both_signed_paths_accepted_for_path_style(cos):
    await cos.put("p/key", b"x")
    r = await cos.get("p/key", sign_path="/p/key")
    assert r.status_code == 200
    r = await cos.get("p/key", sign_path=f"/{cos.bucket}/p/key")
    assert r.status_code == 200
    r = await cos.get("p/key", sign_path="/other")
    assert r.status_code == 403 and error_code(r) == "SignatureDoesNotMatch"


async def test_tampered_signed_header(cos):
    request = cos.build("PUT", "t", headers={"x-cos-meta-a": "1"}, content=b"x")
    request.headers["x-cos-meta-a"] = "2"
    r = await cos.client.send(request)
    assert r.status_code == 403 and error_code(r) == "SignatureDoesNotMatch"


async def test_query_params_with_plus_for_spaces(cos):
    await cos.put("dir/a b/c", b"x")
    params = {"prefix": "dir/a b/", "max-keys": "10"}
    request = cos.build("GET", "", params=params)
    url = f"{cos.endpoint}/{cos.bucket}/?prefix=dir%2Fa+b%2F&max-keys=10"  # what requests sends
    r = await cos.client.send(httpx.Request("GET", url, headers=request.headers))
    assert r.status_code == 200, r.text
    assert b"<Key>dir/a b/c</Key>" in r.content


async def test_presigned_query_signature(cos):
    await cos.put("pre signed", b"hello")
    now = int(time.time())
    key_time = f"{now - 60};{now + 600}"
    host = cos.host
    auth = cos_authorization_for_key_time(cos.secret_id, cos.secret_key, "GET", f"/{cos.bucket}/pre signed",
                                          {}, {"host": host}, key_time)
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in (p.split("=", 1) for p in auth.split("&")))
    url = f"{cos.endpoint}{encode_key('/' + cos.bucket + '/pre signed')}?{query}"
    r = await cos.client.get(url)
    assert r.status_code == 200, r.text
    assert r.content == b"hello"
    r = await cos.client.get(url.replace("q-signature=", "q-signature=0"))
    assert r.status_code == 403
    # the merged form ?sign=<urlencoded Authorization>
    path = encode_key("/" + cos.bucket + "/pre signed")
    r = await cos.client.get(f"{cos.endpoint}{path}?sign={quote(auth, safe='')}")
    assert r.status_code == 200


def _sigv4_request(cos, method: str, key: str, body: bytes, payload_hash: str | None = None,
                   secret_key: str | None = None) -> httpx.Request:
    from cosfs.cos.auth import Credentials

    now = time.time()
    request_time = amz_date(now)
    path = f"/{cos.bucket}/{key}"
    canonical_uri = quote(path, safe="/-_.~")
    payload = payload_hash or hashlib.sha256(body).hexdigest()
    headers = {"host": cos.host, "x-amz-date": request_time, "x-amz-content-sha256": payload}
    creds = Credentials(cos.secret_id, secret_key or cos.secret_key)
    headers["Authorization"] = sigv4_authorization(creds, "ap-guangzhou", method, canonical_uri, {}, headers,
                                                   payload, request_time)
    return httpx.Request(method, cos.endpoint + canonical_uri, headers=headers, content=body)


async def test_sigv4_header(cos):
    r = await cos.client.send(_sigv4_request(cos, "PUT", "v4 key", b"sigv4 body"))
    assert r.status_code == 200, r.text
    r = await cos.client.send(_sigv4_request(cos, "GET", "v4 key", b""))
    assert r.status_code == 200 and r.content == b"sigv4 body"
    r = await cos.client.send(_sigv4_request(cos, "PUT", "v4 key", b"other", payload_hash="UNSIGNED-PAYLOAD"))
    assert r.status_code == 200
    r = await cos.client.send(_sigv4_request(cos, "GET", "v4 key", b"", secret_key="bad"))
    assert r.status_code == 403 and error_code(r) == "SignatureDoesNotMatch"
    # a payload hash that does not match the body: refused, nothing stored
    r = await cos.client.send(_sigv4_request(cos, "PUT", "v4 bad", b"body",
                                             payload_hash=hashlib.sha256(b"x").hexdigest()))
    assert r.status_code == 400 and error_code(r) == "XAmzContentSHA256Mismatch"
    assert (await cos.head("v4 bad")).status_code == 404


async def test_sigv4_presigned(cos):
    await cos.put("pv4", b"presigned v4")
    request_time = amz_date(time.time())
    path = f"/{cos.bucket}/pv4"
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{cos.secret_id}/{request_time[:8]}/ap-guangzhou/s3/aws4_request",
        "X-Amz-Date": request_time,
        "X-Amz-Expires": "300",
        "X-Amz-SignedHeaders": "host",
    }
    signature = sigv4_signature(cos.secret_key, "ap-guangzhou", "GET", path, params.items(), {"host": cos.host},
                                ["host"], "UNSIGNED-PAYLOAD", request_time)
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items()) + f"&X-Amz-Signature={signature}"
    r = await cos.client.get(f"{cos.endpoint}{path}?{query}")
    assert r.status_code == 200, r.text
    assert r.content == b"presigned v4"


async def test_security_token(server_factory):
    server = server_factory("--security-token", "TOKEN/with+special=chars")
    async with httpx.AsyncClient(timeout=30) as client:
        cos = CosHttp(server, client)
        r = await cos.put("k", b"x")
        assert r.status_code == 403 and error_code(r) == "InvalidToken"
        r = await cos.put("k", b"x", headers={"x-cos-security-token": "other"})
        assert r.status_code == 403 and error_code(r) == "InvalidToken"
        r = await cos.put("k", b"x", headers={"x-cos-security-token": "TOKEN/with+special=chars"})
        assert r.status_code == 200, r.text
    log = server.access_log.read_text()
    assert "TOKEN/with" not in log
