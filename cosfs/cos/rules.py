"""The rules of COS, once: pure functions (sans-I/O, as h11 is) that both the in-memory store
(`cosfs.cos.memory`) and `cosfs serve` (`cosfs.server`) apply, so the two cannot drift apart.

Nothing here touches a file, a socket or a clock; every function takes plain values and either
returns a decision or raises the typed `cosfs.errors.CosError` that COS would answer with
(`error(code, message)`, its HTTP status from `STATUS`). Fixed vectors: tests/unit/test_rules.py.

- errors      `STATUS` (code -> HTTP status), `status_for`, `error`
- names       bucket names, object keys (`check_key`)
- listing     GET Bucket paging (`list_keys`), List Multipart Uploads paging (`select_uploads`)
- reads       conditionals (`check_conditions`), ranges (`parse_range`)
- writes      user metadata size, storage classes, metadata directive and self-copy
- multipart   part numbers, Complete's part checks (`check_complete`), the `<hex>-N` ETag
- append      position and appendability (`check_append`), the appendable ETag
- ACL         canned ACLs, x-cos-grant-* headers, AccessControlPolicy XML, anonymous access
- CORS        CORSConfiguration XML, preflight and response headers (`cors_headers`)

The client's own copy of the code -> status table (cosfs/cos/client.py, `_STATUS_FOR_CODE`,
used for errors inside a 200) is not yet replaced by `STATUS`: that file was being changed by
someone else when this module was made.
"""

from __future__ import annotations

import bisect
import dataclasses
import email.utils
import fnmatch
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from cosfs.cos import xml as cosxml
from cosfs.cos.outcomes import cos_error
from cosfs.cos.store import (
    MAX_DELETE_KEYS,
    MAX_KEY_BYTES,
    MAX_LIST_KEYS,
    MAX_PART_BYTES,
    MAX_PARTS,
    MAX_SINGLE_PUT_BYTES,
    MIN_PART_BYTES,
)
from cosfs.errors import CosError, ProtocolError

__all__ = ["MAX_DELETE_KEYS", "MAX_KEY_BYTES", "MAX_LIST_KEYS", "MAX_PARTS", "MAX_PART_BYTES", "MIN_PART_BYTES"]

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
    """The typed exception (`cosfs.errors.cos_error`) for a COS error code."""
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


class _UploadLike(Protocol):
    key: str
    upload_id: str


U = TypeVar("U", bound=_UploadLike)


def select_uploads(uploads: Iterable[U], prefix: str, delimiter: str, key_marker: str, upload_id_marker: str,
                   max_uploads: int) -> tuple[list[U], list[str], bool]:
    """List Multipart Uploads: (uploads, common prefixes, truncated), paging over (key, id)."""
    chosen: list[U] = []
    prefixes: list[str] = []
    count = 0
    for upload in sorted(uploads, key=lambda u: (u.key, u.upload_id)):
        if not upload.key.startswith(prefix):
            continue
        if key_marker:
            if upload.key < key_marker:
                continue
            if upload.key == key_marker and (not upload_id_marker or upload.upload_id <= upload_id_marker):
                continue
        if delimiter:
            pos = upload.key.find(delimiter, len(prefix))
            if pos >= 0:
                common = upload.key[: pos + len(delimiter)]
                if (prefixes and prefixes[-1] == common) or (key_marker and common <= key_marker):
                    continue
                if count == max_uploads:
                    return chosen, prefixes, True
                prefixes.append(common)
                count += 1
                continue
        if count == max_uploads:
            return chosen, prefixes, True
        chosen.append(upload)
        count += 1
    return chosen, prefixes, False


# --- reads: conditionals and ranges ----------------------------------------------------------


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


def parse_http_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed.timestamp()


