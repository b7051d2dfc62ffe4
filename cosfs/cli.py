"""Command line: `cosfs serve|mount|umount|status|sync|discard`, COSFS-style `cosfs [-o OPTS]
BUCKET MOUNTPOINT [-o OPTS]`, COSFS's utility mode (`cosfs -u BUCKET`), and the `mount.cosfs`
helper that mount(8) and fstab call.

Parses arguments into configuration and hands over; touches COS only in utility mode, and
never caches or FUSE itself. Every error of the command line or of an option value is one line
`cosfs: ...`, never a traceback or argparse's usage dump. Configuration errors exit 78
(EX_CONFIG) from `cosfs mount`, which the systemd unit runs and does not restart on, and 1 from
the COSFS-style forms and the mount helper, as COSFS and s3fs exit; other commands' usage
errors exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import mimetypes
import os
import re
import sys
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, unquote, urlsplit

from cosfs import __version__, optdocs, options
from cosfs.config import CosConfig, FsConfig, environment, proxy_from_environment, region_endpoint
from cosfs.credentials import CredentialProvider, read_sse_customer_key, resolve_credentials
from cosfs.errors import EXIT_CONFIG, ConfigError, CosfsError

LOG_LEVELS = {"silent": logging.CRITICAL, "crit": logging.CRITICAL, "critical": logging.CRITICAL,
              "err": logging.ERROR, "error": logging.ERROR, "wan": logging.WARNING, "warn": logging.WARNING,
              "warning": logging.WARNING, "inf": logging.INFO, "info": logging.INFO, "information": logging.INFO,
              "dbg": logging.DEBUG, "debug": logging.DEBUG}
SUBCOMMANDS = {"serve", "mount", "umount", "unmount", "status", "sync", "discard", "-h", "--help", "--version"}
# One line that version-parsing scripts find: "V" and three numbers, as COSFS prints it.
VERSION_LINE = f"cosfs V{__version__} (FUSE filesystem for Tencent COS; COSFS and s3fs compatible)"
MAX_PUT_BYTES = 5 * 1024**3  # COS's largest single PUT: nomultipart's ceiling
WARNING, INFO = logging.WARNING, logging.INFO
EXIT_USAGE = 2  # a command line other commands cannot take (argparse's status)
MOUNT_USAGE = ("%(prog)s [-f] [-d] [-s] [-o OPTION[=VALUE],...] [--OPTION [VALUE]...] BUCKET[:/PREFIX] MOUNTPOINT\n"
               "       %(prog)s -u | --incomplete-mpu-abort[=all|AGE] BUCKET -o url=...")


class UsageError(ConfigError):
    """A command line argparse cannot take: reported in one line like any configuration error."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are raised (main prints one line and picks the exit status)
    instead of printing the usage and exiting 2 from inside the parser."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def cache_subdir(bucket: str, prefix: str) -> str:
    """One folder per bucket and prefix under a cache directory (COSFS users often give every
    mount the same `use_cache`): `bucket`, or `bucket:a%2Fb` for `bucket:/a/b`."""
    if not prefix:
        return bucket
    return f"{bucket}:{quote(prefix.rstrip('/'), safe='')}"


def parse_source(text: str) -> tuple[str, str]:
    """(bucket, prefix) from COSFS's source forms: `bucket-appid[:/dir]`, and the legacy
    `appid:bucket[:/dir]` (still in COSFS's automount template), which names bucket-appid."""
    fields = text.split(":")
    if len(fields) >= 2 and not fields[1].startswith("/"):
        appid, bucket, rest = fields[0], fields[1], fields[2:]
        if not appid.isdigit():
            raise ConfigError(f"source {text!r}: expected BUCKET-APPID[:/PREFIX] or APPID:BUCKET[:/PREFIX]")
        if not bucket.endswith(f"-{appid}"):
            bucket = f"{bucket}-{appid}"
    else:
        bucket, rest = fields[0], fields[1:]
    prefix = ":".join(rest).strip("/")
    if not bucket:
        raise ConfigError("no bucket given (BUCKET-APPID[:/PREFIX])")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", bucket):
        raise ConfigError(f"bucket {bucket!r}: a bucket name is letters, digits, '-', '.' and '_' (BUCKET-APPID)")
    return bucket, prefix + "/" if prefix else ""


