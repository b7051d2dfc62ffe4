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

    def copy_source(self, key: str) -> str:
        """The `x-cos-copy-source` value naming `key` in this bucket."""
        if self.virtual:
            return f"{self.host}/{quote_key(key)}"
        return f"/{self.bucket}/{quote_key(key)}"

    def url_for(self, key: str | None, query: str = "") -> str:
        """A readable URL (for messages; the client builds httpx.URL with a raw path)."""
        text = f"{self.scheme}://{self.host_header}{self.raw_path(key)}"
        return f"{text}?{query}" if query else text


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