def check_conditions(headers: Mapping[str, str], etag: str, last_modified_s: float, prefix: str = "") -> int | None:
    """412, 304 or None (proceed) for the If-* headers (lower-case names) of a read, or the
    x-cos-copy-source-If-* ones of a copy with `prefix`. Dates compare in whole seconds;
    If-Match wins over If-Unmodified-Since, If-None-Match over If-Modified-Since."""
    modified = int(last_modified_s)
    if_match = headers.get(prefix + "if-match")
    if if_match is not None and not etag_matches(if_match, etag):
        return 412
    if if_match is None:
        since = headers.get(prefix + "if-unmodified-since")
        if since is not None:
            when = parse_http_date(since)
            if when is not None and modified > when:
                return 412
    if_none = headers.get(prefix + "if-none-match")
    if if_none is not None and etag_matches(if_none, etag):
        return 304
    if if_none is None:
        since = headers.get(prefix + "if-modified-since")
        if since is not None:
            when = parse_http_date(since)
            if when is not None and modified <= when:
                return 304
    return None


_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")


def parse_range(value: str | None, size: int) -> tuple[int, int] | None | str:
    """(first, last) inclusive; None for "whole object"; "invalid" for an unsatisfiable range.

    Multiple or unparseable ranges are ignored (whole object), as S3 does.
    """
    if value is None:
        return None
    match = _RANGE_RE.fullmatch(value)
    if not match:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            return "invalid"
        return (max(0, size - suffix), size - 1)
    first = int(first_text)
    if last_text:
        last = int(last_text)
        if last < first:
            return None
    else:
        last = size - 1
    if first >= size:
        return "invalid"
    return (first, min(last, size - 1))


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


def replaces_metadata(directive: str | None) -> bool:
    """x-cos-metadata-directive: Copy (default) or Replaced (REPLACE, S3's spelling, too)."""
    value = (directive or "Copy").strip().lower()
    if value not in ("copy", "replaced", "replace"):
        raise error("InvalidArgument", "x-cos-metadata-directive must be Copy or Replaced.")
    return value != "copy"


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


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """(part number, ETag) pairs of a CompleteMultipartUpload document, in document order."""
    root = _xml_root(body, "CompleteMultipartUpload")
    parts: list[tuple[int, str]] = []
    for element in root.findall("Part"):
        number_text = cosxml.text(element, "PartNumber")
        etag = cosxml.child_text(element, "ETag", "Etag")
        try:
            number = int(number_text)
        except ValueError:
            raise error("MalformedXML", "PartNumber must be an integer.") from None
        parts.append((number, normalize_etag(etag)))
    if not parts:
        raise error("MalformedXML", "CompleteMultipartUpload needs at least one Part.")
    if len(parts) > MAX_PARTS:
        raise error("MalformedXML", "Too many parts.")
    return parts


def parse_delete(body: bytes) -> tuple[list[str], bool]:
    """(keys, quiet) of a Delete Multiple Objects document; 1..1000 objects, each with a Key."""
    root = _xml_root(body, "Delete")
    quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
    objects = root.findall("Object")
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise error("MalformedXML", f"Delete needs 1 to {MAX_DELETE_KEYS} objects.")
    keys: list[str] = []
    for element in objects:
        key_element = element.find("Key")
        if key_element is None or not key_element.text:
            raise error("MalformedXML", "Every Object needs a Key.")
        keys.append(key_element.text)
    return keys, quiet


def _xml_root(body: bytes, tag: str) -> ET.Element:
    try:
        root = cosxml.parse(body)
    except ProtocolError:
        raise error("MalformedXML", "The XML you provided was not well-formed or did not validate.") from None
    if root.tag != tag:
        raise error("MalformedXML", f"The root element must be {tag}.")
    return root


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


# --- ACL -------------------------------------------------------------------------------------