def add_mount_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bucket", nargs="?", help="BUCKET-APPID, optionally with :/PREFIX to mount a folder "
                        "(or COSFS's APPID:BUCKET[:/PREFIX])")
    parser.add_argument("mountpoint", nargs="?", type=Path)
    parser.add_argument("-o", dest="o", action="append", default=[], metavar="OPT[=VALUE],...",
                        help="mount options, COSFS/s3fs style (the same names as the long flags)")
    parser.add_argument("-f", dest="short_foreground", action="store_true", help="stay in the foreground")
    parser.add_argument("-d", dest="short_debug", action="count", default=0,
                        help="info logging; twice: debug logging and libfuse's request trace")
    parser.add_argument("-s", dest="single_thread", action="store_true",
                        help="accepted (FUSE single-thread): cosfs runs one thread")
    parser.add_argument("-u", "--incomplete-mpu-list", dest="mpu_list", action="store_true",
                        help="utility mode: list the bucket's unfinished multipart uploads and offer to abort them")
    parser.add_argument("--incomplete-mpu-abort", dest="mpu_abort", metavar="all|AGE",
                        help="utility mode: abort unfinished multipart uploads older than AGE (e.g. 1D12h; "
                        "default 24H) or all of them")
    for name in options.GROUPS:
        title, description = optdocs.TITLES[name]
        description = optdocs.ignored_summary() if name == "ignored" else description
        group = parser.add_argument_group(title, description or None)
        for opt in options.OPTIONS:
            if opt.group != name:
                continue
            flag = "--" + opt.name.replace("_", "-")
            text = argparse.SUPPRESS if name == "ignored" else optdocs.help_text(opt).replace("%", "%%")
            if opt.kind in ("flag", "refuse"):
                group.add_argument(flag, dest=f"opt_{opt.name}", action="store_const", const="", default=None,
                                   help=text)
            else:
                group.add_argument(flag, dest=f"opt_{opt.name}", default=None, metavar=optdocs.metavar(opt), help=text)


def parse_arguments(args: argparse.Namespace) -> options.Parsed:
    pairs: list[tuple[str, str | None]] = []
    for text in args.o:
        pairs.extend(options.split_o(text))
    for opt in options.OPTIONS:
        raw = getattr(args, f"opt_{opt.name}", None)
        if raw is not None:
            pairs.append((opt.name, raw or None))
    return options.parse_options(pairs)


def endpoint_url(values: dict, notes: list[tuple[int, str]]) -> str:
    """url (or host), else the region's endpoint; https:// for a URL without a scheme, as
    COSFS assumes; servicepath appended."""
    url = str(values["url"]).strip().rstrip("/")
    if url and "://" not in url:
        notes.append((WARNING, f"url={url} has no scheme: using https://{url}"))
        url = "https://" + url
    if not url and values["region"]:
        url = region_endpoint(str(values["region"]))
    if not url:
        raise ConfigError("no endpoint: give -o url=https://cos.REGION.myqcloud.com or -o region=REGION")
    service_path = str(values["servicepath"]).strip("/")
    return f"{url}/{service_path}" if service_path else url


def storage_class(values: dict, notes: list[tuple[int, str]]) -> str | None:
    name = str(values["storage_class"])
    if not name and values["use_rrs"]:
        name = "reduced_redundancy" if values["use_rrs"] == "1" else "standard"
    equivalent = options.STORAGE_CLASS_EQUIVALENTS.get(name)
    if equivalent:
        notes.append((WARNING, f"storage_class {name}: COS has no such class; objects are written {equivalent}"))
        name = equivalent
    return name.upper() or None


