"""COS's CORS rules, which only `cosfs serve` applies (the in-memory store has no CORS): pure
functions, as `cosfs.cos.rules` is. The `CorsRule` value (stored in bucket.json),
CORSConfiguration XML (`parse_cors_xml`, `cors_xml`), which rule allows a request
(`cors_match`), and the Access-Control-* headers of a preflight (`preflight`) or of a request
with an allowed Origin (`cors_headers`).

Errors are the typed `cosfs.errors.CosError` of `cosfs.cos.rules.error`. Fixed vectors:
tests/server/test_acl_cors_rules.py.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import xml.etree.ElementTree as ET
from typing import Any
from collections.abc import Sequence

from cosfs.cos import xml as cosxml
from cosfs.cos.rules import error
from cosfs.server.request_rules import xml_root

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
    def from_json(cls, doc: dict[str, Any]) -> CorsRule:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
        return cls(**fields)


def _texts(element: ET.Element, tag: str) -> tuple[str, ...]:
    """The stripped, non-empty texts of the children `tag` of `element`."""
    return tuple((e.text or "").strip() for e in element.findall(tag) if (e.text or "").strip())


def parse_cors_xml(body: bytes) -> tuple[CorsRule, ...]:
    """A CORSConfiguration document: 1..100 rules, each with origins and methods."""
    root = xml_root(body, "CORSConfiguration")
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
