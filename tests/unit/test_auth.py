"""Signature vectors: COS documentation, the official Go SDK test, SDK cross-checks, AWS SigV4 examples."""

import hashlib
import time

import pytest

from cosfs.cos import auth

DOC_ID = "AKIDQjz3ltompVjBni5LitkWHFlFpwkn9U5q"
DOC_KEY = "BQYIM75p8x0iWVFSIgqEKwFprpRSVHlz"
HOST_BJ = "examplebucket-1250000000.cos.ap-beijing.myqcloud.com"
HOST_GZ = "examplebucket-1250000000.cos.ap-guangzhou.myqcloud.com"

COS_VECTORS = [
    pytest.param(DOC_ID, DOC_KEY, "PUT", "/exampleobject(腾讯云)", {}, {
        "Date": "Thu, 16 May 2019 06:45:51 GMT", "Host": HOST_BJ, "Content-Type": "text/plain",
        "Content-Length": "13", "Content-MD5": "mQ/fVh815F3k6TAUm8m0eg==", "x-cos-acl": "private",
        "x-cos-grant-read": 'uin="100000000011"'}, "1557989151;1557996351",
        "3b8851a11a569213c17ba8fa7dcf2abec6935172", id="V1-doc-put"),
    pytest.param(DOC_ID, DOC_KEY, "GET", "/exampleobject(腾讯云)",
        {"response-content-type": "application/octet-stream", "response-cache-control": "max-age=600"},
        {"Date": "Thu, 16 May 2019 06:55:53 GMT", "Host": HOST_BJ}, "1557989753;1557996953",
        "01681b8c9d798a678e43b685a9f1bba0f6c0e012", id="V2-doc-get"),
    pytest.param("QmFzZTY0IGlzIGEgZ2VuZXJp", "AKIDZfbOA78asKUYBcXFrJD0a1ICvR98JM", "PUT", "/testfile2", {}, {
        "Host": "testbucket-125000000.cos.ap-guangzhou.myqcloud.com",
        "x-cos-content-sha1": "db8ac1c259eb89d4a131b253bacfca5f319d54f2", "x-cos-stroage-class": "nearline"},
        "1480932292;1481012292", "ce4ac0ecbcdb30538b3fee0a97cc6389694ce53a", id="V3-go-sdk"),
    pytest.param(DOC_ID, DOC_KEY, "GET", "/", {
        "prefix": "photos/2024 summer/", "delimiter": "/", "marker": "", "max-keys": "1000", "encoding-type": "url"},
        {"host": HOST_GZ}, "1700000000;1700003600", "b57958f2c23e049f30a8768feb4ced5b45db6d01", id="V4-list"),
    pytest.param(DOC_ID, DOC_KEY, "PUT", "/目录/file name+1~(x).txt", {}, {
        "host": HOST_GZ, "Content-Type": "text/plain", "Content-Length": "5", "x-cos-meta-mode": "33188",
        "x-cos-meta-mtime": "1700000000", "x-cos-security-token": "TOKEN/with+special=chars"},
        "1700000000;1700003600", "3e4a45967fcc1a06a0f79dbb66daa56331d187b7", id="V5-meta-token"),
    pytest.param(DOC_ID, DOC_KEY, "PUT", "/exampleobject", {
        "partNumber": "3",
        "uploadId": "1585130821cbb7df1d11846c073ad648e8f33b087cec2381df437acdc833cf654b9ecc6361"},
        {"host": HOST_GZ, "Content-Length": "1048576"}, "1700000000;1700003600",
        "022b27bb02b44cb29c5f46dd8c6c17f1ccff42b5", id="V6-upload-part"),
]


@pytest.mark.parametrize("sid,skey,method,path,params,headers,key_time,expected", COS_VECTORS)
def test_cos_signature_vectors(sid, skey, method, path, params, headers, key_time, expected):
    value = auth.cos_authorization_for_key_time(sid, skey, method, path, params, headers, key_time)
    assert value.endswith("q-signature=" + expected)
    fields = auth.parse_cos_authorization(value)
    assert fields["q-ak"] == sid and fields["q-key-time"] == key_time


def test_cos_doc_v1_full_authorization():
    value = auth.cos_authorization_for_key_time(*COS_VECTORS[0].values[:7])
    assert value == (
        "q-sign-algorithm=sha1&q-ak=AKIDQjz3ltompVjBni5LitkWHFlFpwkn9U5q"
        "&q-sign-time=1557989151;1557996351&q-key-time=1557989151;1557996351"
        "&q-header-list=content-length;content-md5;content-type;date;host;x-cos-acl;x-cos-grant-read"
        "&q-url-param-list=&q-signature=3b8851a11a569213c17ba8fa7dcf2abec6935172"
    )


@pytest.mark.parametrize("sid,skey,method,path,params,headers,key_time,expected", COS_VECTORS)
def test_cos_verify_round_trip(sid, skey, method, path, params, headers, key_time, expected):
    value = auth.cos_authorization_for_key_time(sid, skey, method, path, params, headers, key_time)
    now = int(key_time.split(";")[0]) + 10
    lowered = {k.lower(): v for k, v in headers.items()}
    assert auth.verify_cos(auth.parse_cos_authorization(value), {sid: skey}, method, [path],
                           params.items(), lowered, now) == sid