def encryption(values: dict, env, notes: list[tuple[int, str]]) -> dict:
    """CosConfig's SSE fields from use_sse and load_sse_c, with COSFS's spellings: use_sse
    or 1 (SSE-COS), kmsid[:ID] / k[:ID] (SSE-KMS; the id may come from AWSSSEKMSID or
    COSSSEKMSID), custom[:FILE] / c[:FILE] or FILE (SSE-C)."""
    loaded = str(values["load_sse_c"])
    customer = _customer_key(loaded, notes) if loaded else None
    text = str(values["use_sse"])
    kind, _, argument = text.partition(":")
    kind = kind.lower()
    if not text:
        return {"sse_customer_key": customer}
    if text.lower() in ("1", "aes256"):
        return {"server_side_encryption": "AES256", "sse_customer_key": customer}
    if kind in ("kmsid", "k"):
        key_id = argument or env.get("COSSSEKMSID") or env.get("AWSSSEKMSID")
        if not key_id:
            raise ConfigError("use_sse=kmsid needs a KMS key id: use_sse=kmsid:KEYID (or set AWSSSEKMSID)")
        return {"server_side_encryption": "cos/kms", "sse_kms_key_id": key_id, "sse_customer_key": customer}
    if kind in ("custom", "c"):
        if argument:
            customer = _customer_key(argument, notes)
        if customer is None:
            raise ConfigError("use_sse=custom needs a key: use_sse=custom:KEYFILE or load_sse_c=KEYFILE")
        return {"server_side_encryption": "SSE-C", "sse_customer_key": customer}
    if Path(text).is_file():
        return {"server_side_encryption": "SSE-C", "sse_customer_key": _customer_key(text, notes)}
    raise ConfigError(f"use_sse={text}: expected use_sse, use_sse=kmsid:KEYID or use_sse=custom:KEYFILE")


def _customer_key(path: str, notes: list[tuple[int, str]]) -> bytes:
    key, count = read_sse_customer_key(Path(path).expanduser())
    if count > 1:
        notes.append((INFO, f"SSE-C key file {path} holds {count} keys: the first is used for reads and writes"))
    return key


def extra_headers(path: str) -> tuple[tuple[str, str, str], ...]:
    """ahbe_conf rules, s3fs's format: `[SUFFIX|reg:REGEX] HEADER [VALUE...]`, # comments;
    x-amz- headers become x-cos- ones."""
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"ahbe_conf {path}: {exc.strerror if isinstance(exc, OSError) else 'not UTF-8'}") from None
    rules = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) == 1:
            raise ConfigError(f"ahbe_conf {path} line {number}: expected '[SUFFIX] HEADER VALUE'")
        pattern, header, value = ("", fields[0], " ".join(fields[1:])) if len(fields) == 2 else \
            (fields[0], fields[1], " ".join(fields[2:]))
        if pattern.startswith("reg:"):
            try:
                re.compile(pattern[4:])
            except re.error:
                raise ConfigError(f"ahbe_conf {path} line {number}: bad regular expression") from None
        header = re.sub(r"^x-amz-", "x-cos-", header, flags=re.IGNORECASE)
        rules.append((pattern, header, value))
    return tuple(rules)


def tls_settings(values: dict, env) -> dict:
    ca_bundle = str(values["ca_bundle"]) or env.get("SSL_CERT_FILE") or env.get("CURL_CA_BUNDLE") or None
    if ca_bundle and not Path(ca_bundle).is_file():
        raise ConfigError(f"CA bundle {ca_bundle} does not exist")
    cert = key = None
    if values["ssl_client_cert"]:
        fields = str(values["ssl_client_cert"]).split(":")
        if any(kind.upper() not in ("", "PEM") for kind in fields[1:4:2]):
            raise ConfigError("ssl_client_cert: only PEM certificates and keys are supported")
        cert, key = fields[0], (fields[2] if len(fields) > 2 and fields[2] else None)
    return {"verify_tls": not values["no_check_certificate"], "ca_bundle": ca_bundle,
            "verify_hostname": values["ssl_verify_hostname"] != "0", "client_cert": cert, "client_key": key,
            "cipher_suites": str(values["cipher_suites"]) or None}


