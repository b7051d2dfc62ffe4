"""Mount options: one table for `-o name=value` (COSFS / s3fs / fstab) and `--name value`.

Every option has one spelling used both ways (`-o stat_cache_expire=30` and
`--stat-cache-expire 30` are the same), a type and a default. An unknown option is an error
naming it. Generic mount(8) options that only matter to mount itself are accepted and ignored.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from cosfs.errors import ConfigError

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    kind: str  # flag | str | int | float | octal | size | choice
    default: object
    help: str
    choices: tuple[str, ...] = ()
    # For sizes: the unit a bare number means (COSFS's multipart_size is in MB).
    unit_bytes: int = 1


OPTIONS: tuple[Option, ...] = (
    Option("url", "str", "", "COS endpoint, e.g. https://cos.ap-guangzhou.myqcloud.com or http://127.0.0.1:9000"),
    Option("region", "str", "", "COS region; region=ap-guangzhou means url=https://cos.ap-guangzhou.myqcloud.com"),
    Option("passwd_file", "str", "", "credentials file: lines bucket-appid:SecretId:SecretKey or SecretId:SecretKey"),
    Option("cam_role", "str", "", "use the CAM role of this CVM instance (a role name, or 'auto')"),
    Option("cam_role_endpoint", "str", "http://metadata.tencentyun.com/latest/meta-data/cam/security-credentials",
           "metadata service URL for cam_role"),
    Option("use_path_request_style", "flag", False, "path-style URLs (endpoint/bucket/key) instead of virtual-hosted"),
    Option("sigv4", "flag", False, "sign requests with AWS Signature V4 instead of the COS signature"),
    Option("allow_other", "flag", False, "let other users access the mount (needs user_allow_other in /etc/fuse.conf for non-root)"),
    Option("allow_root", "flag", False, "let root access the mount"),
    Option("uid", "int", None, "owner shown for objects without x-cos-meta-uid (default: the mounting user)"),
    Option("gid", "int", None, "group shown for objects without x-cos-meta-gid (default: the mounting group)"),
    Option("umask", "octal", None, "when set, every entry shows 0777 & ~umask, ignoring stored modes"),
    Option("mp_umask", "octal", 0o022, "permissions of the mount point itself: 0777 & ~mp_umask"),
    Option("default_permission", "octal", None, "mode of objects without x-cos-meta-mode (default 644 files, 755 dirs)"),
    Option("nonempty", "flag", False, "allow mounting over a non-empty directory"),
    Option("ro", "flag", False, "read-only mount: every change fails with EROFS"),
    Option("rw", "flag", False, "read-write mount (the default)"),
    Option("dbglevel", "choice", "warn", "log level", ("crit", "critical", "err", "error", "warn", "warning", "info", "dbg", "debug")),
    Option("log_file", "str", "", "write the log to this file instead of syslog (background) or stderr (foreground)"),
    Option("foreground", "flag", False, "stay in the foreground (logs go to stderr)"),
    Option("stat_cache_expire", "float", 60.0, "seconds a stat, listing or lookup result is trusted (also the kernel's timeouts)"),
    Option("negative_cache_expire", "float", 10.0, "seconds a 'no such file' answer is trusted"),
    Option("max_stat_cache_size", "int", 100_000, "most negative entries kept"),
    Option("enable_noobj_cache", "flag", True, "COSFS compatibility: negative caching is always on (see negative_cache_expire)"),
    Option("listing_metadata", "choice", "list", "list: readdir shows sizes and times from LIST only (no HEAD per entry; default modes); head: also HEAD each listed object once per version (bounded parallel) so listings show symlinks and stored modes, owners and mtimes (rsync, cp -a, tar c)", ("list", "head")),
    Option("cache_dir", "str", "", "local cache directory (default /var/cache/cosfs/BUCKET as root, else ~/.cache/cosfs/BUCKET)"),
    Option("use_cache", "str", "", "COSFS spelling of cache_dir"),
    Option("cache_size", "size", 2048 * MiB, "most bytes of cached blocks on disk (suffixes K, M, G; bare number = MB)", unit_bytes=MiB),
    Option("block_size", "size", 1 * MiB, "cache block size (power of two, at least 64K; bare number = bytes)"),
    Option("max_readahead", "size", 64 * MiB, "largest read-ahead window per open file (bare number = MB)", unit_bytes=MiB),
    Option("parallel_count", "int", 8, "parallel ranged GETs (and, later, part uploads)"),
    Option("multipart_size", "size", 8 * MiB, "bytes per ranged GET and multipart part (bare number = MB, as in COSFS)", unit_bytes=MiB),
    Option("write_back_delay", "float", 0.0, "0: close() returns once the upload is committed; N: close() returns at once (change journaled) and the upload starts N seconds later"),
    Option("retries", "int", 5, "retries of a failed request"),
    Option("connect_timeout", "float", 10.0, "seconds to connect"),
    Option("readwrite_timeout", "float", 60.0, "seconds a request may wait for data"),
    Option("storage_class", "choice", "", "storage class of new objects", ("", "standard", "standard_ia", "intelligent_tiering", "maz_standard", "maz_standard_ia", "archive", "deep_archive")),
    Option("default_acl", "str", "", "accepted for COSFS compatibility; COSFS itself no longer sends an ACL header"),
    Option("use_sse", "str", "", "server-side encryption of new objects: 1 or AES256 (SSE-COS)"),
    Option("noxattr", "flag", False, "disable extended attributes (also user.cosfs.* and so cosfs status/sync)"),
    Option("metrics_address", "str", "", "serve Prometheus metrics on HOST:PORT (e.g. 127.0.0.1:9464)"),
    Option("del_cache", "flag", False, "empty the cache directory at mount time"),
)

BY_NAME = {opt.name: opt for opt in OPTIONS}

# Options that mount(8), fstab and FUSE helpers pass along and that need nothing from us.
IGNORED = {"_netdev", "auto", "noauto", "nofail", "user", "users", "nouser", "defaults", "dev", "nodev", "suid",
           "nosuid", "exec", "noexec", "atime", "noatime", "relatime", "norelatime", "strictatime", "async",
           "sync", "diratime", "nodiratime", "lazytime", "nolazytime", "owner", "group", "comment", "x-systemd",
           "default_permissions", "big_writes", "silent", "loud"}

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)


def parse_size(text: str, unit_bytes: int = 1) -> int:
    match = _SIZE.match(text)
    if not match:
        raise ValueError(text)
    number, suffix = int(match.group(1)), (match.group(2) or "").lower()
    if not suffix:
        return number * unit_bytes
    scale = {"b": 1, "k": 1024, "m": MiB, "g": 1024 * MiB, "t": 1024**4}[suffix[0]]
    return number * scale


def convert(opt: Option, raw: str | None) -> object:
    if opt.kind == "flag":
        if raw is None or raw.lower() in ("1", "true", "yes", "on", ""):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"option {opt.name} is a flag; it takes no value (got {raw!r})")
    if raw is None:
        raise ConfigError(f"option {opt.name} needs a value ({opt.name}=...)")
    try:
        if opt.kind == "str":
            return raw
        if opt.kind == "int":
            return int(raw)
        if opt.kind == "float":
            return float(raw)
        if opt.kind == "octal":
            return int(raw, 8)
        if opt.kind == "size":
            return parse_size(raw, opt.unit_bytes)
        if opt.kind == "choice":
            if raw.lower() not in opt.choices:
                raise ValueError(raw)
            return raw.lower()
    except ValueError:
        expected = {"int": "a whole number", "float": "a number", "octal": "an octal mode such as 022",
                    "size": "a size such as 512M", "choice": "one of " + ", ".join(c for c in opt.choices if c)}
        raise ConfigError(f"option {opt.name}: {raw!r} is not {expected.get(opt.kind, 'valid')}") from None
    raise AssertionError(opt.kind)


def split_o(text: str) -> list[tuple[str, str | None]]:
    """`a,b=1,c=x` -> [("a", None), ("b", "1"), ("c", "x")]. Commas inside a value may be
    escaped with a backslash."""
    items: list[tuple[str, str | None]] = []
    for part in re.split(r"(?<!\\),", text):
        part = part.replace("\\,", ",").strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        items.append((name.strip(), value if sep else None))
    return items


def parse_options(pairs: Iterable[tuple[str, str | None]]) -> dict[str, object]:
    """Values for every option in the table: defaults, overridden by `pairs` in order."""
    values = {opt.name: opt.default for opt in OPTIONS}
    for name, raw in pairs:
        key = name.replace("-", "_")
        if key in IGNORED or key.startswith("x-systemd") or key.startswith("x_systemd") or key.startswith("comment"):
            continue
        opt = BY_NAME.get(key)
        if opt is None:
            raise ConfigError(f"unknown option {name!r} (see 'cosfs mount --help')")
        values[key] = convert(opt, raw)
    return values
