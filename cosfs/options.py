"""Mount options: one table for `-o name=value` (COSFS / s3fs / FUSE / fstab) and `--name value`.

Every option has one spelling used both ways (`-o stat_cache_expire=30` and
`--stat-cache-expire 30` are the same), a type and a default. The table holds every option
COSFS (tencentyun/cosfs) and s3fs-fuse parse, and the FUSE options seen in real fstab lines,
so that a line written for them mounts with the same meaning. Each option is one of:

- implemented: its value reaches the configuration (cli.py maps it);
- an alias (`target`): another spelling of an implemented option (`use_cache` = `cache_dir`);
- noted (`note`): it tunes something cosfs does differently; accepted, and the mount logs one
  line saying what cosfs does instead (at WARNING when the difference can surprise);
- kernel (`kernel`): handed to the kernel mount as given (`noexec`, `nosuid`, `sync`...);
- refused (kind "refuse"): an error that says why and what to use instead.

An unknown option is an error naming it and the nearest known name. mount(8)'s own options
(`_netdev`, `noauto`, `x-systemd.*`...) are accepted and ignored. A value is checked here, so
that a bad one is one line naming its option, never a failure later in the mount. Each option
also has a `group` and the default as users should read it (`shown`, when the mount computes
it): cosfs/optdocs.py makes --help, the README's table and the man pages from this table.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from cosfs.errors import ConfigError

MiB = 1024 * 1024
INFO, WARNING = logging.INFO, logging.WARNING
# Where an option is documented: --help's argument groups, the README's and man pages' sections.
GROUPS = ("common", "cache", "write-back", "compatibility", "kernel", "ignored")


def human_size(n: int) -> str:
    """64 MiB, 2 GiB, 1000 TiB; 12.3 GiB when not a whole number of the unit."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = 0
    while power < len(units) - 1 and n >= 1024 ** (power + 1):
        power += 1
    value = n / 1024 ** power
    return f"{n // 1024 ** power} {units[power]}" if value.is_integer() else f"{value:.1f} {units[power]}"


def url_problem(text: str, default_scheme: str = "https") -> str:
    """What is wrong with an endpoint or proxy URL ("" when nothing): characters copied from
    a document (a full-width colon), spaces, a scheme other than http(s), no host, a bad port;
    for an endpoint (default scheme https), a password, which the logs would show."""
    for char in text:
        if not char.isascii():
            plain = unicodedata.normalize("NFKC", char)
            if plain.isascii():
                return f"has the full-width {char!r} (U+{ord(char):04X}) where {plain!r} is meant"
            return f"has the non-ASCII character {char!r} (U+{ord(char):04X})"
        if char.isspace() or not char.isprintable():
            return "contains a space or a control character"
    try:
        parts = urlsplit(text if "://" in text else f"{default_scheme}://{text}")
        port = parts.port
    except ValueError as exc:
        return "has a bad port (expected 1-65535)" if "port" in str(exc).lower() else "is not a URL"
    if parts.scheme not in ("http", "https"):
        return f"has the scheme {parts.scheme}://: expected http:// or https://"
    if not parts.hostname:
        return "names no host"
    if port == 0:
        return "has a bad port (expected 1-65535)"
    if default_scheme == "https" and parts.password is not None:
        return "carries a password: keys go in a passwd file"
    return ""


def _proxy_problem(text: str) -> str:
    return url_problem(text, "http")


def _region_problem(text: str) -> str:
    return "" if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text) else "is not a region name such as ap-guangzhou"


def _address_problem(text: str) -> str:
    _, sep, port = text.rpartition(":")
    return "" if sep and port.isdigit() and 0 < int(port) < 65536 else "is not HOST:PORT such as 127.0.0.1:9464"


def _block_problem(size: int) -> str:
    return "" if size & (size - 1) == 0 else "is not a power of two"


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    kind: str  # flag | str | int | float | octal | size | choice | refuse
    default: object
    help: str
    choices: tuple[str, ...] = ()
    unit_bytes: int = 1  # for sizes: what a bare number means (COSFS's multipart_size is in MB)
    origin: str = "cosfs"  # who defines it: cosfs, COSFS, s3fs, FUSE (several joined by /)
    target: str = ""  # an alias: the option whose value this one sets
    note: str = ""  # accepted, not applied: what cosfs does instead (logged when given)
    note_level: int = INFO
    kernel: bool = False  # passed to the kernel mount as given
    bare: str | None = None  # the value of a non-flag option given without "=value"
    minimum: int | float | None = None  # floats: 0 unless given
    group: str = "common"  # one of GROUPS
    shown: str = ""  # the default as documented, when the mount computes it (cli.mount_settings)
    check: Callable[[Any], str] | None = None  # the typed value -> what is wrong with it, or ""


