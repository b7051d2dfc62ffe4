"""The rules of COS, once: pure functions (sans-I/O, as h11 is) that both the in-memory store
(`cosfs.cos.memory`) and `cosfs serve` (`cosfs.server`) apply, so the two cannot drift apart.

Nothing here touches a file, a socket or a clock; every function takes plain values and either
returns a decision or raises the typed `cosfs.errors.CosError` that COS would answer with
(`error(code, message)`, its HTTP status from `STATUS`). Fixed vectors: tests/unit/test_rules.py.

- errors      `STATUS` (code -> HTTP status), `status_for`, `error`
- names       bucket names, object keys (`check_key`)
- listing     GET Bucket paging (`list_keys`)
- ETags       normalizing, If-Match / If-None-Match lists (`etag_matches`)
- writes      user metadata size, storage classes, self-copy (`check_copy`)
- multipart   part numbers, Complete's part checks (`check_complete`), the `<hex>-N` ETag
- append      position and appendability (`check_append`), the appendable ETag
- ACLs        the canned ACL names COS knows (`check_canned_acl`)

Rules that only the server applies, because only it reads requests and enforces ACLs and CORS,
are pure modules of `cosfs.server`: `request_rules` (conditionals, ranges, the metadata
directive, the Complete and Delete XML bodies, List Multipart Uploads paging), `acl` (grants,
AccessControlPolicy XML, anonymous access) and `cors` (CORSConfiguration XML, preflight and
response headers).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from cosfs.cos.outcomes import cos_error
from cosfs.cos.store import (
    MAX_KEY_BYTES,
    MAX_LIST_KEYS,
    MAX_PART_BYTES,
    MAX_PARTS,
    MAX_SINGLE_PUT_BYTES,
    MIN_PART_BYTES,
)
from cosfs.errors import CosError

__all__ = ["MAX_KEY_BYTES", "MAX_LIST_KEYS", "MAX_PARTS", "MAX_PART_BYTES", "MIN_PART_BYTES"]

MAX_OBJECT_BYTES = MAX_SINGLE_PUT_BYTES
MAX_USER_META_BYTES = 2048

# --- errors ----------------------------------------------------------------------------------

STATUS: dict[str, int] = {
    "AccessDenied": 403,
    "AccessForbidden": 403,
    "InvalidAccessKeyId": 403,
    "SignatureDoesNotMatch": 403,
    "RequestTimeTooSkewed": 403,
    "InvalidToken": 403,
    "InvalidObjectState": 403,
    "PathStyleDomainForbidden": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "ExpiredToken": 400,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NoSuchCopySource": 404,
    "NoSuchCORSConfiguration": 404,
    "InvalidArgument": 400,
    "InvalidRequest": 400,
    "InvalidBucketName": 400,
    "InvalidCopySource": 400,
    "InvalidDelimiter": 400,
    "MalformedXML": 400,
    "MalformedACLError": 400,
    "KeyTooLong": 400,
    "InvalidURI": 400,
    "InvalidObjectName": 400,
    "MetadataTooLarge": 400,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "BadDigest": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "XAmzContentSHA256Mismatch": 400,
    "RequestHeaderSectionTooLarge": 400,
    "IncompleteBody": 400,
    "RequestTimeout": 400,
    "BadRequest": 400,
    "MethodNotAllowed": 405,
    "AppendPositionErr": 409,
    "ObjectNotAppendable": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketAlreadyExists": 409,
    "BucketNotEmpty": 409,
    "PathConflict": 409,
    "UploadConflict": 409,
    "MissingContentLength": 411,
    "PreconditionFailed": 412,
    "InvalidRange": 416,
    "InternalError": 500,
    "KmsInternalException": 500,
    "NotImplemented": 501,
    "SlowDown": 503,
    "ServiceUnavailable": 503,
    "KmsFreqControl": 503,
}


def status_for(code: str) -> int:
    """The HTTP status COS answers a code with (unknown codes: 500 if "Internal", else 400)."""
    found = STATUS.get(code)
    if found is not None:
        return found
    return 500 if "Internal" in code else 400


def error(code: str, message: str, resource: str = "") -> CosError:
    """The typed exception for a COS error code, with the status COS answers it with
    (`cosfs.cos.outcomes.cos_error` picks the class)."""
    return cos_error(status_for(code), code, message, resource=resource)


# --- names -----------------------------------------------------------------------------------

# <name>-<appid>; the name part 1..50 of [a-z0-9-], not starting or ending in '-'.
BUCKET_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?-[0-9]+")


def key_bytes(key: str) -> int:
    return len(key.encode("utf-8", "surrogatepass"))


def check_key(key: str) -> None:
    """A key COS accepts: at most 850 bytes of UTF-8, no NUL."""
    if key_bytes(key) > MAX_KEY_BYTES:
        raise error("KeyTooLong", "Your key is too long.", key[:64])
    if "\x00" in key:
        raise error("InvalidObjectName", "Object keys must not contain NUL.")


# --- listing ---------------------------------------------------------------------------------


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:
                nxt = 0xE000
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


@dataclasses.dataclass(frozen=True)
class ListResult:
    keys: list[str]
    common_prefixes: list[str]
    is_truncated: bool
    next_marker: str | None


def list_keys(sorted_keys: Sequence[str], prefix: str, delimiter: str, marker: str, max_keys: int) -> ListResult:
    """GET Bucket over keys sorted by code point (= UTF-8 byte order).

    Keys strictly after `marker` that start with `prefix`; with a delimiter, keys whose rest
    (after the prefix) contains it are rolled up into a common prefix, which counts once
    toward `max_keys`. A common prefix not greater than the marker was already returned on an
    earlier page and is skipped with all its keys. NextMarker is the last key or prefix of a
    truncated page.
    """
    keys: list[str] = []
    prefixes: list[str] = []
    if max_keys <= 0:
        return ListResult(keys, prefixes, False, None)
    start = bisect.bisect_right(sorted_keys, marker) if marker else 0
    if prefix:
        start = max(start, bisect.bisect_left(sorted_keys, prefix))
    end_bound = prefix_end(prefix) if prefix else None
    stop = bisect.bisect_left(sorted_keys, end_bound) if end_bound is not None else len(sorted_keys)
    i = start
    last: str | None = None
    count = 0
    while i < stop:
        key = sorted_keys[i]
        if delimiter:
            pos = key.find(delimiter, len(prefix))
            if pos >= 0:
                common = key[: pos + len(delimiter)]
                after = prefix_end(common)
                skip_to = bisect.bisect_left(sorted_keys, after, i) if after is not None else stop
                if marker and common <= marker:
                    i = max(skip_to, i + 1)
                    continue
                if count == max_keys:
                    return ListResult(keys, prefixes, True, last)
                prefixes.append(common)
                last = common
                count += 1
                i = max(skip_to, i + 1)
                continue
        if count == max_keys:
            return ListResult(keys, prefixes, True, last)
        keys.append(key)
        last = key
        count += 1
        i += 1
    return ListResult(keys, prefixes, False, None)


# --- ETags -----------------------------------------------------------------------------------


def normalize_etag(value: str) -> str:
    """An ETag as stored: without quotes (or W/), lower-case."""
    return value.strip().removeprefix("W/").strip('"').lower()


def etag_matches(header: str, etag: str) -> bool:
    """Whether an If-Match / If-None-Match list names `etag` (or is `*`)."""
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if normalize_etag(candidate) == etag.lower():
            return True
    return False


# --- writes ----------------------------------------------------------------------------------

STORAGE_CLASSES = frozenset({"STANDARD", "STANDARD_IA", "ARCHIVE", "DEEP_ARCHIVE", "INTELLIGENT_TIERING",
                             "MAZ_STANDARD", "MAZ_STANDARD_IA", "MAZ_INTELLIGENT_TIERING"})


def check_user_meta(meta: Mapping[str, str]) -> None:
    """x-cos-meta-* by suffix: suffixes plus values at most 2 KB."""
    total = 0
    for suffix, value in meta.items():
        if not suffix:
            raise error("InvalidArgument", "Metadata header name is empty.")
        total += len(suffix) + len(value.encode("latin-1", "replace"))
    if total > MAX_USER_META_BYTES:
        raise error("MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.")


def storage_class(value: str | None) -> str:
    """The storage class named (STANDARD when absent), upper-cased; InvalidArgument if unknown."""
    name = (value or "STANDARD").strip().upper()
    if name not in STORAGE_CLASSES:
        raise error("InvalidArgument", f"Invalid storage class {name}.")
    return name


def check_copy(same_object: bool, replace: bool, source_size: int) -> None:
    """PUT Object - Copy: a self-copy must replace the metadata; at most 5 GB in one copy."""
    if same_object and not replace:
        raise error("InvalidRequest", "This copy request is illegal because it is trying to copy an object to "
                    "itself without changing the object's metadata.")
    if source_size > MAX_OBJECT_BYTES:
        raise error("InvalidRequest", "The source is larger than 5 GB; use Upload Part - Copy.")


# --- multipart -------------------------------------------------------------------------------


class PartLike(Protocol):
    @property
    def etag(self) -> str: ...

    @property
    def size(self) -> int: ...


P = TypeVar("P", bound=PartLike)


def check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PARTS:
        raise error("InvalidArgument", f"partNumber must be within 1..{MAX_PARTS}.")


def check_complete(parts: Mapping[int, P], wanted: Sequence[tuple[int, str]]) -> list[P]:
    """Complete Multipart Upload: the uploaded parts chosen by `wanted` ((number, ETag) in
    document order), checked as COS does: at least one, ascending, each uploaded with that
    ETag, each but the last at least 1 MiB."""
    if not wanted:
        raise error("MalformedXML", "CompleteMultipartUpload needs at least one Part.")
    if len(wanted) > MAX_PARTS:
        raise error("MalformedXML", "Too many parts.")
    previous = 0
    for number, _ in wanted:
        if number <= previous:
            raise error("InvalidPartOrder", "The list of parts was not in ascending order.")
        previous = number
    chosen: list[P] = []
    for index, (number, etag) in enumerate(wanted):
        part = parts.get(number)
        if part is None or part.etag.lower() != normalize_etag(etag):
            raise error("InvalidPart", f"Part {number} was not uploaded or its ETag does not match.")
        if index < len(wanted) - 1 and part.size < MIN_PART_BYTES:
            raise error("EntityTooSmall", f"Part {number} is smaller than the minimum of 1 MB.")
        chosen.append(part)
    return chosen


def multipart_etag(part_etags: Sequence[str]) -> str:
    """The ETag of a completed upload: MD5 of the parts' binary MD5s, then -N (S3's form;
    COS's own is opaque, so clients must not depend on it)."""
    digest = hashlib.md5(b"".join(bytes.fromhex(e) for e in part_etags)).hexdigest()
    return f"{digest}-{len(part_etags)}"


