"""Addressing, pure: which URL, Host and signed path a request for a key uses.

Two styles:

* virtual-hosted, `https://<bucket>.cos.<region>.myqcloud.com/<key>`: used when the endpoint
  host ends with `myqcloud.com` or `tencentcos.cn` and `path_style` is not True;
* path-style, `http://127.0.0.1:9000/<bucket>/<key>`: custom endpoints (the embedded server,
  other S3-like gateways) or `path_style=True`.

Keys are percent-encoded per segment: `/` is kept, everything but the unreserved `-_.~` and
ASCII letters and digits becomes `%XX` (UTF-8, upper-case hex). A segment that is exactly `.` or
`..` is sent as `%2E` / `%2E%2E`, because HTTP libraries (httpx included) remove dot segments
from paths, which would silently address another key. Empty segments (`a//b`) are kept.

The COS q-sign signs the *decoded* path `/<key>` in both styles (as COSFS does; the server
accepts `/<bucket>/<key>` as well). SigV4 signs the encoded path actually sent, bucket included
for path-style.

Region: `config.region` if given, else taken from a `cos.<region>.myqcloud.com`-like host
(also `cos-internal.<region>.tencentcos.cn`, `<bucket>.cos.<region>...`), else
`DEFAULT_REGION` (`ap-guangzhou`). The region only matters for SigV4's credential scope
and for `x-cos-copy-source` on COS endpoints.

Dialects (`Dialect`): the protocol's own headers are spelt `x-cos-*` in the COS dialect (q-sign
mounts) and `x-amz-*` in the S3 dialect (SigV4 mounts). A server that is not COS ignores
`x-cos-*` headers: a copy (`x-cos-copy-source`) becomes an empty upload over its destination,
and `x-cos-meta-*` is dropped. So requests are built with `x-cos-*` names and translated to
the dialect's on the way out; replies are read under either prefix.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote, urlsplit

from cosfs.errors import ConfigError

DEFAULT_REGION = "ap-guangzhou"
COS_DOMAINS = ("myqcloud.com", "tencentcos.cn")


def quote_segment(segment: str) -> str:
    if segment == ".":
        return "%2E"
    if segment == "..":
        return "%2E%2E"
    return quote(segment.encode("utf-8"), safe="-_.~")


def quote_key(key: str) -> str:
    """The key as it appears in a URL path (no leading '/'): per-segment percent-encoding."""
    return "/".join(quote_segment(segment) for segment in key.split("/"))


def is_cos_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in COS_DOMAINS)


def derive_region(host: str) -> str | None:
    """`ap-beijing` from `cos.ap-beijing.myqcloud.com` (or `bucket.cos.ap-beijing...`,
    `cos-internal.ap-beijing.tencentcos.cn`); None when the host says nothing."""
    labels = host.lower().rstrip(".").split(".")
    for index, label in enumerate(labels[:-1]):
        if label in ("cos", "cos-internal", "cos-website") and index + 1 < len(labels) - 2:
            region = labels[index + 1]
            if region not in ("accelerate",) and "-" in region:
                return region
    return None


@dataclasses.dataclass(frozen=True)
class Addressing:
    """Where one bucket's requests go. Build with `addressing_for`."""

    scheme: str
    host: str  # the URL host (no port, no brackets)
    port: int | None  # None: the scheme's default
    bucket: str
    virtual: bool
    region: str
    base_path: str = ""  # a path prefix of a custom endpoint, without trailing '/'

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port is None:
            return host
        return f"{host}:{self.port}"

    def raw_path(self, key: str | None) -> str:
        """The encoded path sent: `/key` (virtual), `/bucket/key` (path-style). `key=None` is
        the bucket itself (`/` or `/bucket`)."""
        if self.virtual:
            prefix = self.base_path
        else:
            prefix = f"{self.base_path}/{self.bucket}"
        if key is None:
            return prefix or "/"
        return f"{prefix}/{quote_key(key)}"

    def sign_path(self, key: str | None) -> str:
        """The decoded path the COS q-sign covers: `/key`, or `/` for the bucket."""
        return "/" if key is None else "/" + key

    def copy_source(self, key: str, *, s3: bool = False) -> str:
        """The copy-source header's value naming `key` in this bucket: COS's
        `<bucket host>/<key>` on virtual-hosted COS endpoints, else (and always for `s3`, the
        `x-amz-copy-source` form every S3 API takes) `/<bucket>/<key>`."""
        if self.virtual and not s3:
            return f"{self.host}/{quote_key(key)}"
        return f"/{self.bucket}/{quote_key(key)}"


def addressing_for(
    bucket: str,
    endpoint_url: str,
    *,
    path_style: bool | None = None,
    region: str = "",
) -> Addressing:
    """The addressing for `bucket` at `endpoint_url` (see the module docstring)."""
    parts = urlsplit(endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"endpoint URL must be http(s)://host[:port]: {endpoint_url!r}")
    host = parts.hostname
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"endpoint URL has a bad port: {endpoint_url!r}") from None
    if port is not None and port == {"http": 80, "https": 443}[parts.scheme]:
        port = None
    base_path = parts.path.rstrip("/")
    virtual = is_cos_host(host) and path_style is not True
    derived = derive_region(host)
    if virtual and not host.lower().startswith(bucket.lower() + "."):
        host = f"{bucket}.{host}"
    return Addressing(
        scheme=parts.scheme,
        host=host,
        port=port,
        bucket=bucket,
        virtual=virtual,
        region=region or derived or DEFAULT_REGION,
        base_path=base_path,
    )