def _noted(name: str, kind: str, origin: str, note: str, *, level: int = INFO, **kw) -> Option:
    """An option accepted for compatibility: its value is checked and not used."""
    return Option(name, kind, kw.pop("default", None if kind != "flag" else False), note, origin=origin, note=note,
                  note_level=level, group="ignored", **kw)


def _alias(name: str, target: str, origin: str, kind: str = "", **kw) -> Option:
    of = BY_NAME[target]
    return Option(name, kind or of.kind, None, f"same as {target}", origin=origin, target=target,
                  unit_bytes=of.unit_bytes, choices=of.choices, minimum=of.minimum, check=of.check,
                  group="compatibility", **kw)


def _kernel(name: str, kind: str, help: str, origin: str = "FUSE", **kw) -> Option:
    return Option(name, kind, None if kind != "flag" else False, help, origin=origin, kernel=True, group="kernel",
                  **kw)


def _refused(name: str, reason: str, origin: str) -> Option:
    return Option(name, "refuse", None, reason, origin=origin, group="ignored")


STORAGE_CLASSES = ("standard", "standard_ia", "intelligent_tiering", "maz_standard", "maz_standard_ia",
                   "maz_intelligent_tiering", "archive", "deep_archive")
# s3fs's classes that COS does not have: the COS class used instead.
STORAGE_CLASS_EQUIVALENTS = {"reduced_redundancy": "standard", "onezone_ia": "standard_ia",
                             "glacier_ir": "standard_ia", "glacier": "archive"}
DBGLEVELS = ("silent", "crit", "critical", "err", "error", "wan", "warn", "warning", "inf", "info", "information",
             "dbg", "debug")

