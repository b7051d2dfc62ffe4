"""A small COS imitation behind `httpx.MockTransport`: verifies signatures with the same code
the server uses, keeps objects in a dict, and plays scripted faults, one per request."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote

import httpx

from cosfs.cos import auth, crc64

BUCKET = "examplebucket-1250000000"
SECRET_ID = "AKIDfakeSecretId0001"
SECRET_KEY = "SUPERSECRETKEY-do-not-leak-7f3a"
TOKEN = "TOKEN-SECRET-do-not-leak-99c1"


def error_response(status: int, code: str, message: str = "", *, request_id: str = "req-1") -> httpx.Response:
    body = (f"<?xml version='1.0' encoding='utf-8' ?><Error><Code>{code}</Code><Message>{message}</Message>"
            f"<Resource>{BUCKET}</Resource><RequestId>{request_id}</RequestId></Error>").encode()
    return httpx.Response(status, headers={"content-type": "application/xml", "x-cos-request-id": request_id},
                          content=body)


class BrokenStream(httpx.AsyncByteStream):
    """Yields `data` then fails with a connection error, as a reset mid-body looks."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self):
        yield self._data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


class FakeCos:
    """Handler for httpx.MockTransport. `script` holds fault names consumed one per request:
    '503', '500', 'slowdown', 'reset', 'connect', 'truncate', 'expired', 'skew', 'token',
    'error200', 'badcrc', 'midreset', or a callable(request) -> Response. Lasting quirks of
    S3-compatible servers: `ignore_range` (answer a ranged GET with 200 and the whole body) and
    `send_crc=False` (no x-cos-hash-crc64ecma)."""

    def __init__(self, *, virtual: bool = False, token: str | None = None, now: Callable[[], float] = time.time):
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.script: list = []
        self.requests: list[httpx.Request] = []
        self.virtual = virtual
        self.valid_token = token
        self.now = now
        self.ignore_range = False
        self.send_crc = True

    # -- helpers ---------------------------------------------------------------------------
    def key_of(self, request: httpx.Request) -> str:
        path = request.url.raw_path.decode().split("?", 1)[0]
        if not self.virtual:
            assert path.startswith(f"/{BUCKET}"), path
            path = path[len(BUCKET) + 1:]
        return unquote(path[1:])

    def params_of(self, request: httpx.Request) -> list[tuple[str, str]]:
        query = request.url.raw_path.decode().partition("?")[2]
        return parse_qsl(query, keep_blank_values=True)

    def check_signature(self, request: httpx.Request) -> httpx.Response | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        fields = auth.parse_cos_authorization(headers.get("authorization", ""))
        try:
            auth.verify_cos(fields, {SECRET_ID: SECRET_KEY}, request.method, ["/" + self.key_of(request)]
                            if self.key_of(request) else ["/"], self.params_of(request), headers, self.now())
        except auth.AuthFailure as exc:
            return error_response(403, exc.code, exc.message)
        if self.valid_token is not None and headers.get("x-cos-security-token") != self.valid_token:
            return error_response(400, "ExpiredToken", "The provided token has expired.")
        return None

    # -- handler ---------------------------------------------------------------------------
    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            fault = self.script.pop(0)
            if callable(fault):
                return fault(request)
            reply = self.fault(fault, request)
            if reply is not None:
                return reply
        denied = self.check_signature(request)
        if denied is not None:
            return denied
        return self.serve(request)

    def fault(self, name: str, request: httpx.Request) -> httpx.Response | None:
        if name == "503":
            return error_response(503, "ServiceUnavailable", "try later")
        if name == "slowdown":
            return error_response(503, "SlowDown", "Please reduce your request rate.")
        if name == "500":
            return error_response(500, "InternalError", "oops")
        if name == "reset":
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        if name == "connect":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if name == "expired":
            return error_response(403, "AccessDenied", "Request has expired")
        if name == "skew":
            return error_response(403, "RequestTimeTooSkewed", "too skewed")
        if name == "token":
            return error_response(400, "ExpiredToken", "The provided token has expired.")
        if name == "error200":
            return httpx.Response(200, content=b"<?xml version='1.0'?><Error><Code>InternalError</Code>"
                                               b"<Message>copy failed</Message><RequestId>r200</RequestId></Error>")
        if name == "error200-fatal":
            return httpx.Response(200, content=b"<Error><Code>InvalidArgument</Code><Message>bad</Message></Error>")
        reply = self.serve(request)
        if name == "truncate":
            return httpx.Response(reply.status_code, headers={**reply.headers,
                                  "content-length": str(len(reply.content) + 10)}, content=reply.content)
        if name == "badcrc":
            headers = dict(reply.headers)
            headers["x-cos-hash-crc64ecma"] = "12345"
            return httpx.Response(reply.status_code, headers=headers, content=reply.content)
        if name == "midreset":
            headers = dict(reply.headers)
            return httpx.Response(reply.status_code, headers=headers, stream=BrokenStream(reply.content[:5]))
        raise AssertionError(f"unknown fault {name}")

    def serve(self, request: httpx.Request) -> httpx.Response:
        key = self.key_of(request)
        params = dict(self.params_of(request))
        method = request.method
        if method == "PUT" and "x-cos-copy-source" in request.headers:
            source = request.headers["x-cos-copy-source"]
            src_key = unquote(source.split("/", 2)[2] if source.startswith("/") else source.split("/", 1)[1])
            if src_key not in self.objects:
                return error_response(404, "NoSuchKey")
            data, meta = self.objects[src_key]
            if request.headers.get("x-cos-metadata-directive") == "Replaced":
                meta = {k: v for k, v in request.headers.items() if k.startswith("x-cos-meta-") or k == "content-type"}
            self.objects[key] = (data, meta)
            etag = hashlib.md5(data).hexdigest()
            return httpx.Response(200, content=f"<CopyObjectResult><ETag>\"{etag}\"</ETag><CRC64>{crc64.crc64(data)}"
                                               f"</CRC64><LastModified>2024-01-01T00:00:00Z</LastModified>"
                                               f"</CopyObjectResult>".encode())
        if method == "PUT":
            data = request.content
            md5 = request.headers.get("content-md5")
            if md5 is not None and md5 != base64.b64encode(hashlib.md5(data).digest()).decode():
                return error_response(400, "BadDigest", "Content-MD5 mismatch")
            meta = {k: v for k, v in request.headers.items() if k.startswith("x-cos-meta-") or k == "content-type"}
            if "uploadId" not in params:
                self.objects[key] = (data, meta)
            headers = {"etag": f'"{hashlib.md5(data).hexdigest()}"'}
            if self.send_crc:
                headers["x-cos-hash-crc64ecma"] = str(crc64.crc64(data))
            return httpx.Response(200, headers=headers)
        if method in ("GET", "HEAD") and key:
            if key not in self.objects:
                return httpx.Response(404) if method == "HEAD" else error_response(404, "NoSuchKey")
            data, meta = self.objects[key]
            headers = {"etag": f'"{hashlib.md5(data).hexdigest()}"', "x-cos-hash-crc64ecma": str(crc64.crc64(data)),
                       "last-modified": "Mon, 01 Jan 2024 00:00:00 GMT", **meta}
            if not self.send_crc:
                del headers["x-cos-hash-crc64ecma"]
            rng = None if self.ignore_range else request.headers.get("range")
            if rng:
                first, last = (int(x) for x in rng[6:].split("-"))
                if first >= len(data):
                    return error_response(416, "InvalidRange")
                part = data[first: last + 1]
                headers["content-range"] = f"bytes {first}-{first + len(part) - 1}/{len(data)}"
                return httpx.Response(206, headers=headers, content=part if method == "GET" else b"")
            if method == "HEAD":
                headers["content-length"] = str(len(data))
                return httpx.Response(200, headers=headers)
            return httpx.Response(200, headers=headers, content=data)
        if method == "DELETE":
            self.objects.pop(key, None)
            return httpx.Response(204)
        if method == "POST" and "uploadId" in params:
            return httpx.Response(200, headers={"x-cos-hash-crc64ecma": "1"},
                                  content=b"<CompleteMultipartUploadResult><ETag>\"x-1\"</ETag>"
                                          b"</CompleteMultipartUploadResult>")
        if method == "HEAD":
            return httpx.Response(200)
        return error_response(501, "NotImplemented")


