"""Errors of the command line through the real CLI (issue 21, section 5): a malformed option
value is one line `cosfs: ...` naming the option and what is wrong, exit 78 from `cosfs mount`
and 1 from the COSFS form and mount.cosfs, never a traceback; an unknown option names the
nearest known one; a bare `cosfs` prints its usage; an ensure_diskfree the cache disk cannot
give refuses the mount. Nothing is mounted: the mount point does not exist, and option parsing
fails before it is looked at."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import BASE

HELPER = str(Path(sys.executable).parent / "mount.cosfs")
BUCKET = "examplebucket-1250000000"

# (option text, the option the error must name, a fragment saying what is wrong)
MALFORMED = [
    ("url=http：//cos.ap-guangzhou.myqcloud.com", "url", "full-width"),  # copied from a web page
    ("url=https：／／cos.ap-guangzhou.myqcloud.com", "url", "full-width"),
    ("url=http://cos.ap-guangzhou.myqcloud．com", "url", "full-width"),
    ("url=http://cos.ap-guangzhou.myqcloud。com", "url", "non-ASCII"),
    ("url=http://cos ap-guangzhou.myqcloud.com", "url", "space"),
    ("url=http://cos.ap-guangzhou.myqcloud.com:99999", "url", "port"),
    ("url=http://cos.ap-guangzhou.myqcloud.com:http", "url", "port"),
    ("url=ftp://cos.ap-guangzhou.myqcloud.com", "url", "scheme"),
    ("url=http://", "url", "no host"),
    ("url=http://[::1", "url", "not a URL"),
    ("url=https://AKIDsecretvalue:key@cos.ap-guangzhou.myqcloud.com", "url", "password"),
    ("host=http://cos.ap-guangzhou.myqcloud.com:0", "host", "port"),
    ("region=ap guangzhou", "region", "region name"),
    ("endpoint=ap-guangzhou/x", "endpoint", "region name"),
    ("proxy=socks9://127.0.0.1:1080", "proxy", "scheme"),
    ("cam_role_endpoint=http://metadata.tencentyun.com:-1/", "cam_role_endpoint", "port"),
    ("metrics_address=9464x", "metrics_address", "HOST:PORT"),
    ("uid=abc", "uid", "whole number"),
    ("uid=-1", "uid", "too small"),
    ("parallel_count=eight", "parallel_count", "whole number"),
    ("parallel_upload=0", "parallel_upload", "too small"),
    ("retries=1.5", "retries", "whole number"),
    ("stat_cache_expire=-5", "stat_cache_expire", "too small"),
    ("connect_timeout=inf", "connect_timeout", "not a number"),
    ("cache_size=-1", "cache_size", "size"),
    ("multipart_size=4", "multipart_size", "at least 5 MiB"),
    ("ensure_diskfree=lots", "ensure_diskfree", "size"),
    ("block_size=96K", "block_size", "power of two"),
    ("block_size=1000", "block_size", "at least 64 KiB"),
    ("umask=8", "umask", "octal"),
    ("mp_umask=-022", "mp_umask", "octal"),
    ("default_permission=77777", "default_permission", "octal"),
    ("dbglevel=loud", "dbglevel", "one of"),
    ("storage_class=cold", "storage_class", "one of"),
    ("public_bucket=yes", "public_bucket", "one of"),
    ("allow_other=maybe", "allow_other", "flag"),
    ("url", "url", "needs a value"),
    ("bucket_size=lots", "bucket_size", "expected"),
    ("secretAccessKey=AKIDsecretvalue", "secretAccessKey", "not supported"),
]


def run(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def cosfs(*args: str) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "cosfs", *args)


def one_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The single `cosfs: ...` line the command printed, holding every fragment."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cosfs: "), result.stderr
    assert all(fragment in lines[0] for fragment in fragments), (fragments, lines[0])
    return lines[0]


@pytest.mark.parametrize("text,option,wrong", MALFORMED)
def test_a_malformed_value_is_one_line_naming_the_option(tmp_path, text, option, wrong):
    missing = str(tmp_path / "no-such-mount-point")
    result = cosfs("mount", BUCKET, missing, "-o", ",".join([*BASE, text]))
    assert result.returncode == 78
    line = one_line(result, option, wrong)
    assert "AKIDsecretvalue" not in line and "mount point" not in line


@pytest.mark.parametrize("text,option,wrong", [m for m in MALFORMED if m[1] in ("url", "uid", "umask")][:5])
def test_the_cosfs_form_and_the_mount_helper_exit_1(tmp_path, text, option, wrong):
    missing = str(tmp_path / "no-such-mount-point")
    options = ",".join([*BASE, text])
    for result in (cosfs(BUCKET, missing, f"-o{options}"), run(HELPER, BUCKET, missing, "-o", options)):
        assert result.returncode == 1
        one_line(result, option, wrong)


@pytest.mark.parametrize("argv,fragment", [
    (["-o", "stat_cache_expir=3"], "unknown option 'stat_cache_expir'; did you mean stat_cache_expire?"),
    (["-o", "allow-othr"], "did you mean allow_other?"),
    (["--stat-cache-expirx", "3"], "did you mean --stat-cache-expire?"),
    (["-o", "frobnicate"], "unknown option 'frobnicate'"),
])
def test_an_unknown_option_names_the_nearest_one(tmp_path, argv, fragment):
    result = cosfs("mount", BUCKET, str(tmp_path / "mnt"), "-o", ",".join(BASE), *argv)
    assert result.returncode == 78
    one_line(result, fragment)


def test_usage_errors_are_one_line():
    mount = cosfs("mount", BUCKET, "/mnt/x", "--uid")  # a long option without its value
    assert mount.returncode == 78
    one_line(mount, "--uid", "expected one argument")
    status = cosfs("status")
    assert status.returncode == 2
    one_line(status, "mountpoint")


def test_bare_cosfs_prints_its_usage():
    result = cosfs()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "usage: cosfs" in result.stderr and "mount" in result.stderr and "BUCKET MOUNTPOINT" in result.stderr


def test_ensure_diskfree_beyond_the_free_space_refuses_the_mount(tmp_path):
    cache = tmp_path / "cache"
    options = ",".join([*BASE, f"cache_dir={cache}", "ensure_diskfree=1000T"])  # 1000 TiB: no disk has it
    missing = str(tmp_path / "no-such-mount-point")
    result = cosfs("mount", BUCKET, missing, "-o", options)
    assert result.returncode == 78
    line = one_line(result, "ensure_diskfree=1000 TiB", str(cache / BUCKET))
    assert re.search(r"the [\d.]+ (bytes|KiB|MiB|GiB|TiB) free", line)  # the disk's free space, shown
    assert cosfs(BUCKET, missing, "-o", options).returncode == 1  # COSFS's form: 1, as COSFS


def test_ensure_diskfree_counts_the_block_cache_as_free(tmp_path):
    """A remount whose own cached blocks fill the disk is not refused: eviction gives them back."""
    from cosfs import cli

    cache = tmp_path / "cache" / BUCKET
    (cache / "blocks" / "ab").mkdir(parents=True)
    (cache / "blocks" / "ab" / "block").write_bytes(b"x" * (1 << 20))
    _, free = cli.disk_space(cache)
    cli.check_diskfree(free + (512 << 10), cache)  # within free + the 1 MiB block
    with pytest.raises(cli.ConfigError, match="ensure_diskfree"):
        cli.check_diskfree(free + (64 << 20), cache)