def proxy_url(values: dict, url: str, env) -> str | None:
    """The proxy for COS requests: the proxy option (s3fs: scheme http and port 1080 or 443
    when omitted, credentials from proxy_cred_file), else the environment's."""
    proxy = str(values["proxy"])
    if not proxy:
        return proxy_from_environment(url, env)
    if "://" not in proxy:
        proxy = "http://" + proxy
    parts = urlsplit(proxy)
    netloc = parts.netloc if parts.port else f"{parts.netloc}:{443 if parts.scheme == 'https' else 1080}"
    if values["proxy_cred_file"]:
        try:
            user, _, password = Path(str(values["proxy_cred_file"])).read_text().strip().partition(":")
        except OSError as exc:
            raise ConfigError(f"proxy_cred_file: {exc.strerror}") from None
        netloc = f"{quote(unquote(user), safe='')}:{quote(unquote(password), safe='')}@{netloc}"
    return f"{parts.scheme}://{netloc}"


def cos_config(values: dict, bucket: str, notes: list[tuple[int, str]]) -> CosConfig:
    env = environment()
    url = endpoint_url(values, notes)
    agent = " ".join(filter(None, [f"cosfs/{__version__}", str(values["instance_name"]),
                                   str(values["user_agent_suffix"])]))
    return CosConfig(
        bucket=bucket,
        endpoint_url=url,
        region=str(values["region"]),
        path_style=True if values["use_path_request_style"] else None,
        signature="sigv4" if values["sigv4"] else "cos",
        max_connections=max(8, 2 * int(values["parallel_count"]), int(values["multireq_max"])),
        connect_timeout_s=float(values["connect_timeout"]),
        read_timeout_s=float(values["readwrite_timeout"]),
        retries=int(values["retries"]),
        storage_class=storage_class(values, notes),
        content_md5=("never" if values["disable_content_md5"] else
                     "always" if values["enable_content_md5"] else "auto"),
        user_agent=agent,
        proxy=proxy_url(values, url, env),
        local_address={"ipv4": "0.0.0.0", "ipv6": "::"}.get(str(values["ipresolve"])),
        extra_headers=extra_headers(str(values["ahbe_conf"])) if values["ahbe_conf"] else (),
        **tls_settings(values, env),
        **encryption(values, env, notes),
    )


def credentials_for(values: dict, bucket: str) -> CredentialProvider:
    return resolve_credentials(
        bucket,
        passwd_file=str(values["passwd_file"]) or None,
        cam_role=str(values["cam_role"]) or None,
        metadata_url=str(values["cam_role_endpoint"]),
        profile=str(values["profile"]) or None,
        public_bucket=values["public_bucket"] == "1",
    )


def parse_bucket_size(text: str) -> int:
    """s3fs's bucket_size: bytes, or with GB, GiB, TB, TiB, PB, PiB, EB, EiB."""
    match = re.fullmatch(r"(\d+)(?:([GTPE])(i?)B)?", text.strip(), re.IGNORECASE)
    if not match:
        raise ConfigError(f"bucket_size {text!r}: expected bytes or a number with GB, GiB, TB, TiB, PB, PiB, EB, EiB")
    number, unit, binary = match.groups()
    power = "GTPE".index(unit.upper()) + 3 if unit else 0
    return int(number) * (1024 if binary else 1000) ** power


def disk_space(path: Path) -> tuple[int, int]:
    """(size, bytes free to non-root) of the filesystem `path` is (or would be created) on."""
    while not path.exists():
        path = path.parent
    stats = os.statvfs(path)
    return stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize


def check_diskfree(diskfree: int, cache_dir: Path) -> None:
    """ensure_diskfree asks for more free space than the cache disk has, even once its block
    cache (which eviction gives back) is counted: COSFS refuses to start, and so does cosfs,
    rather than mounting a filesystem whose every write fails with ENOSPC."""
    _, free = disk_space(cache_dir)
    reclaimable = 0
    for folder, _, names in os.walk(cache_dir / "blocks"):  # a live mount may be evicting: races ignored
        for name in names:
            with contextlib.suppress(OSError):
                reclaimable += os.lstat(os.path.join(folder, name)).st_blocks * 512
    if diskfree > free + reclaimable:
        raise ConfigError(f"ensure_diskfree={options.human_size(diskfree)} is more than the "
                          f"{options.human_size(free + reclaimable)} free on the disk of the cache directory "
                          f"{cache_dir}: lower it, or free space there")


