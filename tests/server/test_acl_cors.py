"""Issue 11, part 7: bucket and object ACLs (enforced for unsigned requests), CORS, and GET
Service, each round-tripped through the official SDK (qcloud_cos)."""

from __future__ import annotations

import logging

import httpx
import pytest

qcloud_cos = pytest.importorskip("qcloud_cos")
from qcloud_cos import CosConfig, CosS3Client  # noqa: E402
from qcloud_cos.cos_exception import CosServiceError  # noqa: E402

from cosfs.server.acl import ALL_USERS_URI  # noqa: E402

from .helpers import CosHttp, encode_key, error_code  # noqa: E402
from .test_sdk import make_client  # noqa: E402

ANYONE = 'id="qcs::cam::anyone:anyone"'


@pytest.fixture
def sdk(cos_server):
    logging.getLogger("qcloud_cos").setLevel(logging.CRITICAL)
    client = make_client(cos_server)
    yield client, cos_server.bucket
    client._session.close()


def anonymous_sdk(server) -> CosS3Client:
    host, port = server.endpoint.split("://", 1)[1].rsplit(":", 1)
    config = CosConfig(Region="ap-guangzhou", Anonymous=True, Scheme="http", IP=host, Port=int(port), Timeout=30)
    return CosS3Client(config, retry=0)


def unsigned(server, method: str, key: str = "", **kwargs) -> httpx.Response:
    """An unsigned request, path-style."""
    url = f"{server.endpoint}/{server.bucket}/{encode_key(key)}"
    return httpx.request(method, url, timeout=30, **kwargs)


# --- GET Service -----------------------------------------------------------------------------


def test_list_buckets_through_the_sdk(server_factory):
    server = server_factory(buckets=("examplebucket-1250000000", "second-1250000000"))
    host, port = server.endpoint.split("://", 1)[1].rsplit(":", 1)
    config = CosConfig(Region="ap-guangzhou", SecretId=server.secret_id, SecretKey=server.secret_key, Scheme="http",
                       IP=host, Port=int(port), ServiceDomain=f"{host}:{port}")
    client = CosS3Client(config, retry=0)
    try:
        listed = client.list_buckets()
        assert [b["Name"] for b in listed["Buckets"]["Bucket"]] == ["examplebucket-1250000000", "second-1250000000"]
        assert all(b["Location"] == "ap-guangzhou" for b in listed["Buckets"]["Bucket"])
        assert listed["Owner"]["ID"]
        paged = client.list_buckets(MaxKeys=1)
        assert [b["Name"] for b in paged["Buckets"]["Bucket"]] == ["examplebucket-1250000000"]
        assert paged["IsTruncated"] == "true" and paged["NextMarker"] == "examplebucket-1250000000"
        rest = client.list_buckets(Marker=paged["NextMarker"])
        assert [b["Name"] for b in rest["Buckets"]["Bucket"]] == ["second-1250000000"]
    finally:
        client._session.close()
    # unsigned: refused
    assert httpx.get(server.endpoint + "/", timeout=30).status_code == 403


# --- ACL -------------------------------------------------------------------------------------