OPTIONS: list[Option] = [
    # --- where the bucket is ---
    Option("url", "str", "", "COS endpoint, e.g. https://cos.ap-guangzhou.myqcloud.com or http://127.0.0.1:9000; "
           "without a scheme https:// is assumed (with a warning), as COSFS does", origin="COSFS/s3fs",
           shown="from region", check=url_problem),
    Option("region", "str", "", "COS region; region=ap-guangzhou means url=https://cos.ap-guangzhou.myqcloud.com",
           check=_region_problem),
    Option("servicepath", "str", "/", "path prefix on the endpoint (an S3 gateway under a path)", origin="COSFS/s3fs"),
    Option("use_path_request_style", "flag", False, "path-style URLs (endpoint/bucket/key) instead of virtual-hosted",
           origin="COSFS/s3fs"),
    Option("sigv4", "flag", False, "sign requests with AWS Signature V4 instead of the COS signature", origin="s3fs"),
    Option("bucket", "str", "", "the bucket, when the command line names only the mount point", origin="s3fs"),
    # --- keys ---
    Option("passwd_file", "str", "", "credentials file: lines bucket-appid:SecretId:SecretKey or SecretId:SecretKey, "
           "or COSFS's STS form (COSAccessKeyId=, COSSecretKey=, COSAccessToken=, COSAccessTokenExpire=)",
           origin="COSFS/s3fs", shown="searched: the environment, ~/.passwd-cosfs, /etc/passwd-cosfs, then s3fs's"),
    Option("cam_role", "str", "", "CVM instance role (a role name, or 'auto' for the first one listed); 'sts': "
           "temporary keys from the passwd file in STS form, re-read before COSAccessTokenExpire", origin="COSFS"),
    Option("cam_role_endpoint", "str", "http://metadata.tencentyun.com/latest/meta-data/cam/security-credentials",
           "metadata service URL for cam_role", origin="COSFS", check=url_problem),
    Option("profile", "str", "", "section of ~/.aws/credentials to take the keys from", origin="s3fs"),
    Option("public_bucket", "choice", "", "1: anonymous requests (no keys, no signature)", ("", "0", "1"),
           origin="COSFS/s3fs", shown="0"),
    # --- who owns what ---
    Option("allow_other", "flag", False, "let other users access the mount (needs user_allow_other in "
           "/etc/fuse.conf for non-root)", origin="COSFS/s3fs/FUSE"),
    Option("allow_root", "flag", False, "let root access the mount", origin="FUSE"),
    Option("uid", "int", None, "owner of every entry (stored x-cos-meta-uid is not shown)", origin="COSFS/s3fs",
           minimum=0, shown="the stored x-cos-meta-uid, else 0 (root)"),
    Option("gid", "int", None, "group of every entry (stored x-cos-meta-gid is not shown)", origin="COSFS/s3fs",
           minimum=0, shown="the stored x-cos-meta-gid, else 0 (root)"),
    Option("umask", "octal", None, "when set, every entry shows 0777 & ~umask, ignoring stored modes",
           origin="COSFS/s3fs", shown="none: stored modes"),
    Option("mp_umask", "octal", None, "permissions of the mount point with allow_other: 0777 & ~mp_umask (without "
           "allow_other it is 0700)", origin="COSFS/s3fs", shown="none: 0777 with allow_other, else 0700"),
    Option("default_permission", "octal", None, "mode of objects and directories without x-cos-meta-mode (owned by "
           "root unless uid/gid)", origin="COSFS", shown="0777"),
    Option("nonempty", "flag", False, "allow mounting over a non-empty directory", origin="COSFS/s3fs"),
    Option("ro", "flag", False, "read-only mount: every change fails with EROFS", origin="FUSE"),
    Option("rw", "flag", False, "read-write mount", origin="FUSE", group="compatibility", shown="on unless ro"),
    # --- logging ---
    Option("dbglevel", "choice", "warn", "log level: silent, crit, err, warn, info or debug (and COSFS's other "
           "spellings: critical, error, wan, warning, inf, information, dbg)", DBGLEVELS, origin="COSFS/s3fs"),
    Option("log_file", "str", "", "write the log to this file", shown="syslog, or stderr with -f; CACHE_DIR/cosfs.log "
           "when there is no syslog socket"),
    Option("log_format", "choice", "text", "text, or json: one JSON object per line (time, level, logger, message) "
           "for log shippers", ("text", "json")),
    Option("foreground", "flag", False, "stay in the foreground (logs go to stderr)"),
    Option("curldbg", "choice", "", "log every HTTP request with its status line", ("", "normal", "body"),
           origin="COSFS/s3fs", bare="normal", shown="off"),
    Option("f2", "flag", False, "debug logging (COSFS's old spelling of dbglevel=debug)", origin="COSFS",
           group="compatibility"),
    Option("instance_name", "str", "", "name added to the User-Agent of every request", origin="COSFS/s3fs"),
    Option("user_agent_suffix", "str", "", "text appended to the User-Agent of every request", origin="COSFS"),
    # --- metadata caching ---
    Option("stat_cache_expire", "float", 60.0, "seconds a stat, listing or lookup result is trusted (also the "
           "kernel's timeouts)", origin="COSFS/s3fs", group="cache"),
    Option("negative_cache_expire", "float", 10.0, "seconds a 'no such file' answer is trusted, also the absence "
           "of a name from a directory listing (after that, a lookup asks COS and a readdir lists again)",
           group="cache"),
    Option("nocto", "flag", False, "no close-to-open (NFS's name): an open trusts the stat cache for "
           "stat_cache_expire instead of asking COS for the object's version (one HEAD per open), so another "
           "host's change or deletion is seen up to that many seconds late", group="cache"),
    Option("max_stat_cache_size", "int", 100_000, "most negative entries kept", origin="COSFS/s3fs", minimum=0,
           group="cache"),
    Option("enable_noobj_cache", "flag", True, "'no such file' answers are cached (always on; see "
           "negative_cache_expire)", origin="COSFS/s3fs", group="compatibility"),
    Option("disable_noobj_cache", "flag", False, "'no such file' answers are not cached (negative_cache_expire=0)",
           origin="s3fs", group="compatibility"),
    Option("multireq_max", "int", 64, "HEADs in flight at once while readdir reads the stored type, mode, owner "
           "and times of the entries a listing gives (a LIST carries none of them)", origin="COSFS/s3fs", minimum=1,
           group="cache"),
    # --- data caching ---
    Option("cache_dir", "str", "", "local cache directory: blocks, staged writes and the journal, in a folder "
           "per bucket (and prefix)", group="cache", shown="/var/cache/cosfs as root, else ~/.cache/cosfs"),
    Option("check_cache_dir_exist", "flag", False, "refuse to mount when the cache directory does not exist",
           origin="s3fs", group="cache"),
    Option("del_cache", "flag", False, "empty the block cache at mount time", origin="COSFS/s3fs", group="cache"),
    Option("cache_size", "size", 2048 * MiB, "most bytes of cached blocks on disk (suffixes K, M, G, T; bare "
           "number = MiB)", unit_bytes=MiB, group="cache"),
    Option("ensure_diskfree", "size", None, "space to keep free on the cache disk (bare number = MiB, as COSFS's "
           "MB): cached blocks are evicted, and writes refused with ENOSPC, before free space drops below it; given, "
           "the mount is refused when the disk has less free already", origin="COSFS/s3fs", unit_bytes=MiB,
           group="cache", shown="multipart_size"),
    Option("free_space_ratio", "int", None, "percent of the cache disk to keep free (as ensure_diskfree; the larger "
           "of the two applies)", origin="s3fs", minimum=0, group="cache"),
    Option("block_size", "size", 1 * MiB, "cache block size (a power of two, at least 64K; bare number = bytes)",
           minimum=64 * 1024, check=_block_problem, group="cache"),
    Option("max_prefetch_bytes", "size", 64 * MiB, "largest read-ahead window per open file (bare number = bytes)",
           origin="COSFS", group="cache"),
    Option("max_readahead", "size", 4 * MiB, "the kernel's read-ahead for the mount (bare number = bytes, as in "
           "libfuse)", origin="FUSE", group="cache"),
    # --- transfers ---
    Option("parallel_count", "int", 8, "parallel ranged GETs and part uploads", origin="COSFS/s3fs", minimum=1,
           group="write-back"),
    Option("multipart_size", "size", 8 * MiB, "bytes per ranged GET and multipart part (bare number = MiB, at "
           "least 5)", origin="COSFS/s3fs", unit_bytes=MiB, minimum=5 * MiB, group="write-back"),
    Option("multipart_threshold", "size", None, "files larger than this are uploaded in parts (bare number = MiB, "
           "at least 5)", origin="s3fs", unit_bytes=MiB, minimum=5 * MiB, group="write-back",
           shown="twice multipart_size"),
    Option("nomultipart", "flag", False, "never upload in parts: one PUT per file (COS takes up to 5 GiB so)",
           origin="COSFS/s3fs", group="write-back"),
    Option("drain_timeout", "float", 30.0, "after unmount or SIGTERM, pending uploads go on until none makes progress "
           "for this many seconds; then the daemon exits, and what is left stays journaled for the next mount",
           group="write-back", minimum=0),
    Option("write_back_delay", "float", 0.0, "0: close() returns once the upload is committed; N: close() returns "
           "at once (change journaled) and the upload starts N seconds later", group="write-back"),
    Option("retries", "int", 5, "retries of a failed request", origin="COSFS/s3fs", minimum=0),
    Option("connect_timeout", "float", 10.0, "seconds to connect", origin="COSFS/s3fs"),
    Option("readwrite_timeout", "float", 60.0, "seconds a request may wait for data. Against a server that stops "
           "answering, an operation fails with EIO after at most (retries + 1) x (connect_timeout + "
           "readwrite_timeout) plus the backoff between attempts (7 min 6 s with the defaults)", origin="COSFS/s3fs"),
    Option("enable_content_md5", "flag", False, "send Content-MD5 with every upload, multipart parts included. "
           "Without it whole-object PUTs, appends and XML bodies carry it; parts carry it until the server has "
           "returned a part's CRC64, then each part's CRC64 is compared when it lands (before Complete makes it "
           "visible), which saves ~1.4 s of CPU per GiB", origin="COSFS/s3fs", group="write-back"),
    Option("disable_content_md5", "flag", False, "send no Content-MD5 (CRC64 is still checked)", origin="COSFS",
           group="write-back"),
    # --- objects ---
    Option("storage_class", "choice", "", "storage class of new objects: every COS class; s3fs's reduced_redundancy, "
           "onezone_ia, glacier_ir, glacier become standard, standard_ia, standard_ia, archive (with a warning)",
           STORAGE_CLASSES + tuple(STORAGE_CLASS_EQUIVALENTS), origin="COSFS/s3fs", shown="standard (COS's default)"),
    Option("use_rrs", "choice", "", "s3fs's old reduced redundancy switch: COS has no such class, objects are "
           "written standard (with a warning)", ("", "0", "1"), origin="COSFS/s3fs", bare="1", shown="off",
           group="compatibility"),
    Option("use_sse", "str", "", "server-side encryption of new objects: use_sse (or 1): SSE-COS; kmsid:KEYID (or "
           "k:KEYID): SSE-KMS; custom:KEYFILE (or c:KEYFILE, or just KEYFILE): SSE-C with the first key of the "
           "file (mode 600)", origin="COSFS/s3fs", bare="1"),
    Option("load_sse_c", "str", "", "SSE-C key file for reading objects encrypted with a customer key",
           origin="COSFS/s3fs"),
    Option("ahbe_conf", "str", "", "file of extra headers by key suffix or regex (s3fs's format: "
           "'.gz Content-Encoding gzip'), sent on every upload", origin="COSFS/s3fs"),
    Option("mime", "str", "", "mime.types file for Content-Type by extension (read after /etc/mime.types)",
           origin="s3fs"),
    Option("noxattr", "flag", False, "disable extended attributes (also user.cosfs.* and so cosfs status/sync)",
           origin="COSFS"),
    Option("use_xattr", "flag", False, "extended attributes on", origin="s3fs", group="compatibility",
           shown="on unless noxattr"),
    Option("bucket_size", "str", "", "size df shows for the mount (bytes, or with GB, GiB, TB, TiB, PB, PiB, EB, "
           "EiB)", origin="s3fs", shown="2^40 blocks of block_size"),
    # --- TLS and network ---
    Option("ca_bundle", "str", "", "CA certificates file for https endpoints",
           shown="$SSL_CERT_FILE, $CURL_CA_BUNDLE, else the system's"),
    Option("no_check_certificate", "flag", False, "do not check the endpoint's TLS certificate (logged as a "
           "warning)", origin="COSFS/s3fs"),
    Option("ssl_verify_hostname", "choice", "", "0: do not check that the certificate names the endpoint's host",
           ("", "0", "1", "2"), origin="COSFS/s3fs", shown="checked"),
    Option("ssl_client_cert", "str", "", "client certificate: CERTFILE[:TYPE[:KEYFILE]] (PEM)", origin="s3fs"),
    Option("cipher_suites", "str", "", "TLS cipher list (OpenSSL names, colon separated)", origin="s3fs",
           shown="OpenSSL's"),
    Option("proxy", "str", "", "HTTP proxy for COS requests ([scheme://]host[:port])", origin="s3fs",
           check=_proxy_problem, shown="$https_proxy / $http_proxy unless the host is in $no_proxy"),
    Option("proxy_cred_file", "str", "", "file with USER:PASSWORD (URL-encoded) for the proxy", origin="s3fs"),
    Option("ipresolve", "choice", "whatever", "IP version to connect with", ("whatever", "ipv4", "ipv6"),
           origin="s3fs"),
    # --- FUSE ---
    Option("attr_timeout", "float", None, "seconds the kernel trusts attributes", origin="FUSE", group="cache",
           shown="stat_cache_expire"),
    Option("entry_timeout", "float", None, "seconds the kernel trusts names", origin="FUSE", group="cache",
           shown="stat_cache_expire"),
    Option("negative_timeout", "float", None, "seconds a 'no such file' answer is trusted (same as "
           "negative_cache_expire)", origin="FUSE", group="cache", shown="negative_cache_expire"),
    Option("direct_io", "flag", False, "bypass the kernel page cache for file data", origin="FUSE", group="cache"),
    Option("debug", "flag", False, "debug logging, and libfuse's request trace on stderr", origin="FUSE"),
    Option("fsname", "str", "", "the mount's source in /proc/mounts", origin="FUSE", shown="cosfs#BUCKET"),
    Option("subtype", "str", "", "the mount's type suffix", origin="FUSE", shown="cosfs (type fuse.cosfs)"),
    Option("default_permissions", "flag", True, "the kernel checks permissions (always on)", origin="FUSE",
           group="compatibility"),
    _kernel("auto_unmount", "flag", "the kernel mount goes away when the daemon dies (fusermount3)"),
    _kernel("max_read", "int", "largest read request the kernel sends", minimum=0),
    _kernel("noexec", "flag", "no program on the mount may be executed", "FUSE/mount"),
    _kernel("exec", "flag", "programs on the mount may be executed (the default)", "FUSE/mount"),
    _kernel("nosuid", "flag", "set-user-id bits have no effect (the default)", "FUSE/mount"),
    _kernel("suid", "flag", "set-user-id bits take effect (root only)", "FUSE/mount"),
    _kernel("nodev", "flag", "device files cannot be opened (the default)", "FUSE/mount"),
    _kernel("dev", "flag", "device files can be opened (root only)", "FUSE/mount"),
    _kernel("sync", "flag", "synchronous writes (MS_SYNCHRONOUS)", "FUSE/mount"),
    _kernel("async", "flag", "asynchronous writes (the default)", "FUSE/mount"),
    _kernel("dirsync", "flag", "synchronous directory changes (MS_DIRSYNC)", "FUSE/mount"),
    _kernel("noatime", "flag", "the kernel does not update access times", "FUSE/mount"),
    _kernel("atime", "flag", "the kernel updates access times (the default)", "FUSE/mount"),
    # --- cosfs only ---
    Option("metrics_address", "str", "", "serve Prometheus metrics on HOST:PORT (e.g. 127.0.0.1:9464)",
           check=_address_problem, shown="none: no metrics"),
]
BY_NAME = {opt.name: opt for opt in OPTIONS}

