"""What COS headers and bodies mean, as pure functions: no I/O, no clock, no logging.

Every function here takes plain values (or an `httpx.Response` whose headers it reads, never
its body) and returns plain values. A reply that cannot be used is described in words
(`span_problem`, `reply_shape`), never raised: the caller decides which error it is and logs
it, so what is logged and counted stays in one place (`cosfs.cos.engine`).
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import functools
import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx

from cosfs.cos import crc64
from cosfs.cos.endpoint import Dialect
from cosfs.cos.store import ListPage, ObjectMeta, PartInfo

if TYPE_CHECKING:
    from cosfs.config import CosConfig

_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")


def bytes_spec(byte_range: tuple[int, int]) -> str:
    """`bytes=first-last` (inclusive) for Range and x-cos-copy-source-range."""
    first, last = byte_range
    if first < 0 or last < first:
        raise ValueError(f"bad byte range {byte_range}")
    return f"bytes={first}-{last}"


def quote_etag(etag: str) -> str:
    """An ETag as If-Match and x-cos-copy-source-if-match take it: quoted (callers hold it bare)."""
    return etag if etag.startswith('"') else f'"{etag}"'


def md5_b64(data: bytes) -> str:
    """Content-MD5's value: the base64 of the MD5 digest (not the hex an ETag shows)."""
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def http_time(value: str | None) -> float:
    """An HTTP date (Date, Last-Modified) in epoch seconds; 0.0 when absent or unreadable, so
    that an odd date never fails a request."""
    if not value:
        return 0.0
    return _http_time(value)


@functools.lru_cache(maxsize=1024)
def _http_time(value: str) -> float:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return 0.0


def content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """(first, last, total) of `bytes a-b/total` (total None for `*`); None when unusable."""
    if not value or not value.startswith("bytes "):
        return None
    spec = value[6:].strip()
    try:
        span, _, total = spec.partition("/")
        first, _, last = span.partition("-")
        return int(first), int(last), (None if total.strip() in ("", "*") else int(total))
    except ValueError:
        return None


def reply_headers(response: httpx.Response) -> dict[str, str]:
    """The reply's headers as a plain dict of lower-cased names (the last of repeated
    ones), built once per reply: httpx's Headers decodes every header at each lookup."""
    headers = response.extensions.get("cosfs_headers")
    if headers is None:
        headers = response.extensions["cosfs_headers"] = {k.lower(): v for k, v in response.headers.multi_items()}
    return headers


def content_length(response: httpx.Response) -> int | None:
    """The announced body length; None when absent or not a number (the body then tells)."""
    text = reply_headers(response).get("content-length", "").strip()
    return int(text) if text.isdigit() else None


def etag_of(response: httpx.Response) -> str:
    """The reply's ETag without its quotes, as `ObjectMeta` and `PartInfo` hold ETags."""
    return reply_headers(response).get("etag", "").strip().strip('"')


def reply_crc64(response: httpx.Response) -> int | None:
    """The object's CRC64 as the server states it (x-cos-hash-crc64ecma); None from a server
    without CRC64 (S3-compatible, not COS), which is never failed for it."""
    return crc64.parse_header(reply_headers(response).get("x-cos-hash-crc64ecma"))


def object_meta(key: str, response: httpx.Response, dialect: Dialect, size: int | None = None) -> ObjectMeta:
    """The `ObjectMeta` a HEAD or GET reply states. `size` overrides Content-Length, which
    for a ranged GET is the range's, not the object's. User metadata is read under either
    prefix (x-cos-meta-*, x-amz-meta-*), as `dialect` knows them."""
    h = reply_headers(response)
    if size is None:
        size = content_length(response) or 0
    return ObjectMeta(
        key=key,
        size_bytes=size,
        etag=etag_of(response),
        last_modified_s=http_time(h.get("last-modified")),
        content_type=h.get("content-type", "application/octet-stream"),
        crc64=reply_crc64(response),
        user_meta=dialect.user_meta(h.items()),
        storage_class=dialect.header(h, "storage-class", "STANDARD") or "STANDARD",
        appendable=h.get("x-cos-object-type", "").lower() == "appendable",
    )


def span_problem(span: tuple[int, int, int | None] | None, first: int, last: int | None,
                 length: int | None) -> str | None:
    """Why a 206 reply does not carry bytes [first, last] (`last` None: to the object's end),
    or None when it does. It may stop short of `last` only at the object's end, and its body
    (Content-Length, when given) must be exactly the span: anything else would put other
    bytes where the ones asked for belong, and caches would keep them."""
    if span is None:
        return "206 without a usable Content-Range"
    got_first, got_last, total = span
    if total is None:
        end = last
    else:
        end = total - 1 if last is None else min(last, total - 1)
    shown = f"bytes {got_first}-{got_last}/{'*' if total is None else total}"
    if got_first != first or got_last != end:
        return f"asked for bytes {first}-{'' if last is None else last}, got Content-Range {shown}"
    if length is not None and length != got_last - got_first + 1:
        return f"Content-Range {shown} with a body of {length} bytes"
    return None