def test_bucket_acl_round_trip_and_anonymous_reads(sdk, cos_server):
    client, bucket = sdk
    client.put_object(Bucket=bucket, Key="doc.txt", Body=b"public words")
    assert client.get_bucket_acl(Bucket=bucket)["CannedACL"] == "private"
    # private bucket: no unsigned read, listing or write
    assert unsigned(cos_server, "GET", "doc.txt").status_code == 403
    assert unsigned(cos_server, "GET").status_code == 403
    assert unsigned(cos_server, "PUT", "new", content=b"x").status_code == 403

    client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    acl = client.get_bucket_acl(Bucket=bucket)
    assert acl["CannedACL"] == "public-read"
    grantees = [g["Grantee"] for g in acl["AccessControlList"]["Grant"]]
    assert {"Type": "Group", "URI": ALL_USERS_URI} in grantees
    r = unsigned(cos_server, "GET", "doc.txt")
    assert r.status_code == 200 and r.content == b"public words"
    assert unsigned(cos_server, "HEAD", "doc.txt").status_code == 200
    assert unsigned(cos_server, "GET").status_code == 200  # listing
    missing = unsigned(cos_server, "GET", "missing")
    assert missing.status_code == 404 and error_code(missing) == "NoSuchKey"
    # reads only: no unsigned write, ACL read, response-* override or copy
    assert unsigned(cos_server, "PUT", "new", content=b"x").status_code == 403
    assert unsigned(cos_server, "DELETE", "doc.txt").status_code == 403
    assert unsigned(cos_server, "GET", "", params={"acl": ""}).status_code == 403
    assert unsigned(cos_server, "GET", "doc.txt", params={"response-content-type": "text/html"}).status_code == 403
    # a bad signature is refused even where an unsigned request would pass
    r = unsigned(cos_server, "GET", "doc.txt", headers={"Authorization": "q-sign-algorithm=sha1&q-ak=x&q-signature=y"})
    assert r.status_code == 403
    # the official SDK, anonymously
    anonymous = anonymous_sdk(cos_server)
    try:
        assert anonymous.get_object(Bucket=bucket, Key="doc.txt")["Body"].get_raw_stream().read() == b"public words"
        with pytest.raises(CosServiceError) as info:
            anonymous.put_object(Bucket=bucket, Key="by-anyone", Body=b"x")
        assert info.value.get_status_code() == 403
    finally:
        anonymous._session.close()

    client.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    assert client.get_bucket_acl(Bucket=bucket)["CannedACL"] == "public-read-write"
    assert unsigned(cos_server, "PUT", "by-anyone", content=b"anyone wrote").status_code == 200
    assert client.get_object(Bucket=bucket, Key="by-anyone")["Body"].get_raw_stream().read() == b"anyone wrote"
    # but an unsigned request may not set ACLs
    r = unsigned(cos_server, "PUT", "by-anyone", content=b"x", headers={"x-cos-acl": "public-read"})
    assert r.status_code == 403
    assert unsigned(cos_server, "DELETE", "by-anyone").status_code == 204

    client.put_bucket_acl(Bucket=bucket, ACL="private")
    assert unsigned(cos_server, "GET", "doc.txt").status_code == 403


