"""What every handler of `cosfs serve` shares: the COS error type, the parsed request, helpers."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from cosfs.server.http import Request
from cosfs.server.storage import Bucket, ObjectRecord

MAX_KEY_BYTES = 850
MAX_OBJECT_BYTES = 5 * 1024**3
MAX_PART_BYTES = 5 * 1024**3
MIN_PART_BYTES = 1024 * 1024
MAX_PART_NUMBER = 10_000
# Complete and Delete bodies are read into memory; 10,000 parts or 1,000 keys of 850 bytes
# take about 1 MiB.
MAX_XML_BODY_BYTES = 2 * 1024 * 1024
MAX_USER_META_BYTES = 2048

# Bucket names: <name>-<appid>; the name part 1..50 of [a-z0-9-], not starting or ending in '-'.
BUCKET_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?-[0-9]+")

STATUS = {
    "AccessDenied": 403,
    "InvalidAccessKeyId": 403,
    "SignatureDoesNotMatch": 403,
    "RequestTimeTooSkewed": 403,
    "InvalidToken": 403,
    "AuthorizationHeaderMalformed": 400,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "InvalidArgument": 400,
    "InvalidRequest": 400,
    "InvalidBucketName": 400,
    "MalformedXML": 400,
    "KeyTooLong": 400,
    "InvalidURI": 400,
    "InvalidObjectName": 400,
    "MetadataTooLarge": 400,
    "MethodNotAllowed": 405,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "BadDigest": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "XAmzContentSHA256Mismatch": 400,
    "RequestHeaderSectionTooLarge": 400,
    "IncompleteBody": 400,
    "PreconditionFailed": 412,
    "InvalidRange": 416,
    "AppendPositionErr": 409,
    "ObjectNotAppendable": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "MissingContentLength": 411,
    "InternalError": 500,
    "NotImplemented": 501,
    "SlowDown": 503,
}


class CosError(Exception):
    """An error answer: COS code, message, HTTP status (from STATUS unless given)."""

    def __init__(self, code: str, message: str, status: int | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS.get(code, 400)
        self.headers = headers or []


class Query(dict):
    """Query parameters by lower-cased name.

    A COS signature names parameters lower-cased, so `PREFIX=` and `prefix=` verify alike; the
    handlers must not tell them apart either, or a signed value could be swapped for an unsigned
    one. `App.parse` refuses requests that repeat a name in any case.
    """

    def __init__(self, params: list[tuple[str, str]]) -> None:
        super().__init__((name.lower(), value) for name, value in params)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default=None):  # type: ignore[override]
        return super().get(name.lower(), default)


@dataclasses.dataclass
class Ctx:
    """One parsed request: addressing, decoded path and query, and the bucket if any."""

    request: Request
    request_id: str
    raw_path: str
    raw_query: str
    path: str  # percent-decoded
    params: list[tuple[str, str]]  # form-decoded query
    query: Query
    bucket_name: str | None
    key: str  # "" for bucket-level requests
    virtual_host: bool
    host: str
    bucket: Bucket | None = None
    expected_sha256: str | None = None

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    @property
    def method(self) -> str:
        return self.request.method

    def has(self, name: str) -> bool:
        return name in self.query

    @property
    def resource(self) -> str:
        if self.bucket_name is None:
            return "/"
        return f"{self.bucket_name}.cos.ap-guangzhou.myqcloud.com/{self.key}"


def quoted(etag: str) -> str:
    return f'"{etag}"'


def object_headers(record: ObjectRecord) -> list[tuple[str, str]]:
    """The metadata headers GET and HEAD answer with."""
    from cosfs.server.responses import http_date

    headers = [
        ("Content-Type", record.content_type),
        ("ETag", quoted(record.etag)),
        ("Last-Modified", http_date(record.last_modified)),
        ("Accept-Ranges", "bytes"),
        ("x-cos-hash-crc64ecma", str(record.crc64)),
    ]
    for name, value in record.headers.items():
        headers.append((name, value))
    if record.storage_class != "STANDARD":
        headers.append(("x-cos-storage-class", record.storage_class))
    if record.appendable:
        headers.append(("x-cos-object-type", "appendable"))
    return headers


STORED_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language", "expires",
                  "x-cos-server-side-encryption")
STORAGE_CLASSES = {"STANDARD", "STANDARD_IA", "ARCHIVE", "DEEP_ARCHIVE", "INTELLIGENT_TIERING", "MAZ_STANDARD",
                   "MAZ_STANDARD_IA", "MAZ_INTELLIGENT_TIERING"}


def metadata_from_request(headers: Mapping[str, str]) -> tuple[str, dict[str, str], str]:
    """(content type, stored headers incl. x-cos-meta-*, storage class) of a PUT-like request."""
    content_type = headers.get("content-type") or "application/octet-stream"
    stored: dict[str, str] = {}
    meta_bytes = 0
    for name in STORED_HEADERS:
        if name in headers:
            stored[name] = headers[name]
    for name, value in headers.items():
        if name.startswith("x-cos-meta-") or name.startswith("x-amz-meta-"):
            suffix = name[len("x-cos-meta-"):]
            if not suffix:
                raise CosError("InvalidArgument", "Metadata header name is empty.")
            stored["x-cos-meta-" + suffix] = value
            meta_bytes += len(suffix) + len(value.encode("latin-1", "replace"))
    if meta_bytes > MAX_USER_META_BYTES:
        raise CosError("MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.")
    storage_class = (headers.get("x-cos-storage-class") or headers.get("x-amz-storage-class") or "STANDARD").upper()
    if storage_class not in STORAGE_CLASSES:
        raise CosError("InvalidArgument", f"Invalid storage class {storage_class}.")
    return content_type, stored, storage_class