_SAME = "cosfs does this always"
_ON_COMMAND_LINE = "keys are not taken on the command line (every user could read them with ps): put them in a " \
    "passwd file"
_NO_CREDLIB = "credential libraries are not loaded: use a passwd file, the environment or cam_role"
OPTIONS += [
    _alias("use_cache", "cache_dir", "COSFS/s3fs"),
    _alias("host", "url", "COSFS/s3fs"),
    _alias("endpoint", "region", "COSFS/s3fs"),
    _alias("parallel_upload", "parallel_count", "COSFS"),
    _alias("logfile", "log_file", "s3fs"),
    _alias("iam_role", "cam_role", "s3fs", bare="auto"),
    _alias("enable_negative_cache", "enable_noobj_cache", "s3fs"),
    _alias("stat_cache_interval_expire", "stat_cache_expire", "s3fs", note="stat_cache_interval_expire: cosfs "
           "counts the time from when an entry was cached, not from its last use"),
    # Tuning of things cosfs does differently.
    _noted("list_object_max_keys", "int", "COSFS/s3fs", "list_object_max_keys: each LIST asks for 1000 keys, "
           "COS's largest page"),
    _noted("listobjectsv2", "flag", "s3fs", "listobjectsv2: cosfs lists with ListObjects (V1), which COS answers"),
    _noted("insecure_logging", "flag", "s3fs", "insecure_logging: cosfs never writes keys, tokens or signatures to its "
           "logs, with this option or without; its debug output is dbglevel=debug and curldbg", level=WARNING),
    _noted("tmpdir", "str", "COSFS/s3fs", "tmpdir: writes are staged under cache_dir/staging"),
    _noted("fd_page_size", "str", "COSFS", "fd_page_size: COSFS no longer uses it; cosfs caches in block_size "
           "blocks"),
    _noted("max_thread_count", "int", "s3fs", "max_thread_count: parts are uploaded parallel_count at a time"),
    _noted("multipart_copy_size", "int", "s3fs", "multipart_copy_size: server-side copies use multipart_size "
           "parts above 5 GB"),
    _noted("singlepart_copy_limit", "int", "COSFS/s3fs", "singlepart_copy_limit: objects up to 5 GB are copied "
           "in one request, larger ones part by part"),
    _noted("max_dirty_data", "int", "s3fs", "max_dirty_data: a file written from its start is uploaded part by "
           "part while it is written"),
    _noted("streamupload", "flag", "s3fs", f"streamupload: {_SAME} for files written from their start"),
    _noted("noflush_in_other_proc", "flag", "COSFS", "noflush_in_other_proc: every close() of a handle open for "
           "writing commits its changes; one with nothing new sends nothing"),
    _noted("nomixupload", "flag", "s3fs", "nomixupload: untouched ranges of a changed object are still copied "
           "server-side (Upload Part - Copy)"),
    _noted("nocopyapi", "flag", "COSFS/s3fs", "nocopyapi: cosfs renames and changes metadata with PUT Object - "
           "Copy; a server without it fails those operations", level=WARNING),
    _noted("norenameapi", "flag", "COSFS/s3fs", "norenameapi: cosfs renames with PUT Object - Copy; a server "
           "without it fails renames", level=WARNING),
    _noted("enable_unsigned_payload", "flag", "s3fs", "enable_unsigned_payload: SigV4 requests carry the payload's "
           "SHA-256"),
    _noted("default_acl", "str", "COSFS/s3fs", "default_acl: no ACL header is sent (as COSFS): objects get the "
           "bucket's ACL"),
    _noted("requester_pays", "flag", "s3fs", "requester_pays: COS has no requester-pays buckets; no such header "
           "is sent", level=WARNING),
    _noted("nodnscache", "flag", "COSFS/s3fs", "nodnscache: cosfs keeps no DNS cache of its own"),
    _noted("nosscache", "flag", "COSFS/s3fs", "nosscache: TLS sessions live only as long as their pooled "
           "connection"),
    _noted("noxmlns", "flag", "COSFS/s3fs", f"noxmlns: XML namespaces are ignored; {_SAME}"),
    _noted("xmlns", "flag", "COSFS", f"xmlns: XML namespaces are ignored; {_SAME}"),
    _noted("sigv2", "flag", "s3fs", "sigv2: cosfs signs with the COS signature (q-sign, HMAC-SHA1) unless sigv4"),
    _noted("noua", "flag", "s3fs", "noua: a User-Agent (cosfs) is sent"),
    _noted("enable_clientinfo", "flag", "COSFS", "enable_clientinfo: the User-Agent names cosfs and its version"),
    _noted("imdsv1only", "flag", "s3fs", "imdsv1only: the CVM metadata service needs no token"),
    _noted("use_session_token", "flag", "s3fs", "use_session_token: a session token is sent whenever the key "
           "source has one"),
    _noted("complement_stat", "flag", "s3fs", f"complement_stat: {_SAME}: objects without x-cos-meta-mode get "
           "default_permission"),
    _noted("compat_dir", "flag", "s3fs", f"compat_dir: {_SAME}: 'dir/', 'dir_$folder$' and implied directories "
           "are all directories"),
    _noted("notsup_compat_dir", "flag", "s3fs", "notsup_compat_dir: implied and 'dir_$folder$' directories are "
           "still shown"),
    _noted("update_parent_dir_stat", "flag", "s3fs", "update_parent_dir_stat: directory times come from their "
           "marker objects"),
    _noted("use_wtf8", "flag", "s3fs", "use_wtf8: names that are not UTF-8 are refused (EINVAL), never re-encoded",
           level=WARNING),
    _noted("no_time_stamp_msg", "flag", "s3fs", "no_time_stamp_msg: log lines keep their time stamps"),
    _noted("set_check_cache_sigusr1", "str", "s3fs", "set_check_cache_sigusr1: cosfs checks cached blocks by "
           "ETag on every read; SIGUSR1 does nothing", bare=""),
    _noted("kernel_cache", "flag", "FUSE", "kernel_cache: the page cache is kept across opens while the object's "
           "ETag is unchanged"),
    _noted("auto_cache", "flag", "FUSE", f"auto_cache: {_SAME}: the page cache is dropped when the ETag changes"),
    _noted("noauto_cache", "flag", "FUSE", "noauto_cache: the page cache is dropped when the object's ETag "
           "changes"),
    _noted("ac_attr_timeout", "float", "FUSE", "ac_attr_timeout: attributes are checked every attr_timeout"),
    _noted("max_write", "int", "FUSE", "max_write: libfuse 3 negotiates the write size with the kernel"),
    _noted("big_writes", "flag", "FUSE", f"big_writes: {_SAME} (libfuse 3)"),
    _noted("large_read", "flag", "FUSE", "large_read: obsolete (Linux 2.4)"),
    _noted("use_ino", "flag", "FUSE", "use_ino: inode numbers are always cosfs's own"),
    _noted("readdir_ino", "flag", "FUSE", "readdir_ino: readdir always carries inode numbers"),
    _noted("intr", "flag", "FUSE", "intr: cosfs lets interrupted requests finish"),
    _noted("intr_signal", "int", "FUSE", "intr_signal: cosfs lets interrupted requests finish"),
    _noted("hard_remove", "flag", "FUSE", "hard_remove: an unlinked open file keeps its data until closed"),
    _noted("remember", "int", "FUSE", "remember: inodes are kept while the kernel knows them"),
    _noted("max_background", "int", "FUSE", "max_background: cosfs sets it to 64"),
    _noted("congestion_threshold", "int", "FUSE", "congestion_threshold: the kernel's default applies"),
    _noted("async_read", "flag", "FUSE", f"async_read: {_SAME}"),
    _noted("sync_read", "flag", "FUSE", "sync_read: reads are answered asynchronously"),
    _noted("atomic_o_trunc", "flag", "FUSE", f"atomic_o_trunc: {_SAME}"),
    _noted("splice_read", "flag", "FUSE", "splice_read: pyfuse3 copies request data"),
    _noted("splice_write", "flag", "FUSE", "splice_write: pyfuse3 copies reply data"),
    _noted("splice_move", "flag", "FUSE", "splice_move: pyfuse3 copies request data"),
    _noted("no_remote_lock", "flag", "FUSE", "no_remote_lock: locks are local to this mount"),
    _noted("writeback_cache", "flag", "FUSE", "writeback_cache: writes reach cosfs as they happen (write-through)"),
    # Credential sources that do not exist for COS.
    _refused("accessKeyId", _ON_COMMAND_LINE, "COSFS"),
    _refused("secretAccessKey", _ON_COMMAND_LINE, "COSFS"),
    _refused("ecs", "AWS ECS container credentials do not exist for COS: use cam_role on a CVM instance, or a "
             "passwd file", "s3fs"),
    _refused("ibm_iam_auth", "IBM IAM does not sign COS requests: use a passwd file", "s3fs"),
    _refused("ibm_iam_endpoint", "IBM IAM does not sign COS requests: use a passwd file", "s3fs"),
    _refused("credlib", _NO_CREDLIB, "s3fs"),
    _refused("credlib_opts", _NO_CREDLIB, "s3fs"),
]
BY_NAME = {opt.name: opt for opt in OPTIONS}