def test_object_acls_through_put_copy_multipart_and_acl(sdk, cos_server):
    client, bucket = sdk
    client.put_object(Bucket=bucket, Key="open", Body=b"open", ACL="public-read")
    client.put_object(Bucket=bucket, Key="closed", Body=b"closed")
    client.put_object(Bucket=bucket, Key="granted", Body=b"granted", GrantRead=ANYONE)
    assert unsigned(cos_server, "GET", "open").content == b"open"
    assert unsigned(cos_server, "GET", "closed").status_code == 403
    assert unsigned(cos_server, "GET", "granted").content == b"granted"
    assert unsigned(cos_server, "GET", "missing").status_code == 403  # private bucket: existence is not told

    acl = client.get_object_acl(Bucket=bucket, Key="open")
    assert acl["CannedACL"] == "public-read"
    assert client.get_object_acl(Bucket=bucket, Key="closed")["CannedACL"] == "default"

    # PUT ?acl by header, then by body; data, ETag and Last-Modified stay
    before = client.head_object(Bucket=bucket, Key="closed")
    client.put_object_acl(Bucket=bucket, Key="closed", ACL="public-read")
    assert unsigned(cos_server, "GET", "closed").content == b"closed"
    after = client.head_object(Bucket=bucket, Key="closed")
    assert (after["ETag"], after["Last-Modified"]) == (before["ETag"], before["Last-Modified"])
    client.put_object_acl(Bucket=bucket, Key="closed", AccessControlPolicy={
        "Owner": {"ID": "qcs::cam::uin/1250000000:uin/1250000000"},
        "AccessControlList": {"Grant": [{"Grantee": {"ID": "qcs::cam::uin/1:uin/2", "Type": "CanonicalUser"},
                                         "Permission": "READ"}]}})
    assert unsigned(cos_server, "GET", "closed").status_code == 403
    grants = client.get_object_acl(Bucket=bucket, Key="closed")["AccessControlList"]["Grant"]
    assert {"ID": "qcs::cam::uin/1:uin/2", "DisplayName": "qcs::cam::uin/1:uin/2", "Type": "CanonicalUser"} in \
        [g["Grantee"] for g in grants]

    # a copy gets the ACL it asks for, never its source's
    source = {"Bucket": bucket, "Key": "open", "Region": "ap-guangzhou"}
    client.copy_object(Bucket=bucket, Key="copy-default", CopySource=source)
    assert unsigned(cos_server, "GET", "copy-default").status_code == 403
    client.copy_object(Bucket=bucket, Key="copy-public", CopySource=source, ACL="public-read")
    assert unsigned(cos_server, "GET", "copy-public").content == b"open"

    # multipart: the ACL given at initiation
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="mp", ACL="public-read")["UploadId"]
    etag = client.upload_part(Bucket=bucket, Key="mp", Body=b"parts", PartNumber=1, UploadId=upload_id)["ETag"]
    client.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                     MultipartUpload={"Part": [{"PartNumber": 1, "ETag": etag}]})
    assert unsigned(cos_server, "GET", "mp").content == b"parts"

    # an object's own private ACL wins over a public bucket
    client.put_object_acl(Bucket=bucket, Key="open", ACL="private")
    client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert unsigned(cos_server, "GET", "open").status_code == 403
    assert unsigned(cos_server, "GET", "copy-default").content == b"open"  # default: as the bucket
    with pytest.raises(CosServiceError) as info:
        client.put_object_acl(Bucket=bucket, Key="nothing-here", ACL="public-read")
    assert info.value.get_error_code() == "NoSuchKey"
    with pytest.raises(CosServiceError) as info:
        client.put_object(Bucket=bucket, Key="bad", Body=b"x", ACL="authenticated-read")
    assert info.value.get_error_code() == "InvalidArgument"


def test_acls_survive_a_restart(server_factory):
    first = server_factory()
    client = make_client(first)
    try:
        client.put_bucket_acl(Bucket=first.bucket, ACL="public-read")
        client.put_object(Bucket=first.bucket, Key="private-one", Body=b"p", ACL="private")
        client.put_object(Bucket=first.bucket, Key="inherits", Body=b"i")
    finally:
        client._session.close()
    first.stop()
    again = server_factory(root=first.root)
    assert unsigned(again, "GET", "inherits").content == b"i"
    assert unsigned(again, "GET", "private-one").status_code == 403


# --- CORS ------------------------------------------------------------------------------------


def preflight(server, key: str, origin: str | None, method: str | None, headers: str | None = None) -> httpx.Response:
    sent = {}
    if origin:
        sent["Origin"] = origin
    if method:
        sent["Access-Control-Request-Method"] = method
    if headers:
        sent["Access-Control-Request-Headers"] = headers
    return unsigned(server, "OPTIONS", key, headers=sent)


