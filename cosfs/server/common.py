"""What every handler of `cosfs serve` shares: the COS error type, the parsed request, helpers."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from cosfs import errors
from cosfs.cos import rules
from cosfs.server.acl import Acl, acl_from_headers
from cosfs.server.http import Request
from cosfs.server.storage import Bucket, ObjectRecord

MAX_KEY_BYTES = rules.MAX_KEY_BYTES
MAX_OBJECT_BYTES = rules.MAX_OBJECT_BYTES
MAX_PART_BYTES = rules.MAX_PART_BYTES
MIN_PART_BYTES = rules.MIN_PART_BYTES
MAX_PART_NUMBER = rules.MAX_PARTS
# Complete and Delete bodies are read into memory; 10,000 parts or 1,000 keys of 850 bytes
# take about 1 MiB.
MAX_XML_BODY_BYTES = 2 * 1024 * 1024
MAX_USER_META_BYTES = rules.MAX_USER_META_BYTES
BUCKET_RE = rules.BUCKET_RE
STATUS = rules.STATUS


class CosError(errors.CosError):
    """An error answer: COS code, message, HTTP status (`rules.status_for` unless given) and
    extra response headers. Handlers raise this or any other `cosfs.errors.CosError` (as
    `cosfs.cos.rules` and the server's rule modules do); `App.handle` answers both alike."""

    def __init__(self, code: str, message: str, status: int | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status if status is not None else rules.status_for(code), code, message)
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

    def get(self, name: str, default=None):
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
STORAGE_CLASSES = rules.STORAGE_CLASSES


def metadata_from_request(headers: Mapping[str, str]) -> tuple[str, dict[str, str], str]:
    """(content type, stored headers incl. x-cos-meta-*, storage class) of a PUT-like request."""
    content_type = headers.get("content-type") or "application/octet-stream"
    stored: dict[str, str] = {}
    for name in STORED_HEADERS:
        if name in headers:
            stored[name] = headers[name]
    user_meta: dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith("x-cos-meta-") or name.startswith("x-amz-meta-"):
            suffix = name[len("x-cos-meta-"):]
            user_meta[suffix] = value
            stored["x-cos-meta-" + suffix] = value
    rules.check_user_meta(user_meta)
    storage_class = rules.storage_class(headers.get("x-cos-storage-class") or headers.get("x-amz-storage-class"))
    return content_type, stored, storage_class


def acl_from_request(headers: Mapping[str, str], *, for_object: bool = True) -> Acl | None:
    return acl_from_headers(headers, for_object=for_object)