# --- append ----------------------------------------------------------------------------------


def check_append(position: int, current_size: int | None, appendable: bool) -> None:
    """APPEND Object at `position` onto an object of `current_size` bytes (None: no object):
    the first append is at 0 and makes the object appendable; later ones at its end."""
    if position < 0:
        raise error("InvalidArgument", "APPEND needs a non-negative position.")
    if current_size is None:
        if position != 0:
            raise error("AppendPositionErr", "Position does not match the object length.")
        return
    if not appendable:
        raise error("ObjectNotAppendable", "The object is not appendable.")
    if position != current_size:
        raise error("AppendPositionErr", "Position does not match the object length.")


def append_etag(crc64: int, size: int) -> str:
    """The ETag of an appendable object (opaque, as COS's is: not the MD5 of the data)."""
    return hashlib.md5(f"{crc64}-{size}".encode()).hexdigest()


# --- canned ACLs -----------------------------------------------------------------------------

CANNED_BUCKET = ("private", "public-read", "public-read-write")
CANNED_OBJECT = ("default",) + CANNED_BUCKET


def check_canned_acl(value: str, *, for_object: bool) -> str:
    """The canned ACL an x-cos-acl value names (stripped, lower-cased); InvalidArgument unless
    it is one COS knows (`default`, as the bucket says, for objects only)."""
    allowed = CANNED_OBJECT if for_object else CANNED_BUCKET
    canned = value.strip().lower()
    if canned not in allowed:
        raise error("InvalidArgument", f"x-cos-acl must be one of {', '.join(allowed)}.")
    return canned