def test_cos_verify_failures():
    creds = auth.Credentials("AKIDexample1234", "secretsecret")
    headers = {"host": "b-1.cos.local", "content-length": "3"}
    value = auth.cos_authorization(creds, "PUT", "/k", {}, headers, now_s=1_700_000_000)
    fields = auth.parse_cos_authorization(value)
    secrets = {"AKIDexample1234": "secretsecret"}
    with pytest.raises(auth.AuthFailure) as info:
        auth.verify_cos(fields, {"other": "x"}, "PUT", ["/k"], [], headers, 1_700_000_000)
    assert info.value.code == "InvalidAccessKeyId"
    with pytest.raises(auth.AuthFailure) as info:
        auth.verify_cos(fields, {"AKIDexample1234": "wrong"}, "PUT", ["/k"], [], headers, 1_700_000_000)
    assert info.value.code == "SignatureDoesNotMatch"
    with pytest.raises(auth.AuthFailure) as info:
        auth.verify_cos(fields, secrets, "PUT", ["/other"], [], headers, 1_700_000_000)
    assert info.value.code == "SignatureDoesNotMatch"
    with pytest.raises(auth.AuthFailure) as info:
        auth.verify_cos(fields, secrets, "PUT", ["/k"], [], headers, 1_700_000_000 + 3600)
    assert (info.value.code, info.value.message) == ("AccessDenied", "Request has expired")
    with pytest.raises(auth.AuthFailure) as info:
        auth.verify_cos(fields, secrets, "PUT", ["/k"], [], headers, 1_700_000_000 - 7200)
    assert info.value.code == "RequestTimeTooSkewed"
    with pytest.raises(auth.AuthFailure) as info:
        auth.verify_cos(fields, secrets, "PUT", ["/k"], [], {"host": "b-1.cos.local"}, 1_700_000_000)
    assert info.value.code == "SignatureDoesNotMatch"


def _doc_get(key_time: str = "1700000000;1700003600") -> tuple[dict[str, str], dict[str, str]]:
    headers = {"host": HOST_GZ}
    value = auth.cos_authorization_for_key_time(DOC_ID, DOC_KEY, "GET", "/k", {}, headers, key_time)
    return auth.parse_cos_authorization(value), headers


def _verify_doc_get(fields, headers, now):
    return auth.verify_cos(fields, {DOC_ID: DOC_KEY}, "GET", ["/k"], [], headers, now)


def test_cos_sign_time_cannot_revive_an_expired_signature():
    fields, headers = _doc_get()
    later = 1_700_000_000 + 7200
    with pytest.raises(auth.AuthFailure) as info:
        _verify_doc_get(fields, headers, later)
    assert info.value.message == "Request has expired"
    for edited in ("0;99999999999", "1700000000;1700009999"):  # outside q-key-time
        with pytest.raises(auth.AuthFailure) as info:
            _verify_doc_get({**fields, "q-sign-time": edited}, headers, later)
        assert info.value.code == "AccessDenied"
    # within q-key-time but not what was signed: the StringToSign carries q-sign-time
    with pytest.raises(auth.AuthFailure) as info:
        _verify_doc_get({**fields, "q-sign-time": "1700000000;1700003000"}, headers, 1_700_000_100)
    assert info.value.code == "SignatureDoesNotMatch"
    for malformed in ("1700000000;+1700003600", "1_700_000_000;1700003600", "1700000000"):
        with pytest.raises(auth.AuthFailure):
            _verify_doc_get({**fields, "q-key-time": malformed}, headers, 1_700_000_100)


def test_cos_sign_time_within_key_time_verifies():
    signature, header_list, _ = auth.cos_signature(DOC_KEY, "GET", "/k", {}, {"host": HOST_GZ},
                                                   "1700000000;1700003600", "1700000100;1700000700")
    fields = {"q-sign-algorithm": "sha1", "q-ak": DOC_ID, "q-sign-time": "1700000100;1700000700",
              "q-key-time": "1700000000;1700003600", "q-header-list": header_list, "q-url-param-list": "",
              "q-signature": signature}
    assert _verify_doc_get(fields, {"host": HOST_GZ}, 1_700_000_200) == DOC_ID
    with pytest.raises(auth.AuthFailure) as info:  # the signed window, not q-key-time's, applies
        _verify_doc_get(fields, {"host": HOST_GZ}, 1_700_001_000)
    assert info.value.message == "Request has expired"


def test_cos_non_ascii_signature_is_a_mismatch_not_a_crash():
    fields, headers = _doc_get()
    with pytest.raises(auth.AuthFailure) as info:
        _verify_doc_get({**fields, "q-signature": "\xe9" * 40}, headers, 1_700_000_100)
    assert info.value.code == "SignatureDoesNotMatch"


def test_credentials_repr_hides_secrets():
    creds = auth.Credentials("AKIDabcdefgh1234", "TOPSECRETKEY", token="TOKENVALUE")
    for text in (repr(creds), str(creds)):
        assert "TOPSECRETKEY" not in text and "TOKENVALUE" not in text