ALL_USERS_URI = "http://cam.qcloud.com/groups/global/AllUsers"
ANYONE_IDS = frozenset({"qcs::cam::anyone:anyone", "anyone"})
CANNED_BUCKET = ("private", "public-read", "public-read-write")
CANNED_OBJECT = ("default",) + CANNED_BUCKET
PERMISSIONS = ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")
GRANT_HEADERS = {
    "x-cos-grant-read": "READ",
    "x-cos-grant-write": "WRITE",
    "x-cos-grant-read-acp": "READ_ACP",
    "x-cos-grant-write-acp": "WRITE_ACP",
    "x-cos-grant-full-control": "FULL_CONTROL",
}
_GRANTEE = re.compile(r'\s*(id|uri)\s*=\s*"([^"]*)"\s*(?:,|$)', re.IGNORECASE)
XSI = "http://www.w3.org/2001/XMLSchema-instance"


@dataclasses.dataclass(frozen=True)
class Acl:
    """An access control list: a canned name and explicit grants ((permission, kind, value),
    kind "id" or "uri"). `default` (objects only) means: as the bucket says."""

    canned: str = "private"
    grants: tuple[tuple[str, str, str], ...] = ()

    def to_json(self) -> dict:
        return {"canned": self.canned, "grants": [list(g) for g in self.grants]}

    @classmethod
    def from_json(cls, doc) -> "Acl | None":
        if doc is None:
            return None
        return cls(doc["canned"], tuple(tuple(g) for g in doc.get("grants", ())))  # type: ignore[misc]

    def public(self) -> frozenset[str]:
        """The permissions anyone (an unsigned request) has."""
        found = set()
        if self.canned in ("public-read", "public-read-write"):
            found.add("READ")
        if self.canned == "public-read-write":
            found.add("WRITE")
        for permission, kind, value in self.grants:
            if (kind == "uri" and value == ALL_USERS_URI) or (kind == "id" and value in ANYONE_IDS):
                found.add(permission)
        if "FULL_CONTROL" in found:
            found.update(PERMISSIONS)
        return frozenset(found)


def parse_grantees(value: str) -> list[tuple[str, str]]:
    """`id="qcs::cam::uin/1:uin/2",uri="http://..."` -> [(kind, value)]; InvalidArgument."""
    found: list[tuple[str, str]] = []
    position = 0
    text = value.strip()
    while position < len(text):
        match = _GRANTEE.match(text, position)
        if match is None or match.end() == position:
            raise error("InvalidArgument", "x-cos-grant-* must be a list of id=\"...\" or uri=\"...\".")
        found.append((match.group(1).lower(), match.group(2)))
        position = match.end()
    if not found:
        raise error("InvalidArgument", "x-cos-grant-* names no grantee.")
    return found


def acl_from_headers(headers: Mapping[str, str], *, for_object: bool) -> Acl | None:
    """The ACL that x-cos-acl / x-cos-grant-* (or x-amz-*) ask for, or None when they are absent."""
    canned_value = headers.get("x-cos-acl") or headers.get("x-amz-acl")
    grants: list[tuple[str, str, str]] = []
    for name, permission in GRANT_HEADERS.items():
        value = headers.get(name) or headers.get("x-amz-" + name[len("x-cos-"):])
        if value:
            grants += [(permission, kind, grantee) for kind, grantee in parse_grantees(value)]
    if canned_value is None and not grants:
        return None
    allowed = CANNED_OBJECT if for_object else CANNED_BUCKET
    canned = (canned_value or "private").strip().lower()
    if canned not in allowed:
        raise error("InvalidArgument", f"x-cos-acl must be one of {', '.join(allowed)}.")
    if canned == "default" and grants:
        canned = "private"
    return Acl(canned, tuple(grants))


def parse_acl_xml(body: bytes, *, for_object: bool) -> Acl:
    """An AccessControlPolicy document as an Acl (grants only; the owner's grant is implied)."""
    root = _xml_root(body, "AccessControlPolicy")
    grants: list[tuple[str, str, str]] = []
    listing = root.find("AccessControlList")
    for grant in listing.findall("Grant") if listing is not None else []:
        permission = cosxml.text(grant, "Permission").upper()
        if permission not in PERMISSIONS:
            raise error("MalformedACLError", f"Unknown permission {permission!r}.")
        grantee = grant.find("Grantee")
        if grantee is None:
            raise error("MalformedACLError", "Every Grant needs a Grantee.")
        uri = cosxml.text(grantee, "URI")
        ident = cosxml.text(grantee, "ID")
        if uri:
            grants.append((permission, "uri", uri))
        elif ident:
            grants.append((permission, "id", ident))
        else:
            raise error("MalformedACLError", "A Grantee needs an ID or a URI.")
    return Acl("private", tuple(grants))


