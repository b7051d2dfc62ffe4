"""The corpus of real COSFS and s3fs lines (corpus.py): every line parses into a mount
configuration, and the lines marked `mount` mount a local `cosfs serve` bucket with their own
options (endpoint, keys, cache directory and mount point swapped for the test's)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cosfs import cli, options
from tests.fuse.conftest import expect_log, require_fuse, unmount, wait_mounted  # noqa: F401 (fixture)

from .corpus import CORPUS, Line, argv_of
from .helpers import PASSWD, parse_argv

TOKEN = "corpus-session-token"
# Options whose values name this machine's paths or the cloud endpoint: the test's own go there.
LOCAL = ("url", "host", "passwd_file", "use_cache", "cache_dir", "log_file", "logfile")


def localize(argv: list[str], values: dict[str, str]) -> list[str]:
    """`argv` with the LOCAL options set to `values` (added where the line has none)."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "-o" or (arg.startswith("-o") and len(arg) > 2):
            text = next(args) if arg == "-o" else arg[2:]
            pairs = [(n, v) for n, v in options.split_o(text) if n not in LOCAL]
            if pairs:
                out += ["-o", ",".join(n if v is None else f"{n}={v}" for n, v in pairs)]
        else:
            out.append(arg)
    return out + ["-o", ",".join(f"{n}={v}" for n, v in values.items())]


def sts_file(path: Path, secret_id: str, secret_key: str) -> Path:
    path.write_text(f"COSAccessKeyId={secret_id}\nCOSSecretKey={secret_key}\nCOSAccessToken={TOKEN}\n"
                    "COSAccessTokenExpire=2099-01-01T00:00:00\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("line", CORPUS, ids=[f"{n}-{line.source}" for n, line in enumerate(CORPUS)])
def test_every_line_parses(line: Line, tmp_path):
    argv = argv_of(line)
    args = parse_argv(argv)
    if args.mpu_list:
        assert args.bucket == "mybucket"  # utility mode: nothing to mount
        return
    passwd = sts_file(tmp_path / "sts", "AKIDsts", "stskey") if line.sts else PASSWD
    settings = cli.mount_settings(parse_argv(localize(argv, {"url": "http://127.0.0.1:9", "passwd_file": passwd,
                                                             "cache_dir": tmp_path / "cache"})))
    words = [argv[i] for i in positionals(argv)]
    if len(words) == 1:  # s3fs: `s3fs MOUNTPOINT -o bucket=NAME`
        words.insert(0, "mybucket")
    assert (settings.cos.bucket, settings.fs.prefix) == cli.parse_source(words[0])
    assert settings.mountpoint == Path(words[1]).resolve()
    assert settings.foreground == ("-f" in argv)


def positionals(argv: list[str]) -> list[int]:
    return [i for i, arg in enumerate(argv) if not arg.startswith("-") and (i == 0 or argv[i - 1] != "-o")]


def sdk_client(server, token: str | None):
    """The official SDK pointed at the local server, with the session token it demands."""
    from urllib.parse import urlparse

    from qcloud_cos import CosConfig, CosS3Client

    url = urlparse(server.endpoint)
    config = CosConfig(Region="ap-guangzhou", SecretId=server.secret_id, SecretKey=server.secret_key, Token=token,
                       Scheme="http", IP=url.hostname, Port=url.port)
    return CosS3Client(config, retry=1)


def mounted_argv(line: Line, server, tmp_path: Path) -> tuple[list[str], Path]:
    """The line's arguments aimed at `server`: its bucket (keeping the line's folder), a
    mount point, keys and cache directory of the test's."""
    argv = argv_of(line)
    source, mountpoint = positionals(argv)[:2]
    folder = argv[source].partition(":/")[2]
    argv[source] = f"{server.bucket}:/{folder}" if folder else server.bucket
    argv[mountpoint] = str(tmp_path / "mnt")
    passwd = tmp_path / "passwd"
    if line.sts:
        sts_file(passwd, server.secret_id, server.secret_key)
    else:
        passwd.write_text(f"{server.secret_id}:{server.secret_key}\n")
        passwd.chmod(0o600)
    values = {"url": server.endpoint, "passwd_file": passwd, "cache_dir": tmp_path / "cache",
              "log_file": tmp_path / "daemon.log"}
    return localize([arg for arg in argv if arg != "-f"], values), Path(folder)


@pytest.mark.parametrize("line", [line for line in CORPUS if line.mount],
                         ids=[line.source for line in CORPUS if line.mount])
def test_lines_mount_a_local_bucket(line: Line, tmp_path, cos_server, server_factory, expect_log):  # noqa: F811 (fixture)
    require_fuse()
    server = server_factory("--security-token", TOKEN) if line.sts else cos_server
    argv, folder = mounted_argv(line, server, tmp_path)
    key = (str(folder) + "/" if str(folder) != "." else "") + "corpus.txt"
    sdk = sdk_client(server, token=TOKEN if line.sts else None)
    sdk.put_object(Bucket=server.bucket, Key=key, Body=b"from the corpus")
    for level, text in cli.mount_settings(parse_argv(argv)).notes:
        if level >= 30:
            expect_log(re.escape(text), why="a warning the line's options owe")
    (tmp_path / "mnt").mkdir()
    expect_log.watch(tmp_path / "daemon.log", tmp_path / "stderr")
    with open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "cosfs", "-f", *argv], stdout=subprocess.DEVNULL,
                                   stderr=stderr)
    try:
        wait_mounted(tmp_path / "mnt", process, stderr_file=tmp_path / "stderr")
        assert (tmp_path / "mnt" / "corpus.txt").read_bytes() == b"from the corpus"
    finally:
        unmount(tmp_path / "mnt", process)
