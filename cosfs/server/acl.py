"""COS's ACL rules, which only `cosfs serve` enforces: pure functions, as `cosfs.cos.rules` is.

The in-memory store keeps an object's canned ACL name without enforcing it, so all it needs is
the check of that name (`cosfs.cos.rules.check_canned_acl`, used here too); the rest lives next
to the server: the `Acl` value (stored in bucket.json and in object trailers), x-cos-acl and
x-cos-grant-* headers (`acl_from_headers`), AccessControlPolicy XML (`parse_acl_xml`,
`acl_xml`), and what an unsigned request may do (`anonymous_may`).

Errors are the typed `cosfs.errors.CosError` of `cosfs.cos.rules.error`. Fixed vectors:
tests/server/test_acl_cors_rules.py.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from cosfs.cos import xml as cosxml
from cosfs.cos.rules import check_canned_acl, error
from cosfs.server.request_rules import xml_root

ALL_USERS_URI = "http://cam.qcloud.com/groups/global/AllUsers"
ANYONE_IDS = frozenset({"qcs::cam::anyone:anyone", "anyone"})
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
    def from_json(cls, doc) -> Acl | None:
        if doc is None:
            return None
        return cls(doc["canned"], tuple(tuple(g) for g in doc.get("grants", ())))

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
    canned = check_canned_acl(canned_value or "private", for_object=for_object)
    if canned == "default" and grants:
        canned = "private"
    return Acl(canned, tuple(grants))


def parse_acl_xml(body: bytes, *, for_object: bool) -> Acl:
    """An AccessControlPolicy document as an Acl (grants only; the owner's grant is implied)."""
    root = xml_root(body, "AccessControlPolicy")
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