def acl_xml(acl: Acl, owner_id: str) -> bytes:
    """The AccessControlPolicy document GET ?acl answers with: the owner's FULL_CONTROL, the
    canned ACL's group grants, then the explicit grants."""
    root = ET.Element("AccessControlPolicy")
    owner = ET.SubElement(root, "Owner")
    ET.SubElement(owner, "ID").text = owner_id
    ET.SubElement(owner, "DisplayName").text = owner_id
    listing = ET.SubElement(root, "AccessControlList")
    entries: list[tuple[str, str, str]] = [("FULL_CONTROL", "id", owner_id)]
    if acl.canned in ("public-read", "public-read-write"):
        entries.append(("READ", "uri", ALL_USERS_URI))
    if acl.canned == "public-read-write":
        entries.append(("WRITE", "uri", ALL_USERS_URI))
    entries += [g for g in acl.grants if g not in entries]
    for permission, kind, value in entries:
        grant = ET.SubElement(listing, "Grant")
        grantee = ET.SubElement(grant, "Grantee", {f"{{{XSI}}}type": "Group" if kind == "uri" else "CanonicalUser"})
        if kind == "uri":
            ET.SubElement(grantee, "URI").text = value
        else:
            ET.SubElement(grantee, "ID").text = value
            ET.SubElement(grantee, "DisplayName").text = value
        ET.SubElement(grant, "Permission").text = permission
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def anonymous_may(permission: str, bucket_acl: Acl, object_acl: Acl | None = None) -> bool:
    """Whether an unsigned request has `permission` (READ, WRITE, READ_ACP, WRITE_ACP) on the
    bucket (object_acl None) or on an object: an object ACL of `default` (or none) defers to
    the bucket's; bucket WRITE covers writing objects."""
    if object_acl is not None and (object_acl.canned != "default" or object_acl.grants):
        return permission in object_acl.public()
    return permission in bucket_acl.public()


# --- CORS ------------------------------------------------------------------------------------

CORS_METHODS = ("GET", "PUT", "HEAD", "POST", "DELETE")
MAX_CORS_RULES = 100


@dataclasses.dataclass(frozen=True)
class CorsRule:
    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    max_age_s: int | None = None
    rule_id: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "CorsRule":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})


def _texts(element: ET.Element, tag: str) -> tuple[str, ...]:
    """The stripped, non-empty texts of the children `tag` of `element`."""
    return tuple((e.text or "").strip() for e in element.findall(tag) if (e.text or "").strip())


def parse_cors_xml(body: bytes) -> tuple[CorsRule, ...]:
    """A CORSConfiguration document: 1..100 rules, each with origins and methods."""
    root = _xml_root(body, "CORSConfiguration")
    rules: list[CorsRule] = []
    for element in root.findall("CORSRule"):
        origins = _texts(element, "AllowedOrigin")
        methods = tuple(m.upper() for m in _texts(element, "AllowedMethod"))
        if not origins or not methods:
            raise error("MalformedXML", "Every CORSRule needs an AllowedOrigin and an AllowedMethod.")
        for method in methods:
            if method not in CORS_METHODS:
                raise error("InvalidArgument", f"Unsupported AllowedMethod {method}.")
        for origin in origins:
            if origin.count("*") > 1:
                raise error("InvalidArgument", f"AllowedOrigin {origin!r} may hold at most one *.")
        max_age_text = cosxml.text(element, "MaxAgeSeconds")
        max_age = None
        if max_age_text:
            try:
                max_age = int(max_age_text)
            except ValueError:
                raise error("MalformedXML", "MaxAgeSeconds must be an integer.") from None
            if max_age < 0:
                raise error("InvalidArgument", "MaxAgeSeconds must not be negative.")
        rules.append(CorsRule(origins, methods, _texts(element, "AllowedHeader"), _texts(element, "ExposeHeader"),
                              max_age, cosxml.text(element, "ID")))
    if not rules or len(rules) > MAX_CORS_RULES:
        raise error("MalformedXML", f"CORSConfiguration needs 1 to {MAX_CORS_RULES} CORSRule.")
    return tuple(rules)


