"""Extended attributes, COSFS-compatible: stored in `x-cos-meta-xattr` as
urlencode(JSON {name: base64(value)}). Plus read-only `user.cosfs.*` attributes that tell any
application whether a file is safely in COS."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, MutableMapping
from urllib.parse import quote, unquote

from cosfs.errors import AttributeTooLarge, InvalidName, NoSuchAttribute, NotPermitted

__all__ = ["NoSuchAttribute", "get", "names", "remove", "set_", "status_value"]

META_KEY = "xattr"
STATUS_PREFIX = "user.cosfs."
STATUS_NAMES = ("user.cosfs.state", "user.cosfs.etag")
# On the mount point: the mount's status as JSON (`cosfs status`), and a write-only trigger
# that starts every pending upload (`cosfs sync`).
MOUNT_STATUS = "user.cosfs.status"
MOUNT_SYNC = "user.cosfs.sync"  # b"1": upload pending changes now; b"retry-failed": refused ones too
MOUNT_DISCARD = "user.cosfs.discard"  # a path below the mount: drop its refused upload
# COS allows 2 KB of user metadata in all; keep xattrs well inside it.
MAX_XATTR_BYTES = 1024


def _load(meta: Mapping[str, str]) -> dict[str, str]:
    raw = meta.get(META_KEY)
    if not raw:
        return {}
    try:
        decoded = json.loads(unquote(raw))
        return decoded if isinstance(decoded, dict) else {}
    except ValueError:
        return {}


def _store(meta: MutableMapping[str, str], table: dict[str, str]) -> None:
    if table:
        meta[META_KEY] = quote(json.dumps(table, separators=(",", ":")), safe="")
    else:
        meta.pop(META_KEY, None)


def get(meta: Mapping[str, str], name: str) -> bytes:
    table = _load(meta)
    if name not in table:
        raise NoSuchAttribute(name)
    return base64.b64decode(table[name])


def names(meta: Mapping[str, str]) -> list[str]:
    return sorted(_load(meta))


def check_settable(name: str, value: bytes) -> None:
    if name.startswith(STATUS_PREFIX):
        raise NotPermitted(f"{name} is maintained by cosfs")
    if not name.startswith("user."):
        raise InvalidName("only user.* extended attributes can be stored in COS")
    if len(name) + len(value) > MAX_XATTR_BYTES:
        raise AttributeTooLarge("extended attributes are limited by COS's 2 KB of user metadata")


def set_(meta: MutableMapping[str, str], name: str, value: bytes) -> None:
    table = _load(meta)
    table[name] = base64.b64encode(value).decode()
    encoded = quote(json.dumps(table, separators=(",", ":")), safe="")
    if len(encoded) > 2 * MAX_XATTR_BYTES:
        raise AttributeTooLarge("extended attributes are limited by COS's 2 KB of user metadata")
    _store(meta, table)


def remove(meta: MutableMapping[str, str], name: str) -> None:
    table = _load(meta)
    table.pop(name, None)
    _store(meta, table)


def status_value(name: str, inode, dirty) -> bytes:
    """user.cosfs.state: clean | dirty | uploading | refused; user.cosfs.etag: the committed ETag."""
    if name == "user.cosfs.state":
        if dirty is None or dirty.clean:
            return b"clean"
        if dirty.refused_now:
            return b"refused"
        streaming = dirty.stream is not None and bool(dirty.stream.in_flight)  # parts going up while written
        committing = dirty.uploading_total and dirty.uploaded < dirty.uploading_total
        return b"uploading" if streaming or committing else b"dirty"
    if name == "user.cosfs.etag":
        if inode is None or inode.etag is None:
            raise NoSuchAttribute(name)
        return inode.etag.encode()
    raise NoSuchAttribute(name)
