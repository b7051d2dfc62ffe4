"""Command line: `cosfs serve|mount|umount|...` and the `mount.cosfs` helper.

Parses arguments into configuration and hands over; never touches COS, caches or FUSE itself.
"""

from __future__ import annotations

import argparse
import sys

from cosfs import __version__
from cosfs.errors import CosfsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cosfs", description="Mount a Tencent Cloud COS bucket as a directory.")
    parser.add_argument("--version", action="version", version=f"cosfs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    from cosfs.server import main as server_main

    serve = commands.add_parser("serve", help="run the embedded COS-compatible server on loopback")
    server_main.add_arguments(serve)
    serve.set_defaults(handler=server_main.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CosfsError as exc:
        print(f"cosfs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def mount_helper_main(argv: list[str] | None = None) -> int:
    print("mount.cosfs: mounting is not available yet", file=sys.stderr)
    return 1