def test_cors_round_trip_preflight_and_response_headers(sdk, cos_server):
    client, bucket = sdk
    with pytest.raises(CosServiceError) as info:
        client.get_bucket_cors(Bucket=bucket)
    assert info.value.get_error_code() == "NoSuchCORSConfiguration" and info.value.get_status_code() == 404
    r = preflight(cos_server, "doc", "http://app.example.com", "GET")
    assert r.status_code == 403 and error_code(r) == "AccessForbidden"

    client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRule": [
        {"ID": "app", "AllowedOrigin": ["http://*.example.com"], "AllowedMethod": ["GET", "PUT"],
         "AllowedHeader": ["x-cos-meta-*", "content-type"], "ExposeHeader": ["ETag", "x-cos-request-id"],
         "MaxAgeSeconds": 600},
        {"AllowedOrigin": ["*"], "AllowedMethod": ["HEAD"]},
    ]})
    got = client.get_bucket_cors(Bucket=bucket)
    assert got["CORSRule"][0]["AllowedOrigin"] == ["http://*.example.com"]
    assert got["CORSRule"][0]["AllowedMethod"] == ["GET", "PUT"]
    assert got["CORSRule"][0]["MaxAgeSeconds"] == "600" and got["CORSRule"][1]["AllowedMethod"] == ["HEAD"]

    r = preflight(cos_server, "doc", "http://app.example.com", "PUT", "Content-Type, X-Cos-Meta-Mode")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://app.example.com"
    assert r.headers["access-control-allow-methods"] == "GET, PUT"
    assert r.headers["access-control-allow-headers"] == "content-type, x-cos-meta-mode"
    assert r.headers["access-control-max-age"] == "600"
    assert r.headers["access-control-expose-headers"] == "ETag, x-cos-request-id"
    assert preflight(cos_server, "", "http://x.test", "HEAD").headers["access-control-allow-origin"] == "*"
    for origin, method, headers in [("http://evil.test", "GET", None), ("http://app.example.com", "DELETE", None),
                                    ("http://app.example.com", "GET", "authorization")]:
        r = preflight(cos_server, "doc", origin, method, headers)
        assert r.status_code == 403 and error_code(r) == "AccessForbidden"
    assert preflight(cos_server, "doc", None, "GET").status_code == 400
    no_bucket = httpx.request("OPTIONS", f"{cos_server.endpoint}/nosuch-1250000000/doc", timeout=30,
                              headers={"Origin": "http://a.example.com", "Access-Control-Request-Method": "GET"})
    assert no_bucket.status_code == 404

    # actual (signed) requests from an allowed origin carry the headers; others do not
    client.put_object(Bucket=bucket, Key="doc", Body=b"x")
    with httpx.Client(timeout=30) as plain:
        cos = CosHttp(cos_server, plain)  # sync use of the request builder
        request = cos.build("GET", "doc", headers={"Origin": "http://app.example.com"})
        r = plain.send(request)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.example.com"
        assert r.headers["access-control-expose-headers"] == "ETag, x-cos-request-id"
        r = plain.send(cos.build("GET", "doc", headers={"Origin": "http://evil.test"}))
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers

    client.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(CosServiceError) as info:
        client.get_bucket_cors(Bucket=bucket)
    assert info.value.get_error_code() == "NoSuchCORSConfiguration"
    assert preflight(cos_server, "doc", "http://app.example.com", "GET").status_code == 403


def test_cors_configuration_is_validated(sdk):
    client, bucket = sdk
    with pytest.raises(CosServiceError) as info:
        client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRule": [
            {"AllowedOrigin": ["*"], "AllowedMethod": ["PATCH"]}]})
    assert info.value.get_error_code() == "InvalidArgument"
    with pytest.raises(CosServiceError) as info:
        client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRule": [{"AllowedOrigin": ["*"]}]})
    assert info.value.get_error_code() == "MalformedXML"


def test_unsigned_requests_never_change_acls(sdk, cos_server):
    """Not even where everyone has FULL_CONTROL: ACL changes need the owner's signature."""
    client, bucket = sdk
    client.put_bucket_acl(Bucket=bucket, GrantFullControl=ANYONE)
    client.put_object(Bucket=bucket, Key="k", Body=b"x", GrantFullControl=ANYONE)
    assert unsigned(cos_server, "GET", "k").content == b"x"
    assert unsigned(cos_server, "GET", "k", params={"acl": ""}).status_code == 200  # READ_ACP
    body = (b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>qcs::cam::anyone:anyone</ID></Grantee>"
            b"<Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>")
    assert unsigned(cos_server, "PUT", "k", params={"acl": ""}, content=body).status_code == 403
    assert unsigned(cos_server, "PUT", "", params={"acl": ""}, content=body).status_code == 403
    assert unsigned(cos_server, "PUT", "", params={"cors": ""}, content=b"<CORSConfiguration/>").status_code == 403
    assert unsigned(cos_server, "DELETE", "").status_code == 403