def mount_settings(args: argparse.Namespace):
    """Everything a mount needs, from the command line: options parsed and mapped to the COS,
    filesystem and kernel settings, notes owed for options accepted without effect, keys."""
    from cosfs.mount import MountSettings

    parsed = parse_arguments(args)
    values = parsed.values
    notes = list(parsed.notes)
    source, mountpoint = args.bucket, args.mountpoint
    if values["bucket"] and source and mountpoint is None:
        source, mountpoint = str(values["bucket"]), Path(source)  # s3fs: `s3fs MOUNTPOINT -o bucket=NAME`
    if mountpoint is None:
        raise ConfigError("usage: cosfs BUCKET-APPID[:/PREFIX] MOUNTPOINT [-o OPTIONS]")
    bucket, prefix = parse_source(source)
    if args.single_thread:
        notes.append((INFO, "-s: cosfs serves the mount from one thread in any case"))
    level = LOG_LEVELS[str(values["dbglevel"])]
    fuse_debug = args.short_debug >= 2 or bool(values["debug"])
    if args.short_debug == 1:
        level = min(level, logging.INFO)  # COSFS: -d means info
    if fuse_debug or values["f2"]:
        level = logging.DEBUG
    if values["mime"]:
        if not Path(str(values["mime"])).is_file():
            raise ConfigError(f"mime file {values['mime']} does not exist")
        mimetypes.init([str(values["mime"])])
    cos = cos_config(values, bucket, notes)

    part = int(values["multipart_size"])
    threshold = MAX_PUT_BYTES if values["nomultipart"] else int(values["multipart_threshold"] or 2 * part)
    base = str(values["cache_dir"])
    if base and values["check_cache_dir_exist"] and not Path(base).is_dir():
        raise ConfigError(f"cache directory {base} does not exist (check_cache_dir_exist)")
    if not base:
        base = "/var/cache/cosfs" if os.geteuid() == 0 else str(Path.home() / ".cache" / "cosfs")
    cache_dir = Path(base) / cache_subdir(bucket, prefix)
    if values["del_cache"]:
        import shutil

        shutil.rmtree(cache_dir / "blocks", ignore_errors=True)
    diskfree = part if values["ensure_diskfree"] is None else int(values["ensure_diskfree"])
    if diskfree < part:
        notes.append((WARNING, f"ensure_diskfree is below multipart_size: {part // 2**20} MB are kept free"))
        diskfree = part
    if values["ensure_diskfree"] is not None:
        check_diskfree(diskfree, cache_dir)
    if values["free_space_ratio"] is not None:
        diskfree = max(diskfree, disk_space(cache_dir)[0] * min(int(values["free_space_ratio"]), 100) // 100)
    timeouts = [float(values[name]) for name in ("attr_timeout", "entry_timeout") if values[name] is not None]
    if len(set(timeouts)) > 1:
        notes.append((INFO, f"attr_timeout and entry_timeout differ: the kernel is given {min(timeouts)} s for both"))
    negative_ttl = float(values["negative_timeout"] if values["negative_timeout"] is not None
                         else values["negative_cache_expire"])
    default_perm = values["default_permission"]
    fs = FsConfig(
        prefix=prefix,
        read_only=bool(values["ro"]),
        # COSFS: an object without x-cos-meta-uid/gid belongs to root, unless uid=/gid= say
        # who owns everything.
        uid=0 if values["uid"] is None else int(values["uid"]),
        gid=0 if values["gid"] is None else int(values["gid"]),
        force_uid=values["uid"],
        force_gid=values["gid"],
        umask=values["umask"],
        mp_umask=0o022 if values["mp_umask"] is None else int(values["mp_umask"]),
        mp_umask_set=values["mp_umask"] is not None,
        default_permission=default_perm,
        # COSFS: an object without x-cos-meta-mode shows default_permission, 0777 by default.
        default_file_mode=0o777 if default_perm is None else int(default_perm),
        default_dir_mode=0o777 if default_perm is None else int(default_perm),
        stat_ttl_s=float(values["stat_cache_expire"]),
        negative_ttl_s=0.0 if values["disable_noobj_cache"] else negative_ttl,
        close_to_open=not values["nocto"],
        max_stat_entries=int(values["max_stat_cache_size"]),
        block_size_bytes=int(values["block_size"]),
        cache_size_bytes=int(values["cache_size"]),
        max_readahead_bytes=int(values["max_prefetch_bytes"]),
        fetch_size_bytes=part,
        parallel_fetches=int(values["parallel_count"]),
        part_size_bytes=part,
        multipart_threshold_bytes=threshold,
        write_back_delay_s=float(values["write_back_delay"]),
        xattrs=not values["noxattr"],
        listing_parallel=int(values["multireq_max"]),
        owner_uid=os.getuid(),
        owner_gid=os.getgid(),
        allow_other=bool(values["allow_other"]),
        ensure_diskfree_bytes=diskfree,
        direct_io=bool(values["direct_io"]),
        bucket_size_bytes=parse_bucket_size(str(values["bucket_size"])) if values["bucket_size"] else None,
    )
    credentials = credentials_for(values, bucket)
    if values["no_check_certificate"]:
        notes.append((WARNING, "no_check_certificate: the endpoint's TLS certificate is not checked"))
    return MountSettings(
        mountpoint=mountpoint.resolve(),
        cos=cos,
        fs=fs,
        credentials=credentials,
        cache_dir=cache_dir,
        foreground=bool(values["foreground"]) or args.short_foreground,
        nonempty=bool(values["nonempty"]),
        allow_other=bool(values["allow_other"]),
        allow_root=bool(values["allow_root"]),
        log_level=level,
        log_file=str(values["log_file"]),
        kernel_timeout_s=min(timeouts) if timeouts else float(values["stat_cache_expire"]),
        read_ahead_kb=max(4, int(values["max_readahead"]) // 1024),
        metrics_address=str(values["metrics_address"]),
        notes=tuple(notes),
        kernel_options=tuple(parsed.kernel + (["debug"] if fuse_debug else [])),
        fsname=str(values["fsname"]),
        subtype=str(values["subtype"]),
        http_debug=bool(values["curldbg"]),
        drain_idle_s=float(values["drain_timeout"]),
        log_format=str(values["log_format"]),
    )


_AGE = re.compile(r"(\d+)([YMDhms])")
_AGE_SECONDS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


def parse_age(text: str) -> float:
    """s3fs's age format for --incomplete-mpu-abort: 1Y6M10D12h30m30s."""
    age = text.replace("H", "h")  # s3fs's default is written 24H
    if not age or _AGE.sub("", age):
        raise ConfigError(f"--incomplete-mpu-abort={text}: expected 'all' or an age such as 24H or 1D12h30m")
    return float(sum(int(n) * _AGE_SECONDS[unit] for n, unit in _AGE.findall(age)))


def run_utility(args: argparse.Namespace) -> int:
    """COSFS/s3fs utility mode: list the bucket's unfinished multipart uploads, then abort
    them all after a yes on stdin (-u), or abort those older than an age without asking."""
    import trio

    from cosfs.cos.client import CosClient

    values = parse_arguments(args).values
    if not args.bucket or args.mountpoint is not None:
        raise ConfigError("utility mode takes the bucket only: cosfs -u BUCKET-APPID -o url=...")
    bucket, prefix = parse_source(args.bucket)
    notes: list[tuple[int, str]] = []
    cos = cos_config(values, bucket, notes)
    credentials = credentials_for(values, bucket)
    for level, text in notes:
        if level >= WARNING:
            print(f"cosfs: {text}", file=sys.stderr)
    older_than = None if args.mpu_abort in (None, "all") else parse_age(args.mpu_abort)

    async def work() -> None:
        async with CosClient(cos, credentials) as client:
            uploads = await client.list_multipart_uploads(prefix)
            print(f"{len(uploads)} unfinished multipart upload(s) in {bucket}")
            for upload in uploads:
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(upload.initiated_s))
                print(f"  Path: /{upload.key}\n  UploadId: {upload.upload_id}\n  Date: {when}")
            if args.mpu_abort is None:
                if not uploads:
                    return
                print("Abort all of them? [Y/N]", flush=True)
                if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                    return
            else:
                cutoff = time.time() - (older_than or 0)
                uploads = [u for u in uploads if older_than is None or u.initiated_s <= cutoff]
            for upload in uploads:
                await client.abort_multipart_upload(upload.key, upload.upload_id)
                print(f"aborted /{upload.key} ({upload.upload_id})")

    trio.run(work)
    return 0


def run_mount(args: argparse.Namespace) -> int:
    if args.mpu_list or args.mpu_abort is not None:
        return run_utility(args)
    from cosfs.mount import mount

    return mount(mount_settings(args))


def run_umount(args: argparse.Namespace) -> int:
    from cosfs.mount import unmount

    return unmount(args.mountpoint)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cosfs", description="Mount a Tencent Cloud COS bucket as a directory. COSFS's form "
                    "'cosfs [-o OPTIONS] BUCKET MOUNTPOINT' is 'cosfs mount'.",
                    epilog="Exit status: 0 done; 1 failed (and configuration errors of the COSFS form and "
                    "mount.cosfs); 2 a command line other commands cannot take; 78 a configuration error of "
                    "'cosfs mount'.")
    parser.add_argument("--version", action="version", version=VERSION_LINE)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from cosfs.server import main as server_main

    serve = commands.add_parser("serve", help="run the embedded COS-compatible server on loopback")
    server_main.add_arguments(serve)
    serve.set_defaults(handler=server_main.run)

    mount = commands.add_parser("mount", help="mount a bucket (returns once the mount is live)", usage=MOUNT_USAGE)
    add_mount_arguments(mount)
    mount.add_argument("--version", action="version", version=VERSION_LINE)
    mount.set_defaults(handler=run_mount)

    umount = commands.add_parser("umount", aliases=["unmount"], help="unmount; pending work is finished first")
    umount.add_argument("mountpoint", type=Path)
    umount.set_defaults(handler=run_umount)

    status = commands.add_parser("status", help="show a mount's traffic, cache and pending uploads")
    status.add_argument("mountpoint", type=Path)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--watch", type=float, nargs="?", const=2.0, default=None, metavar="SECONDS",
                        help="show it again every SECONDS (2 when not given) until interrupted")
    status.set_defaults(handler=lambda args: _control().status_command(args.mountpoint, args.json,
                                                                       watch=args.watch))

    sync = commands.add_parser("sync", help="upload every pending change now and wait for it")
    sync.add_argument("mountpoint", type=Path)
    sync.add_argument("--timeout", type=float, default=None, metavar="SECONDS")
    sync.add_argument("--retry-failed", action="store_true",
                      help="also retry the uploads COS refused for good (after the cause was fixed)")
    sync.set_defaults(handler=lambda args: _control().sync_command(args.mountpoint, args.timeout,
                                                                   retry_failed=args.retry_failed))

    discard = commands.add_parser("discard", help="drop the staged data of files COS refused for good")
    discard.add_argument("mountpoint", type=Path)
    discard.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a file under MOUNTPOINT")
    discard.set_defaults(handler=lambda args: _control().discard_command(args.mountpoint, args.paths))
    return parser


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """argparse, with what a mount cannot take reported as an unknown option and its nearest
    name, not as argparse's list of unrecognized arguments."""
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "mount" and extra[0].startswith("-"):
        raise UsageError(options.unknown_option(extra[0]))
    if extra:
        raise UsageError(f"unexpected argument {extra[0]!r} (see 'cosfs {args.command} --help')")
    return args


