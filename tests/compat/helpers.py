"""Shared by the compat tests: MountSettings from a command line without mounting, and a
recording fake COS for the headers the client sends."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import httpx

from cosfs import cli
from tests.cos.fakecos import BUCKET, FakeCos

_SCRATCH = Path(tempfile.mkdtemp(prefix="cosfs-compat-"))
atexit.register(shutil.rmtree, _SCRATCH, True)  # (made at import: no fixture owns it)
PASSWD = _SCRATCH / "passwd"
PASSWD.write_text("AKIDcompat:compatkey\n")
PASSWD.chmod(0o600)
(_SCRATCH / "cache").mkdir()
BASE = ["url=http://127.0.0.1:9", f"passwd_file={PASSWD}", f"cache_dir={_SCRATCH / 'cache'}"]


def parse_argv(argv: list[str]):
    """The argparse namespace `cosfs ARGV` builds (COSFS-style forms get "mount" first)."""
    return cli.build_parser().parse_args(argv if argv[0] in cli.SUBCOMMANDS else ["mount", *argv])


def settings_for(*opts: str, source: str = "examplebucket-1250000000", mountpoint: str = "/mnt/compat",
                 base: bool = True):
    """MountSettings for `cosfs mount SOURCE MOUNTPOINT -o BASE,OPTS` (nothing is mounted)."""
    options = ",".join([*(BASE if base else []), *opts])
    argv = ["mount", source, mountpoint] + (["-o", options] if options else [])
    return cli.mount_settings(parse_argv(argv))


class RecordingCos(FakeCos):
    """FakeCos that also initiates multipart uploads, keeping every request it saw."""

    def serve(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and "uploads" in dict(self.params_of(request)):
            return httpx.Response(200, content=f"<InitiateMultipartUploadResult><Bucket>{BUCKET}</Bucket>"
                                               f"<Key>k</Key><UploadId>up-1</UploadId>"
                                               f"</InitiateMultipartUploadResult>".encode())
        return super().serve(request)

    def check_signature(self, request: httpx.Request) -> httpx.Response | None:
        if "authorization" not in request.headers:
            return None  # public_bucket: unsigned requests are the point
        return super().check_signature(request)