# AWS's published S3 SigV4 examples (examplebucket, 20130524, us-east-1).
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_sigv4_get_object_example():
    headers = {
        "host": "examplebucket.s3.amazonaws.com",
        "range": "bytes=0-9",
        "x-amz-content-sha256": auth.EMPTY_SHA256,
        "x-amz-date": "20130524T000000Z",
    }
    value = auth.sigv4_authorization(auth.Credentials(AWS_ID, AWS_KEY), "us-east-1", "GET", "/test.txt", {},
                                     headers, auth.EMPTY_SHA256, "20130524T000000Z")
    assert value == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_sigv4_put_object_example():
    body = b"Welcome to Amazon S3."
    payload = hashlib.sha256(body).hexdigest()
    assert payload == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    headers = {
        "host": "examplebucket.s3.amazonaws.com",
        "date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": payload,
    }
    names = sorted(headers)
    sig = auth.sigv4_signature(AWS_KEY, "us-east-1", "PUT", "/test%24file.text", [], headers, names, payload,
                               "20130524T000000Z")
    assert sig == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"


def test_sigv4_list_objects_example():
    headers = {"host": "examplebucket.s3.amazonaws.com", "x-amz-content-sha256": auth.EMPTY_SHA256,
               "x-amz-date": "20130524T000000Z"}
    sig = auth.sigv4_signature(AWS_KEY, "us-east-1", "GET", "/", [("max-keys", "2"), ("prefix", "J")], headers,
                               sorted(headers), auth.EMPTY_SHA256, "20130524T000000Z")
    assert sig == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"


def test_sigv4_verify():
    headers = {"host": "h", "x-amz-content-sha256": auth.EMPTY_SHA256, "x-amz-date": "20130524T000000Z"}
    value = auth.sigv4_authorization(auth.Credentials(AWS_ID, AWS_KEY), "us-east-1", "GET", "/k", {}, headers,
                                     auth.EMPTY_SHA256, "20130524T000000Z")
    fields = auth.parse_sigv4_authorization(value)
    now = 1369353600 + 5  # 2013-05-24T00:00:05Z
    assert auth.verify_sigv4(fields, {AWS_ID: AWS_KEY}, "GET", "/k", [], headers, auth.EMPTY_SHA256,
                             "20130524T000000Z", now) == AWS_ID
    with pytest.raises(auth.AuthFailure) as info:
        auth.verify_sigv4(fields, {AWS_ID: "bad"}, "GET", "/k", [], headers, auth.EMPTY_SHA256,
                          "20130524T000000Z", now)
    assert info.value.code == "SignatureDoesNotMatch"
    with pytest.raises(auth.AuthFailure) as info:
        auth.verify_sigv4(fields, {AWS_ID: AWS_KEY}, "GET", "/k", [], headers, auth.EMPTY_SHA256,
                          "20130524T000000Z", now + 86400)
    assert info.value.code == "RequestTimeTooSkewed"


# POSIX rules, so that no tzdata is needed; 2013-05-24 is summer time in both.
DST_ZONES = ["GMT0BST,M3.5.0/1,M10.5.0", "EST5EDT,M3.2.0,M11.1.0"]


@pytest.mark.parametrize("zone", DST_ZONES)
def test_sigv4_date_is_utc_in_a_dst_time_zone(zone, monkeypatch):
    headers = {"host": "h", "x-amz-content-sha256": auth.EMPTY_SHA256, "x-amz-date": "20130524T000000Z"}
    value = auth.sigv4_authorization(auth.Credentials(AWS_ID, AWS_KEY), "us-east-1", "GET", "/k", {}, headers,
                                     auth.EMPTY_SHA256, "20130524T000000Z")
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert time.localtime(1369353600).tm_isdst == 1
        assert auth.verify_sigv4(auth.parse_sigv4_authorization(value), {AWS_ID: AWS_KEY}, "GET", "/k", [], headers,
                                 auth.EMPTY_SHA256, "20130524T000000Z", 1369353600 + 5) == AWS_ID
    finally:
        monkeypatch.undo()
        time.tzset()


def test_sigv4_non_ascii_signature_is_a_mismatch_not_a_crash():
    headers = {"host": "h", "x-amz-content-sha256": auth.EMPTY_SHA256, "x-amz-date": "20130524T000000Z"}
    value = auth.sigv4_authorization(auth.Credentials(AWS_ID, AWS_KEY), "us-east-1", "GET", "/k", {}, headers,
                                     auth.EMPTY_SHA256, "20130524T000000Z")
    fields = {**auth.parse_sigv4_authorization(value), "Signature": "\xe9" * 64}
    with pytest.raises(auth.AuthFailure) as info:
        auth.verify_sigv4(fields, {AWS_ID: AWS_KEY}, "GET", "/k", [], headers, auth.EMPTY_SHA256,
                          "20130524T000000Z", 1369353600 + 5)
    assert info.value.code == "SignatureDoesNotMatch"