# --- header dialects ------------------------------------------------------------------------

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"

# x-cos-<suffix> request headers that S3 spells x-amz-<suffix'>: the suffix maps to itself
# unless given here. Anything else under x-cos- has no S3 equivalent.
_S3_SUFFIXES = {
    name: name for name in (
        "copy-source", "copy-source-if-match", "copy-source-if-none-match", "copy-source-if-modified-since",
        "copy-source-if-unmodified-since", "copy-source-range",
        "copy-source-server-side-encryption-customer-algorithm",
        "copy-source-server-side-encryption-customer-key", "copy-source-server-side-encryption-customer-key-md5",
        "metadata-directive", "storage-class", "acl", "grant-read", "grant-read-acp", "grant-write",
        "grant-write-acp", "grant-full-control", "security-token", "tagging", "tagging-directive",
        "website-redirect-location", "server-side-encryption", "server-side-encryption-context",
        "server-side-encryption-customer-algorithm", "server-side-encryption-customer-key",
        "server-side-encryption-customer-key-md5",
    )
} | {"server-side-encryption-cos-kms-key-id": "server-side-encryption-aws-kms-key-id"}
# Values spelt otherwise by S3, by suffix: COS's `Copy`/`Replaced`, `cos/kms`.
_S3_VALUES = {
    "metadata-directive": {"copy": "COPY", "replaced": "REPLACE", "replace": "REPLACE"},
    "server-side-encryption": {"cos/kms": "aws:kms"},
}
# The request headers that make a PUT a copy, and decide what it copies.
COPY_SUFFIXES = frozenset(s for s in _S3_SUFFIXES if s.startswith("copy-source")) | {"metadata-directive"}


@dataclasses.dataclass(frozen=True)
class Dialect:
    """How the protocol's own headers are spelt: `x-cos-*` (COS, q-sign) or `x-amz-*` (S3, the
    dialect of SigV4 mounts: COS's S3 layer and every S3-compatible server understand it,
    while servers that are not COS ignore `x-cos-*` headers, which turns a copy into an
    empty upload over the destination).

    The client builds every request with `x-cos-*` names; `outgoing` gives the names (and
    the few values, such as the metadata directive's) the server is sent. Replies are read
    under either prefix, this dialect's first (`header`, `user_meta`)."""

    name: str  # "cos" or "s3"

    @property
    def prefix(self) -> str:
        return "x-amz-" if self.name == "s3" else "x-cos-"

    def outgoing(self, headers: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """(headers as sent, the `x-cos-*` names this dialect cannot express). Names are
        lower-case. In the COS dialect nothing changes."""
        if self.name != "s3":
            return dict(headers), []
        sent: dict[str, str] = {}
        foreign: list[str] = []
        for name, value in headers.items():
            if not name.startswith("x-cos-"):
                sent[name] = value
                continue
            suffix = name[len("x-cos-"):]
            if suffix.startswith("meta-"):
                sent["x-amz-" + suffix] = value
            elif suffix in _S3_SUFFIXES:
                target = _S3_SUFFIXES[suffix]
                sent["x-amz-" + target] = _S3_VALUES.get(suffix, {}).get(value.strip().lower(), value)
            else:
                foreign.append(name)
                sent[name] = value
        return sent, foreign

    def header(self, headers, suffix: str, default: str = "") -> str:
        """The reply header `x-cos-<suffix>` or `x-amz-<suffix>`, this dialect's spelling first."""
        first, second = ("x-amz-", "x-cos-") if self.name == "s3" else ("x-cos-", "x-amz-")
        value = headers.get(first + suffix)
        if value is None:
            value = headers.get(second + suffix)
        return default if value is None else value

    def user_meta(self, items) -> dict[str, str]:
        """User metadata from reply headers `(name, value)`: `x-cos-meta-*` and `x-amz-meta-*`
        alike, suffix lower-cased; where both name one key, this dialect's spelling wins."""
        own: dict[str, str] = {}
        other: dict[str, str] = {}
        for name, value in items:
            lowered = name.lower()
            for prefix in ("x-cos-meta-", "x-amz-meta-"):
                if lowered.startswith(prefix) and len(lowered) > len(prefix):
                    (own if prefix[:6] == self.prefix else other)[lowered[len(prefix):]] = value
        return {**other, **own}


COS_DIALECT = Dialect("cos")
S3_DIALECT = Dialect("s3")


def dialect_for(signature: str) -> Dialect:
    """SigV4 mounts speak S3 (`x-amz-*`), q-sign mounts COS (`x-cos-*`)."""
    return S3_DIALECT if signature == "sigv4" else COS_DIALECT