def _control():
    from cosfs import control

    return control


def _first_positional(argv: list[str]) -> str | None:
    """The first argument that is neither an option nor an option's value."""
    takes_value = {"-o"} | {"--" + opt.name.replace("_", "-") for opt in options.OPTIONS
                            if opt.kind not in ("flag", "refuse")}
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in takes_value:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: list[str] | None = None, *, compat: bool = False) -> int:
    """`compat`: invoked as COSFS is (`cosfs [-o ...] BUCKET MNT`, or the mount helper), so a
    configuration error exits 1 as COSFS's does, not 78."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # s3fs's `--incomplete-mpu-abort[=all|AGE] BUCKET`: bare, it must not take the bucket.
    argv = ["--incomplete-mpu-abort=24H" if arg == "--incomplete-mpu-abort" else arg for arg in argv]
    first = _first_positional(argv)
    if argv[0] not in SUBCOMMANDS and first is not None and first not in SUBCOMMANDS:
        argv = ["mount", *argv]  # COSFS style: cosfs [-o ...] BUCKET MOUNTPOINT [-o ...]
        compat = True
    try:
        args = parse_command_line(parser, argv)
    except UsageError as exc:
        print(f"cosfs: {exc}", file=sys.stderr)
        return EXIT_USAGE if argv[0] != "mount" else 1 if compat else EXIT_CONFIG
    code = _dispatch(args)
    return 1 if compat and code == EXIT_CONFIG else code


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"cosfs: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CosfsError as exc:
        print(f"cosfs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def mount_helper_main(argv: list[str] | None = None) -> int:
    """`mount.cosfs SOURCE MOUNTPOINT [-sfnvrw] [-N NAMESPACE] [-o opts]` as mount(8) calls it
    (also as /sbin/mount.fuse.cosfs). -f is mount's fake mode: the options are checked and
    nothing is mounted. -N mounts in another mount namespace (a PID or a path), setuid=USER
    runs the daemon as USER, as mount.fuse does; -t, -n, -s, -v are mount's own."""
    raw = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    fake = False
    namespace = user = None
    args = iter(raw)
    for arg in args:
        if arg in ("-t", "-N", "-o"):
            value = next(args, "")
            if arg == "-N":
                namespace = value
            elif arg == "-o":
                pairs = options.split_o(value)
                user = next((v for n, v in pairs if n == "setuid"), user)
                kept += ["-o", ",".join(n if v is None else f"{n}={v}".replace(",", "\\,")
                                        for n, v in pairs if n != "setuid")]
        elif arg == "-f":
            fake = True
        elif arg in ("-r", "-w"):
            kept += ["-o", "ro" if arg == "-r" else "rw"]
        elif arg not in ("-n", "-s", "-v") and not arg.startswith("-t"):
            kept.append(arg)
    if fake:
        return _check_only(kept)
    try:
        if namespace:
            enter_mount_namespace(namespace)
        if user:
            become_user(user)
    except ConfigError as exc:
        print(f"cosfs: {exc}", file=sys.stderr)
        return 1
    return main(["mount", *kept], compat=True)


def _check_only(argv: list[str]) -> int:
    """mount -f: parse the options (errors exit 1), mount nothing."""
    try:
        args = parse_command_line(build_parser(), ["mount", *argv])
        parse_arguments(args)
        parse_source(args.bucket or "")
    except ConfigError as exc:
        print(f"cosfs: {exc}", file=sys.stderr)
        return 1
    return 0


def enter_mount_namespace(namespace: str) -> None:
    """Join the mount namespace of a PID or a namespace file (mount -N)."""
    import ctypes

    path = namespace if "/" in namespace else f"/proc/{namespace}/ns/mnt"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f"-N {namespace}: {exc.strerror}") from None
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, 0x00020000) != 0:  # CLONE_NEWNS
            raise ConfigError(f"-N {namespace}: cannot enter the mount namespace: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def become_user(user: str) -> None:
    """setuid=USER: drop to USER (name or number), its groups and its HOME before mounting."""
    import pwd

    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"setuid={user}: no such user") from None
    try:
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except PermissionError:
        raise ConfigError(f"setuid={user}: only root can switch users") from None
    os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