# Options that mount(8) and fstab use and that need nothing from us (the kernel keeps no access
# times for cosfs, so the atime variants libfuse does not know are dropped too).
IGNORED = {"_netdev", "auto", "noauto", "nofail", "user", "users", "nouser", "defaults", "owner", "group",
           "relatime", "norelatime", "strictatime", "nostrictatime", "diratime", "nodiratime", "lazytime",
           "nolazytime", "silent", "loud"}

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgtpe]i?b?|b)?\s*$", re.IGNORECASE)


def parse_size(text: str, unit_bytes: int = 1) -> int:
    match = _SIZE.match(text)
    if not match:
        raise ValueError(text)
    number, suffix = int(match.group(1)), (match.group(2) or "").lower()
    if not suffix:
        return number * unit_bytes
    return number * 1024 ** "bkmgtpe".index(suffix[0])


def convert(opt: Option, raw: str | None) -> object:
    if opt.kind == "refuse":
        raise ConfigError(f"option {opt.name} is not supported: {opt.help}")
    if opt.kind == "flag":
        if raw is None or raw.lower() in ("1", "true", "yes", "on", ""):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"option {opt.name} is a flag; it takes no value (got {raw!r})")
    if raw is None:
        if opt.bare is None:
            raise ConfigError(f"option {opt.name} needs a value ({opt.name}=...)")
        raw = opt.bare
    try:
        value = _typed(opt, raw)
    except ValueError:
        expected = {"int": "a whole number", "float": "a number", "octal": "an octal mode such as 022",
                    "size": "a size such as 512M", "choice": "one of " + ", ".join(c for c in opt.choices if c)}
        raise ConfigError(f"option {opt.name}: {raw!r} is not {expected.get(opt.kind, 'valid')}") from None
    minimum = 0 if opt.minimum is None and opt.kind == "float" else opt.minimum
    if minimum is not None and value < minimum:
        shown = human_size(int(minimum)) if opt.kind == "size" else f"{minimum:g}"
        raise ConfigError(f"option {opt.name}: {raw!r} is too small (at least {shown})")
    problem = opt.check(value) if opt.check else ""
    if problem:
        shown_raw = re.sub(r"//[^/@]*@", "//...@", raw)  # a URL's user:password is never echoed
        raise ConfigError(f"option {opt.name}: {shown_raw!r} {problem}")
    return value


