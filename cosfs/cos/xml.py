"""Pure parsing and building of COS XML bodies.

Anything that came over the wire is parsed with defusedxml (no entity expansion, no DTDs, no
external entities) and namespace-agnostically, since COS responses sometimes carry a default
namespace. Builders produce the exact documents COS sends or expects.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Union

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from cosfs.errors import ProtocolError

MAX_XML_BYTES = 16 * 1024 * 1024

# A child value is text, a nested element (tag, children), or a list of repeated elements.
Child = Union[str, int, bool, None, "Node", list["Node"]]
Node = tuple[str, list[tuple[str, Child]] | str]


def parse(body: bytes) -> ET.Element:
    """The root of an untrusted XML document, with namespaces stripped from every tag."""
    if len(body) > MAX_XML_BYTES:
        raise ProtocolError(f"XML body of {len(body)} bytes is larger than {MAX_XML_BYTES}")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ProtocolError(f"refused unsafe XML: {type(exc).__name__}") from None
    except ET.ParseError as exc:
        raise ProtocolError(f"malformed XML: {exc}") from None
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.startswith("{"):
            element.tag = element.tag.split("}", 1)[1]
    return root


def text(element: ET.Element, path: str, default: str = "") -> str:
    """Text of the first child at `path` (stripped), or `default` when absent."""
    found = element.find(path)
    if found is None or found.text is None:
        return default
    return found.text.strip()


def child_text(element: ET.Element, *names: str, default: str = "") -> str:
    """Text of the first child among alternative spellings (e.g. UploadId / UploadID)."""
    for name in names:
        found = element.find(name)
        if found is not None and found.text is not None:
            return found.text.strip()
    return default


def build(root_tag: str, children: Iterable[tuple[str, Child]], xmlns: str | None = None) -> bytes:
    """Serialise a document from (tag, value) pairs; values may nest as lists of pairs."""
    root = ET.Element(root_tag)
    if xmlns:
        root.set("xmlns", xmlns)
    _fill(root, children)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def _fill(parent: ET.Element, children: Iterable[tuple[str, Child]]) -> None:
    for tag, value in children:
        if value is None:
            continue
        element = ET.SubElement(parent, tag)
        if isinstance(value, list):
            _fill(element, value)  # type: ignore[arg-type]
        elif isinstance(value, bool):
            element.text = "true" if value else "false"
        else:
            element.text = str(value)
