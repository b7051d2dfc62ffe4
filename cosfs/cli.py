"""Command line: `cosfs serve|mount|umount`, COSFS-style `cosfs BUCKET MOUNTPOINT -o ...`, and
the `mount.cosfs` helper that mount(8) and fstab call.

Parses arguments into configuration and hands over; never touches COS, caches or FUSE itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from urllib.parse import quote

from cosfs import __version__, options
from cosfs.config import CosConfig, FsConfig, region_endpoint
from cosfs.credentials import resolve_credentials
from cosfs.errors import EXIT_CONFIG, ConfigError, CosfsError

LOG_LEVELS = {"crit": logging.CRITICAL, "critical": logging.CRITICAL, "err": logging.ERROR, "error": logging.ERROR,
              "warn": logging.WARNING, "warning": logging.WARNING, "info": logging.INFO, "dbg": logging.DEBUG,
              "debug": logging.DEBUG}
SUBCOMMANDS = {"serve", "mount", "umount", "unmount", "status", "sync", "-h", "--help", "--version"}


def cache_subdir(bucket: str, prefix: str) -> str:
    """One folder per bucket and prefix under a cache directory (COSFS users often give every
    mount the same `use_cache`): `bucket`, or `bucket:a%2Fb` for `bucket:/a/b`."""
    if not prefix:
        return bucket
    return f"{bucket}:{quote(prefix.rstrip('/'), safe='')}"


def add_mount_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bucket", help="BUCKET-APPID, optionally with :/PREFIX to mount a folder")
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("-o", dest="o", action="append", default=[], metavar="OPT[=VALUE],...",
                        help="mount options, COSFS/s3fs style (the same names as the long flags)")
    parser.add_argument("-f", dest="short_foreground", action="store_true", help="stay in the foreground")
    parser.add_argument("-d", dest="short_debug", action="store_true", help="debug logging")
    group = parser.add_argument_group("options (each also accepted as -o NAME[=VALUE])")
    for opt in options.OPTIONS:
        flag = "--" + opt.name.replace("_", "-")
        default_text = "" if opt.default in (None, "", False) else f" (default {opt.default})"
        if opt.kind == "flag":
            group.add_argument(flag, dest=f"opt_{opt.name}", action="store_const", const="", default=None,
                               help=opt.help + default_text)
        else:
            group.add_argument(flag, dest=f"opt_{opt.name}", default=None, metavar="VALUE",
                               help=opt.help + default_text)


def mount_settings(args: argparse.Namespace):
    from cosfs.mount import MountSettings

    pairs: list[tuple[str, str | None]] = []
    for text in args.o:
        pairs.extend(options.split_o(text))
    for opt in options.OPTIONS:
        raw = getattr(args, f"opt_{opt.name}", None)
        if raw is not None:
            pairs.append((opt.name, raw or None))
    values = options.parse_options(pairs)
    if args.short_foreground:
        values["foreground"] = True
    if args.short_debug:
        values["dbglevel"] = "debug"

    bucket, _, prefix = args.bucket.partition(":")
    prefix = prefix.strip("/")
    prefix = prefix + "/" if prefix else ""
    if not bucket:
        raise ConfigError("no bucket given (BUCKET-APPID[:/PREFIX])")
    url = str(values["url"]) or (region_endpoint(str(values["region"])) if values["region"] else "")
    if not url:
        raise ConfigError("no endpoint: give -o url=https://cos.REGION.myqcloud.com or -o region=REGION")
    storage_class = str(values["storage_class"]).upper() or None
    sse = str(values["use_sse"])
    cos = CosConfig(
        bucket=bucket,
        endpoint_url=url.rstrip("/"),
        region=str(values["region"]),
        path_style=True if values["use_path_request_style"] else None,
        signature="sigv4" if values["sigv4"] else "cos",
        max_connections=max(8, 2 * int(values["parallel_count"])),
        connect_timeout_s=float(values["connect_timeout"]),
        read_timeout_s=float(values["readwrite_timeout"]),
        retries=int(values["retries"]),
        storage_class=storage_class,
        server_side_encryption="AES256" if sse.lower() in ("1", "aes256", "sse-cos") else None,
    )
    default_perm = values["default_permission"]
    fs = FsConfig(
        prefix=prefix,
        read_only=bool(values["ro"]),
        uid=os.getuid() if values["uid"] is None else int(values["uid"]),
        gid=os.getgid() if values["gid"] is None else int(values["gid"]),
        umask=values["umask"],  # type: ignore[arg-type]
        mp_umask=int(values["mp_umask"]),  # type: ignore[arg-type]
        default_file_mode=0o644 if default_perm is None else int(default_perm),  # type: ignore[arg-type]
        default_dir_mode=0o755 if default_perm is None else int(default_perm),  # type: ignore[arg-type]
        stat_ttl_s=float(values["stat_cache_expire"]),
        negative_ttl_s=float(values["negative_cache_expire"]),
        max_stat_entries=int(values["max_stat_cache_size"]),
        block_size_bytes=int(values["block_size"]),
        cache_size_bytes=int(values["cache_size"]),
        max_readahead_bytes=int(values["max_readahead"]),
        fetch_size_bytes=int(values["multipart_size"]),
        parallel_fetches=int(values["parallel_count"]),
        part_size_bytes=int(values["multipart_size"]),
        multipart_threshold_bytes=2 * int(values["multipart_size"]),
        write_back_delay_s=float(values["write_back_delay"]),
        xattrs=not values["noxattr"],
        listing_heads=values["listing_metadata"] == "head",
        owner_uid=os.getuid(),
        allow_other=bool(values["allow_other"]),
    )
    base = str(values["cache_dir"] or values["use_cache"])
    if not base:
        base = "/var/cache/cosfs" if os.geteuid() == 0 else str(Path.home() / ".cache" / "cosfs")
    cache_dir = str(Path(base) / cache_subdir(bucket, prefix))
    if values["del_cache"]:
        import shutil

        shutil.rmtree(Path(cache_dir) / "blocks", ignore_errors=True)
    credentials = resolve_credentials(
        bucket,
        passwd_file=str(values["passwd_file"]) or None,
        cam_role=str(values["cam_role"]) or None,
        metadata_url=str(values["cam_role_endpoint"]),
    )
    return MountSettings(
        mountpoint=args.mountpoint.resolve(),
        cos=cos,
        fs=fs,
        credentials=credentials,
        cache_dir=Path(cache_dir),
        foreground=bool(values["foreground"]),
        nonempty=bool(values["nonempty"]),
        allow_other=bool(values["allow_other"]),
        allow_root=bool(values["allow_root"]),
        log_level=LOG_LEVELS[str(values["dbglevel"])],
        log_file=str(values["log_file"]),
        kernel_timeout_s=float(values["stat_cache_expire"]),
        metrics_address=str(values["metrics_address"]),
    )


def run_mount(args: argparse.Namespace) -> int:
    from cosfs.mount import mount

    return mount(mount_settings(args))


def run_umount(args: argparse.Namespace) -> int:
    from cosfs.mount import unmount

    return unmount(args.mountpoint)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cosfs", description="Mount a Tencent Cloud COS bucket as a directory.")
    parser.add_argument("--version", action="version", version=f"cosfs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    from cosfs.server import main as server_main

    serve = commands.add_parser("serve", help="run the embedded COS-compatible server on loopback")
    server_main.add_arguments(serve)
    serve.set_defaults(handler=server_main.run)

    mount = commands.add_parser("mount", help="mount a bucket (returns once the mount is live)")
    add_mount_arguments(mount)
    mount.set_defaults(handler=run_mount)

    umount = commands.add_parser("umount", aliases=["unmount"], help="unmount; pending work is finished first")
    umount.add_argument("mountpoint", type=Path)
    umount.set_defaults(handler=run_umount)

    status = commands.add_parser("status", help="show a mount's traffic, cache and pending uploads")
    status.add_argument("mountpoint", type=Path)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=lambda args: _control().status_command(args.mountpoint, args.json))

    sync = commands.add_parser("sync", help="upload every pending change now and wait for it")
    sync.add_argument("mountpoint", type=Path)
    sync.add_argument("--timeout", type=float, default=None, metavar="SECONDS")
    sync.set_defaults(handler=lambda args: _control().sync_command(args.mountpoint, args.timeout))
    return parser


def _control():
    from cosfs import control

    return control


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in SUBCOMMANDS and not argv[0].startswith("-"):
        argv = ["mount", *argv]  # COSFS style: cosfs BUCKET MOUNTPOINT -o ...
    parser = build_parser()
    args = parser.parse_args(argv)
    return _dispatch(args)


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
    """`mount.cosfs BUCKET MOUNTPOINT [-o opts]` as mount(8) calls it. mount's own flags
    (-n, -s, -v, -t TYPE) are dropped."""
    raw = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    skip_next = False
    for arg in raw:
        if skip_next:
            skip_next = False
        elif arg == "-t":
            skip_next = True
        elif arg not in ("-n", "-s", "-v") and not arg.startswith("-t"):
            kept.append(arg)
    return main(["mount", *kept])


