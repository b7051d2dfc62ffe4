"""COS's rules for what a request asks, which only `cosfs serve` applies: pure functions, as
`cosfs.cos.rules` is (no file, socket or clock), kept next to the server because the in-memory
store never sees a request's headers or XML body.

- conditionals   If-* and x-cos-copy-source-If-* headers (`check_conditions`)
- ranges         the Range header (`parse_range`)
- copy           x-cos-metadata-directive (`replaces_metadata`)
- XML bodies     CompleteMultipartUpload (`parse_complete`), Delete (`parse_delete`), and the
                 root check every request document passes (`xml_root`; `acl`, `cors` use it)
- uploads        List Multipart Uploads paging over (key, upload id) (`select_uploads`)

Errors are the typed `cosfs.errors.CosError` of `cosfs.cos.rules.error`. Fixed vectors:
tests/server/test_request_rules.py.
"""

from __future__ import annotations

import email.utils
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Literal, Protocol, TypeVar

from cosfs.cos import xml as cosxml
from cosfs.cos.rules import MAX_PARTS, error, etag_matches, normalize_etag
from cosfs.cos.store import MAX_DELETE_KEYS
from cosfs.errors import ProtocolError

# --- conditionals ------------------------------------------------------------------------------


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


# --- ranges ------------------------------------------------------------------------------------

_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")


def parse_range(value: str | None, size: int) -> tuple[int, int] | None | Literal["invalid"]:
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


# --- copy --------------------------------------------------------------------------------------


def replaces_metadata(directive: str | None) -> bool:
    """x-cos-metadata-directive: Copy (default) or Replaced (REPLACE, S3's spelling, too)."""
    value = (directive or "Copy").strip().lower()
    if value not in ("copy", "replaced", "replace"):
        raise error("InvalidArgument", "x-cos-metadata-directive must be Copy or Replaced.")
    return value != "copy"


# --- XML bodies --------------------------------------------------------------------------------


def xml_root(body: bytes, tag: str) -> ET.Element:
    """The root element of a request document, which must be `tag` (MalformedXML otherwise)."""
    try:
        root = cosxml.parse(body)
    except ProtocolError:
        raise error("MalformedXML", "The XML you provided was not well-formed or did not validate.") from None
    if root.tag != tag:
        raise error("MalformedXML", f"The root element must be {tag}.")
    return root


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """(part number, ETag) pairs of a CompleteMultipartUpload document, in document order."""
    root = xml_root(body, "CompleteMultipartUpload")
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
    root = xml_root(body, "Delete")
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


# --- uploads -----------------------------------------------------------------------------------


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