def cors_xml(rules: Sequence[CorsRule]) -> bytes:
    children = []
    for rule in rules:
        fields: list = []
        if rule.rule_id:
            fields.append(("ID", rule.rule_id))
        fields += [("AllowedOrigin", o) for o in rule.origins]
        fields += [("AllowedMethod", m) for m in rule.methods]
        fields += [("AllowedHeader", h) for h in rule.headers]
        fields += [("ExposeHeader", h) for h in rule.expose]
        if rule.max_age_s is not None:
            fields.append(("MaxAgeSeconds", rule.max_age_s))
        children.append(("CORSRule", fields))
    return cosxml.build("CORSConfiguration", children)


def _wildcard(pattern: str, value: str, *, fold: bool) -> bool:
    if fold:
        pattern, value = pattern.lower(), value.lower()
    if "*" not in pattern:
        return pattern == value
    # only * is special (fnmatch's [ ] and ? are escaped)
    escaped = "".join("[" + c + "]" if c in "[]?" else c for c in pattern)
    return fnmatch.fnmatchcase(value, escaped)


def cors_match(rules: Sequence[CorsRule], origin: str, method: str,
               request_headers: Sequence[str] = ()) -> CorsRule | None:
    """The first rule allowing `origin` to use `method` with `request_headers` (lower-case)."""
    for rule in rules:
        if method.upper() not in rule.methods:
            continue
        if not any(_wildcard(o, origin, fold=False) for o in rule.origins):
            continue
        if all(any(_wildcard(h, wanted, fold=True) for h in rule.headers) for wanted in request_headers):
            return rule
    return None


def cors_headers(rule: CorsRule, origin: str, *, preflight: bool,
                 request_headers: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The Access-Control-* headers a matching rule answers with."""
    allow_origin = "*" if rule.origins == ("*",) else origin
    headers = [("Access-Control-Allow-Origin", allow_origin)]
    if allow_origin != "*":
        headers.append(("Vary", "Origin"))
    headers.append(("Access-Control-Allow-Methods", ", ".join(rule.methods)))
    if preflight:
        if request_headers:
            headers.append(("Access-Control-Allow-Headers", ", ".join(request_headers)))
        if rule.max_age_s is not None:
            headers.append(("Access-Control-Max-Age", str(rule.max_age_s)))
    if rule.expose:
        headers.append(("Access-Control-Expose-Headers", ", ".join(rule.expose)))
    return headers


def preflight(rules: Sequence[CorsRule] | None, origin: str | None, method: str | None,
              request_headers: str | None) -> list[tuple[str, str]]:
    """An OPTIONS preflight: the headers to answer 200 with, or raise (400 without Origin or
    Access-Control-Request-Method, 403 AccessForbidden when no rule allows it)."""
    if not origin or not method:
        raise error("BadRequest", "Insufficient information: Origin and Access-Control-Request-Method are needed.")
    wanted = [h.strip().lower() for h in (request_headers or "").split(",") if h.strip()]
    rule = cors_match(rules or (), origin, method, wanted)
    if rule is None:
        raise error("AccessForbidden", "CORSResponse: This CORS request is not allowed. This is usually because the "
                    "evaluation of Origin, request method / Access-Control-Request-Method or "
                    "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.")
    return cors_headers(rule, origin, preflight=True, request_headers=wanted)