def reply_shape(response: httpx.Response, first: int, last: int | None,
                length: int | None) -> tuple[tuple[int, int, int | None] | None, str | None]:
    """What a 200/206 GET reply holds, for a request of bytes [first, last] (`last` None: to
    the end; (0, None) is a whole-object GET): (span, None) when it is exactly that range
    (`span` its Content-Range), (None, None) when it is the whole object, from which the
    range is sliced, or (None, problem) when it is neither and must be refused.

    A 206 is the range or nothing (`span_problem`). A 200 without Content-Range is the whole
    object (RFC 9110 lets a server ignore Range). A 200 with a Content-Range (rclone answers
    ranged GETs so) is the range when it names exactly the bytes asked for, the whole object
    when it names all of them (checked first: a whole object keeps its CRC64 check), and
    refused otherwise."""
    span = content_range(reply_headers(response).get("content-range"))
    if response.status_code == 206:
        return span, span_problem(span, first, last, length)
    if span is None:
        if reply_headers(response).get("content-range"):
            return None, f"200 with an unusable Content-Range {reply_headers(response)['content-range']!r}"
        return None, None
    got_first, got_last, total = span
    if got_first == 0 and total is not None and got_last == total - 1 and length in (None, total):
        return None, None
    problem = span_problem(span, first, last, length)
    if problem is None:
        return span, None
    return None, f"200 with a Content-Range: {problem}"


def ignored_if_match(if_match: str | None, etag: str) -> bool:
    """A reply to an If-Match request that names another version: the server ignored the
    condition, so what it sent belongs to a version nobody asked for."""
    return bool(if_match and etag and etag != if_match.strip('"'))


def etag_contradicts_md5(etag: str, md5: str) -> bool:
    """True when `etag` has the form of an MD5 (a single PUT's or part's ETag) but is not the
    MD5 (`md5`, base64 as in Content-MD5) of the bytes sent. The integrity check of last
    resort, for servers without CRC64."""
    return bool(_MD5_HEX.fullmatch(etag)) and etag.lower() != base64.b64decode(md5).hex()


def combined_crc(parts: Sequence[PartInfo]) -> int | None:
    """The whole object's CRC64 from its parts' (in part order), without re-reading a byte;
    None unless every part's CRC64 and size are known."""
    if not parts:
        return None
    total = 0
    for part in parts:
        if part.crc64 is None or part.size_bytes is None:
            return None
        total = crc64.combine(total, part.crc64, part.size_bytes)
    return total


def stray_names(page: ListPage, prefix: str, marker: str) -> tuple[ListPage, list[str]]:
    """The page without the keys and common prefixes a correct server cannot list (outside
    `prefix`, or not after `marker`), and their names: callers walk or rename what a listing
    returns, and must never act on names outside the prefix they asked for."""

    def fits(name: str) -> bool:
        return name.startswith(prefix) and name > marker

    stray = [e.key for e in page.entries if not fits(e.key)] + [p for p in page.common_prefixes if not fits(p)]
    if not stray:
        return page, stray
    kept = dataclasses.replace(
        page,
        entries=tuple(e for e in page.entries if fits(e.key)),
        common_prefixes=tuple(p for p in page.common_prefixes if fits(p)),
    )
    return kept, stray


@dataclasses.dataclass(frozen=True)
class SseHeaders:
    """Encryption headers by request kind: `write` on requests that create an object (PUT,
    Initiate, Copy, first Append), `part` on Upload Part (and Part Copy), `read` on GET and
    HEAD, `copy_source` naming the key of an SSE-C source."""

    write: dict[str, str]
    part: dict[str, str]
    read: dict[str, str]
    copy_source: dict[str, str]


def sse_headers(config: CosConfig) -> SseHeaders:
    """The encryption headers COSFS's use_sse asks for: SSE-COS and SSE-KMS only where an
    object is created; an SSE-C key wherever the object's bytes are read or written, since
    the server keeps no copy of it."""
    write: dict[str, str] = {}
    customer: dict[str, str] = {}
    if config.sse_customer_key is not None:
        key = config.sse_customer_key
        customer = {"x-cos-server-side-encryption-customer-algorithm": "AES256",
                    "x-cos-server-side-encryption-customer-key": base64.b64encode(key).decode(),
                    "x-cos-server-side-encryption-customer-key-md5": md5_b64(key)}
    if config.server_side_encryption == "SSE-C":
        write = dict(customer)
    elif config.server_side_encryption:
        write["x-cos-server-side-encryption"] = config.server_side_encryption
        if config.sse_kms_key_id:
            write["x-cos-server-side-encryption-cos-kms-key-id"] = config.sse_kms_key_id
    source = {name.replace("x-cos-", "x-cos-copy-source-", 1): value for name, value in customer.items()}
    return SseHeaders(write=write, part=write if config.server_side_encryption == "SSE-C" else {},
                      read=customer, copy_source=source)


def extra_headers(rules: Sequence[tuple[str, str, str]], key: str) -> dict[str, str]:
    """ahbe_conf: the headers of every rule whose suffix or "reg:" regex matches "/" + key."""
    path = "/" + key
    headers: dict[str, str] = {}
    for pattern, name, value in rules:
        if pattern.startswith("reg:") and re.search(pattern[4:], path) or path.endswith(pattern):
            headers[name.lower()] = value
    return headers
