"""Typed, frozen configuration. Units are in the field names (`_s`, `_bytes`).

This module (with `credentials.py`, which it feeds) is the only reader of `os.environ`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from cosfs.errors import ConfigError

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class CosConfig:
    """How to reach one bucket."""

    bucket: str  # "name-appid"
    endpoint_url: str  # "https://cos.ap-guangzhou.myqcloud.com" or "http://127.0.0.1:9000"
    region: str = ""  # used by SigV4; derived from the endpoint when empty
    path_style: bool | None = None  # None: virtual-hosted for myqcloud/tencentcos hosts, path-style otherwise
    signature: str = "cos"  # "cos" (q-sign, HMAC-SHA1) or "sigv4"
    max_connections: int = 32
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    # Completing a big multipart upload can take minutes on COS (whitespace keep-alives).
    complete_timeout_s: float = 1200.0
    retries: int = 5
    retry_base_delay_s: float = 0.2
    retry_max_delay_s: float = 10.0
    verify_tls: bool = True
    user_agent: str = "cosfs"
    storage_class: str | None = None
    # How new objects are encrypted: "AES256" (SSE-COS), "cos/kms" (SSE-KMS, with
    # sse_kms_key_id or COS's default key) or "SSE-C" (with sse_customer_key); None: not.
    server_side_encryption: str | None = None
    sse_kms_key_id: str | None = None
    # The 32-byte SSE-C key: sent on every read (and on writes when server_side_encryption is
    # "SSE-C"), never logged.
    sse_customer_key: bytes | None = dataclasses.field(default=None, repr=False)
    # Content-MD5: "always" (enable_content_md5), "never" (disable_content_md5), or "auto":
    # on everything but multipart parts once the server has returned a part's CRC64 (a part
    # is checked by its CRC64 when it lands, and is invisible until Complete).
    content_md5: str = "auto"
    # TLS: a CA bundle instead of certifi's; hostname check (ssl_verify_hostname=0 turns it
    # off); a client certificate (PEM) and its key; an OpenSSL cipher list.
    ca_bundle: str | None = None
    verify_hostname: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    cipher_suites: str | None = None
    # An HTTP(S) proxy URL for COS requests (may carry user:password, hence no repr).
    proxy: str | None = dataclasses.field(default=None, repr=False)
    local_address: str | None = None  # "0.0.0.0" / "::" to connect over IPv4 / IPv6 only
    # ahbe_conf: (pattern, header, value), pattern a key suffix or "reg:REGEX" on "/" + key.
    extra_headers: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.signature not in ("cos", "sigv4"):
            raise ConfigError(f"signature must be 'cos' or 'sigv4', not {self.signature!r}")
        if not self.endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint URL must start with http:// or https://: {self.endpoint_url!r}")
        if not self.bucket:
            raise ConfigError("no bucket given")


def region_endpoint(region: str) -> str:
    """`region=ap-guangzhou` means https://cos.ap-guangzhou.myqcloud.com."""
    return f"https://cos.{region}.myqcloud.com"


def environment() -> Mapping[str, str]:
    """The process environment, read here only, so other modules take it as a parameter."""
    return os.environ


def proxy_from_environment(url: str, env: Mapping[str, str]) -> str | None:
    """The proxy curl (and so COSFS and s3fs) would use for `url`: https_proxy (or
    HTTPS_PROXY) for https, http_proxy for http (curl ignores HTTP_PROXY), all_proxy last;
    none when the host matches no_proxy (`*`, a host, or a domain with or without a leading
    dot). The CVM metadata service is never reached through it (credentials.py)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for entry in (env.get("no_proxy") or env.get("NO_PROXY") or "").split(","):
        entry = entry.strip().lower().lstrip(".").split(":")[0]
        if entry == "*" or entry and (host == entry or host.endswith("." + entry)):
            return None
    names = ("https_proxy", "HTTPS_PROXY") if parts.scheme == "https" else ("http_proxy",)
    for name in (*names, "all_proxy", "ALL_PROXY"):
        if env.get(name):
            proxy = env[name]
            return proxy if "://" in proxy else "http://" + proxy
    return None


@dataclasses.dataclass(frozen=True)
class FsConfig:
    """How the mount presents the bucket, and how long it trusts what it has seen."""

    prefix: str = ""  # "" for the whole bucket, else "sub/path/"
    read_only: bool = False
    uid: int = 0
    gid: int = 0
    umask: int | None = None  # when set, every entry shows 0777 & ~umask (stored modes ignored)
    mp_umask: int = 0o022  # the mount point's own permissions: 0777 & ~mp_umask
    default_file_mode: int = 0o644  # objects without x-cos-meta-mode
    default_dir_mode: int = 0o755
    stat_ttl_s: float = 60.0  # positive stat and listing cache
    negative_ttl_s: float = 10.0
    # Close-to-open: every open of a committed file asks COS for its version (nocto: the
    # stat TTL is trusted instead).
    close_to_open: bool = True
    max_stat_entries: int = 100_000
    max_listed_dirs: int = 1_000
    block_size_bytes: int = 1 * MiB
    cache_dir: str = ""
    cache_size_bytes: int = 2 * 1024 * MiB
    max_readahead_bytes: int = 64 * MiB
    fetch_size_bytes: int = 8 * MiB  # one ranged GET fetches up to this many bytes
    # A sequential stream's read-ahead past this many bytes stays in memory only (a long
    # stream is read once: writing it to the disk tier costs a write per byte, and evicts
    # the blocks random readers reuse).
    stream_disk_bytes: int = 16 * MiB
    parallel_fetches: int = 8
    memory_budget_bytes: int = 128 * MiB
    part_size_bytes: int = 8 * MiB  # multipart part size (grown to fit 10,000 parts)
    multipart_threshold_bytes: int = 16 * MiB  # larger files upload as multipart
    write_back_delay_s: float = 0.0  # 0: close() waits for the upload
    listing_parallel: int = 64  # multireq_max: HEADs in flight while readdir describes a listing
    xattrs: bool = True  # False (noxattr): the kernel is told xattrs are not supported at all
    owner_uid: int = 0  # who mounted: with root, the only one who may read the mount's status
    owner_gid: int = 0
    allow_other: bool = False  # other users reach the mount: attributes must be known before use
    # uid=/gid= given: the owner and group of every entry, whatever x-cos-meta-uid/gid say.
    force_uid: int | None = None
    force_gid: int | None = None
    mp_umask_set: bool = False  # mp_umask= was given (COSFS: the root is 0777 & ~mp_umask)
    default_permission: int | None = None  # default_permission= as given (COSFS's default is 0777)
    # ensure_diskfree / free_space_ratio: free bytes kept on the cache disk; the block cache
    # evicts before going below, and staged writes beyond it fail with ENOSPC.
    ensure_diskfree_bytes: int = 0
    direct_io: bool = False  # FUSE direct_io: opens bypass the kernel page cache
    bucket_size_bytes: int | None = None  # s3fs bucket_size: the capacity statfs reports

    def __post_init__(self) -> None:
        if self.block_size_bytes < 64 * 1024 or self.block_size_bytes & (self.block_size_bytes - 1):
            raise ConfigError("block size must be a power of two of at least 64 KiB")
        if self.prefix and not self.prefix.endswith("/"):
            raise ConfigError("prefix must end with '/'")