REGION = "us-east-1"
EMPTY_MD5 = hashlib.md5(b"").hexdigest()


def s3_error(status: int, code: str, message: str = "") -> httpx.Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return httpx.Response(status, headers={"content-type": "application/xml", "x-amz-request-id": "amz-1"},
                          content=body.encode())


class FakeS3(FakeCos):
    """An S3-compatible server that is not COS, answering as `rclone serve s3` (v1.75) was
    seen to answer (tests/s3compat runs the real one): SigV4 only, path-style; x-amz-*
    headers only, so a PUT with `x-cos-copy-source` is an upload of its empty body (ETag the
    MD5 of nothing) and `x-cos-meta-*` is dropped; a ranged GET is answered 200 with a
    Content-Range and just the bytes asked for; If-Match and x-amz-copy-source-if-match are
    ignored; Complete answers ETag `<md5 of the parts' MD5s>-N`, while HEAD and GET answer the
    object's MD5; a copy of an object onto itself answers an empty `<CopyObjectResult>`;
    Upload Part - Copy is taken for an upload of an empty part (`part_copy=True`: it is done,
    as other S3 servers do); no CRC64 anywhere. `script` plays faults as in FakeCos."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.upload_meta: dict[str, dict[str, str]] = {}
        self.send_crc = False
        self.part_copy = False

    def check_signature(self, request: httpx.Request) -> httpx.Response | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        fields = auth.parse_sigv4_authorization(headers.get("authorization", ""))
        signed = set(fields.get("SignedHeaders", "").split(";"))
        unsigned = [n for n in headers if n.startswith("x-amz-") and n not in signed]
        if unsigned:
            return s3_error(403, "AccessDenied", f"{unsigned[0]} is not signed")
        try:
            path = request.url.raw_path.decode().split("?")[0]
            auth.verify_sigv4(fields, {SECRET_ID: SECRET_KEY}, request.method, path, self.params_of(request), headers,
                              headers.get("x-amz-content-sha256", ""), headers.get("x-amz-date", ""), self.now())
        except auth.AuthFailure as exc:
            return s3_error(403, exc.code, exc.message)
        return None

    @staticmethod
    def stored_meta(request: httpx.Request) -> dict[str, str]:
        meta = {k: v for k, v in request.headers.items() if k.startswith("x-amz-meta-")}
        meta["content-type"] = request.headers.get("content-type", "application/octet-stream")
        return meta

    def object_headers(self, key: str) -> dict[str, str]:
        data, meta = self.objects[key]
        return {"etag": f'"{hashlib.md5(data).hexdigest()}"', "last-modified": "Mon, 01 Jan 2024 00:00:00 GMT",
                "accept-ranges": "bytes", **meta}

    def serve(self, request: httpx.Request) -> httpx.Response:
        key = self.key_of(request)
        params = dict(self.params_of(request))
        method = request.method
        headers = request.headers
        if method == "PUT" and "uploadId" in params and self.part_copy and "x-amz-copy-source" in headers:
            source = unquote(headers["x-amz-copy-source"].lstrip("/")).partition("/")[2]
            first, last = (int(x) for x in headers["x-amz-copy-source-range"][6:].split("-"))
            data = self.objects[source][0][first:last + 1]
            self.uploads[params["uploadId"]][int(params["partNumber"])] = data
            return httpx.Response(200, content=f"<CopyPartResult><ETag>&#34;{hashlib.md5(data).hexdigest()}&#34;"
                                               f"</ETag></CopyPartResult>".encode())
        if method == "PUT" and "uploadId" in params:
            # Upload Part - Copy is not supported: the part is the (empty) body.
            data = request.content
            self.uploads[params["uploadId"]][int(params["partNumber"])] = data
            return httpx.Response(200, headers={"etag": f'"{hashlib.md5(data).hexdigest()}"'})
        if method == "PUT" and "x-amz-copy-source" in headers:
            source = unquote(headers["x-amz-copy-source"].lstrip("/"))
            bucket, _, src_key = source.partition("/")
            if bucket != BUCKET or src_key not in self.objects:
                return s3_error(404, "NoSuchKey")
            data, meta = self.objects[src_key]
            if headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE":
                meta = self.stored_meta(request)
            self.objects[key] = (data, dict(meta))
            if src_key == key:
                return httpx.Response(200, content=b'<?xml version="1.0" encoding="UTF-8"?>\n'
                                                   b"<CopyObjectResult></CopyObjectResult>")
            etag = hashlib.md5(data).hexdigest()
            return httpx.Response(200, content=(f'<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult>'
                                                f"<ETag>&#34;{etag}&#34;</ETag><LastModified>2024-01-01T00:00:00Z"
                                                f"</LastModified></CopyObjectResult>").encode())
        if method == "PUT":
            data = request.content
            md5 = headers.get("content-md5")
            if md5 is not None and md5 != base64.b64encode(hashlib.md5(data).digest()).decode():
                return s3_error(400, "BadDigest", "Content-MD5 mismatch")
            self.objects[key] = (data, self.stored_meta(request))
            return httpx.Response(200, headers={"etag": f'"{hashlib.md5(data).hexdigest()}"'})
        if method in ("GET", "HEAD") and key and "uploadId" not in params:
            if key not in self.objects:
                return httpx.Response(404) if method == "HEAD" else s3_error(404, "NoSuchKey")
            data = self.objects[key][0]
            reply = self.object_headers(key)
            spec = request.headers.get("range")
            if spec and method == "GET":
                first, last = (int(x) for x in spec[6:].split("-"))
                if first >= len(data):
                    return s3_error(416, "InvalidRange")
                part = data[first: last + 1]
                reply["content-range"] = f"bytes {first}-{first + len(part) - 1}/{len(data)}"
                return httpx.Response(200, headers=reply, content=part)
            if method == "HEAD":
                reply["content-length"] = str(len(data))
                return httpx.Response(200, headers=reply)
            return httpx.Response(200, headers=reply, content=data)
        if method == "POST" and "uploads" in params:
            upload_id = f"up-{len(self.uploads) + 1}"
            self.uploads[upload_id] = {}
            self.upload_meta[upload_id] = self.stored_meta(request)
            return httpx.Response(200, content=f"<InitiateMultipartUploadResult><Bucket>{BUCKET}</Bucket><Key>{key}"
                                               f"</Key><UploadId>{upload_id}</UploadId>"
                                               f"</InitiateMultipartUploadResult>".encode())
        if method == "POST" and "uploadId" in params:
            parts = self.uploads.pop(params["uploadId"])
            ordered = [parts[n] for n in sorted(parts)]
            self.objects[key] = (b"".join(ordered), self.upload_meta.pop(params["uploadId"]))
            etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in ordered)).hexdigest() + f"-{len(ordered)}"
            return httpx.Response(200, content=f"<CompleteMultipartUploadResult><Bucket>{BUCKET}</Bucket><Key>{key}"
                                               f"</Key><ETag>&#34;{etag}&#34;</ETag>"
                                               f"</CompleteMultipartUploadResult>".encode())
        if method == "DELETE":
            if "uploadId" in params:
                self.uploads.pop(params["uploadId"], None)
            else:
                self.objects.pop(key, None)
            return httpx.Response(204)
        return s3_error(501, "NotImplemented")