def _typed(opt: Option, raw: str) -> Any:  # int, float, str or bool by opt.kind
    if opt.kind == "str":
        return raw
    if opt.kind == "int":
        return int(raw)
    if opt.kind == "float":
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError(raw)
        return number
    if opt.kind == "octal":
        mode = int(raw, 8)
        if not 0 <= mode <= 0o7777:
            raise ValueError(raw)
        return mode
    if opt.kind == "size":
        return parse_size(raw, opt.unit_bytes)
    if opt.kind == "choice":
        if raw.lower() not in opt.choices:
            raise ValueError(raw)
        return raw.lower()
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


@dataclasses.dataclass
class Parsed:
    """The outcome of a set of options: a value for every option in the table, which ones were
    given, the log lines the mount owes for noted options, and the kernel mount options."""

    values: dict[str, Any]  # each option's typed value (int, float, str, bool or None by its kind)
    given: set[str]
    notes: list[tuple[int, str]]
    kernel: list[str]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def unknown_option(name: str) -> str:
    """The error for an option not in the table, with the nearest name when one is close,
    spelled as `name` was (-o name or --long-flag)."""
    close = difflib.get_close_matches(name.lstrip("-").replace("-", "_"), BY_NAME, n=1)
    if not close:
        return f"unknown option {name!r}; see 'cosfs mount --help'"
    suggestion = "--" + close[0].replace("_", "-") if name.startswith("--") else close[0]
    return f"unknown option {name!r}; did you mean {suggestion}?"


def parse_options(pairs: Iterable[tuple[str, str | None]]) -> Parsed:
    """Defaults, overridden by `pairs` in order."""
    parsed = Parsed({opt.name: opt.default for opt in OPTIONS}, set(), [], [])
    for name, raw in pairs:
        key = name.replace("-", "_") if not name.startswith("x-") else name
        if key in IGNORED or key.startswith(("x-", "comment")):
            continue
        opt = BY_NAME.get(key)
        if opt is None:
            raise ConfigError(unknown_option(name))
        value = convert(opt, raw)
        parsed.values[opt.target or key] = value
        parsed.given.add(opt.target or key)
        if opt.note:
            parsed.notes.append((opt.note_level, opt.note))
        if opt.kernel and value is not False:
            parsed.kernel.append(key if opt.kind == "flag" else f"{key}={value}")
    return parsed
