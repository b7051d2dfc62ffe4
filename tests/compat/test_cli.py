"""COSFS's and s3fs's command lines: options before the bucket, -f/-d/-s/--debug, the legacy
APPID:BUCKET source, utility mode (-u), --version, and exit status 1 for configuration errors
of COSFS-style invocations (78 from `cosfs mount`, which the systemd unit tells apart)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cosfs import __version__, cli
from cosfs.errors import ConfigError
from tests.fuse.conftest import sdk_client, write_passwd

from .helpers import BASE, parse_argv

OPTS = ",".join(BASE)


def cosfs(*args: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosfs", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("argv", [
    ["-o", OPTS, "b-1250000000", "/mnt/x"],
    [f"-o{OPTS}", "-f", "b-1250000000", "/mnt/x"],
    ["-f", "b-1250000000", "/mnt/x", "-o", OPTS],
    ["--url", "http://h:1", "-o", OPTS, "b-1250000000", "/mnt/x"],
    ["b-1250000000", "/mnt/x", f"-o{OPTS}"],
])
def test_options_before_or_after_the_bucket(argv):
    assert cli._first_positional(argv) == "b-1250000000"
    settings = cli.mount_settings(parse_argv(argv))
    assert (settings.cos.bucket, settings.mountpoint) == ("b-1250000000", Path("/mnt/x"))


def test_short_flags():
    assert cli.mount_settings(parse_argv(["-f", "b-1", "/m", "-o", OPTS])).foreground
    single = cli.mount_settings(parse_argv(["-s", "b-1", "/m", "-o", OPTS]))
    assert any(text.startswith("-s:") for _, text in single.notes)
    info = cli.mount_settings(parse_argv(["-d", "b-1", "/m", "-o", OPTS]))
    assert info.log_level == logging.INFO and "debug" not in info.kernel_options  # COSFS: -d is info
    twice = cli.mount_settings(parse_argv(["-d", "-d", "b-1", "/m", "-o", OPTS]))
    assert twice.log_level == logging.DEBUG and "debug" in twice.kernel_options  # and libfuse's trace
    long = cli.mount_settings(parse_argv(["--debug", "b-1", "/m", "-o", OPTS]))
    assert long.log_level == logging.DEBUG


@pytest.mark.parametrize("source,bucket,prefix", [
    ("examplebucket-1250000000", "examplebucket-1250000000", ""),
    ("examplebucket-1250000000:/logs/2026/", "examplebucket-1250000000", "logs/2026/"),
    ("1250000000:examplebucket", "examplebucket-1250000000", ""),  # COSFS's automount template
    ("1250000000:examplebucket:/dir", "examplebucket-1250000000", "dir/"),
    ("1250000000:examplebucket-1250000000:/dir", "examplebucket-1250000000", "dir/"),
])
def test_source_forms(source, bucket, prefix):
    assert cli.parse_source(source) == (bucket, prefix)


def test_bad_legacy_source():
    with pytest.raises(ConfigError, match="APPID:BUCKET"):
        cli.parse_source("notanappid:bucket")


def test_version_line_is_found_by_version_parsers():
    for argv in (["--version"], ["mount", "--version"]):
        result = cosfs(*argv)
        assert result.returncode == 0
        line = result.stdout.strip()
        assert "\n" not in line and re.search(r"\bV(\d+\.\d+\.\d+)\b", line).group(1) == __version__
        assert line.split()[0] == "cosfs"


def test_configuration_errors_exit_1_cosfs_style_and_78_from_cosfs_mount(tmp_path):
    (tmp_path / "mnt").mkdir()
    bad = [str(tmp_path / "mnt"), "-o", OPTS + ",parallel_count=0"]
    cosfs_style = cosfs("b-1250000000", *bad)
    assert cosfs_style.returncode == 1 and "parallel_count" in cosfs_style.stderr
    helper = subprocess.run([str(Path(sys.executable).parent / "mount.cosfs"), "b-1250000000", *bad],
                            capture_output=True, text=True, timeout=60)
    assert helper.returncode == 1 and "parallel_count" in helper.stderr
    assert cosfs("mount", "b-1250000000", *bad).returncode == 78


def test_refused_keys_on_the_command_line_are_not_echoed(tmp_path):
    result = cosfs("b-1250000000", str(tmp_path), "-o", OPTS + ",secretAccessKey=TopSecretValue")
    assert result.returncode == 1 and "secretAccessKey" in result.stderr
    assert "TopSecretValue" not in result.stderr + result.stdout


def test_mount_helper_fake_mode_checks_and_mounts_nothing(tmp_path):
    helper = str(Path(sys.executable).parent / "mount.cosfs")
    (tmp_path / "mnt").mkdir()
    ok = subprocess.run([helper, "b-1250000000", str(tmp_path / "mnt"), "-f", "-o", OPTS + ",url=http://127.0.0.1:9"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([helper, "b-1250000000", str(tmp_path / "mnt"), "-f", "-o", "frobnicate"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "frobnicate" in bad.stderr


def test_mount_helper_passes_setuid_apart(monkeypatch):
    calls = {}
    monkeypatch.setattr(cli, "become_user", lambda user: calls.setdefault("user", user))
    monkeypatch.setattr(cli, "main", lambda argv, compat: calls.setdefault("argv", argv) and 0)
    cli.mount_helper_main(["b-1", "/mnt/x", "-n", "-o", "rw,setuid=alice,url=http://h:1", "-t", "fuse.cosfs"])
    assert calls["user"] == "alice"
    assert calls["argv"] == ["mount", "b-1", "/mnt/x", "-o", "rw,url=http://h:1"]


def test_become_user_drops_to_the_user(monkeypatch):
    import pwd

    done = []
    monkeypatch.setattr(cli.os, "initgroups", lambda name, gid: done.append(("groups", name, gid)))
    monkeypatch.setattr(cli.os, "setgid", lambda gid: done.append(("gid", gid)))
    monkeypatch.setattr(cli.os, "setuid", lambda uid: done.append(("uid", uid)))
    monkeypatch.setattr(cli.os, "environ", {})
    nobody = pwd.getpwnam("nobody")
    cli.become_user("nobody")
    assert done == [("groups", "nobody", nobody.pw_gid), ("gid", nobody.pw_gid), ("uid", nobody.pw_uid)]
    assert cli.os.environ["HOME"] == nobody.pw_dir
    with pytest.raises(ConfigError, match="no such user"):
        cli.become_user("no-such-user-here")


# --- utility mode ---------------------------------------------------------------------------

def utility_options(server, tmp_path) -> str:
    passwd = write_passwd(tmp_path / "passwd", server)
    return f"url={server.endpoint},passwd_file={passwd}"


def test_utility_mode_lists_and_aborts_after_yes(cos_server, tmp_path):
    sdk = sdk_client(cos_server)
    upload = sdk.create_multipart_upload(Bucket=cos_server.bucket, Key="dir/unfinished.bin")["UploadId"]
    opts = utility_options(cos_server, tmp_path)
    result = cosfs("-u", cos_server.bucket, "-o", opts, stdin="N\n")
    assert result.returncode == 0, result.stderr
    assert "/dir/unfinished.bin" in result.stdout and upload in result.stdout
    assert len(sdk.list_multipart_uploads(Bucket=cos_server.bucket).get("Upload", [])) == 1  # N: kept
    result = cosfs("-u", cos_server.bucket, "-o", opts, stdin="Y\n")
    assert result.returncode == 0 and "aborted /dir/unfinished.bin" in result.stdout
    assert sdk.list_multipart_uploads(Bucket=cos_server.bucket).get("Upload", []) == []


def test_incomplete_mpu_abort_by_age_and_all(cos_server, tmp_path):
    sdk = sdk_client(cos_server)
    sdk.create_multipart_upload(Bucket=cos_server.bucket, Key="fresh.bin")
    opts = utility_options(cos_server, tmp_path)
    result = cosfs("--incomplete-mpu-abort", cos_server.bucket, "-o", opts)  # default: older than 24H
    assert result.returncode == 0 and "aborted" not in result.stdout
    result = cosfs("--incomplete-mpu-abort=all", cos_server.bucket, "-o", opts)
    assert result.returncode == 0 and "aborted /fresh.bin" in result.stdout
    assert sdk.list_multipart_uploads(Bucket=cos_server.bucket).get("Upload", []) == []
    assert cli.parse_age("1Y6M10D12h30m30s") == 365 * 86400 + 180 * 86400 + 10 * 86400 + 12 * 3600 + 1830
    with pytest.raises(ConfigError):
        cli.parse_age("soon")


def test_help_lists_every_option():
    result = cosfs("mount", "--help")
    assert result.returncode == 0, result.stderr
    assert all("--" + name.replace("_", "-") in result.stdout for name in ("use-sse", "ensure-diskfree", "noexec"))


# --- commands whose daemon side lives in cosfs/control.py: their wiring only -----------------

@pytest.mark.parametrize("argv,fields", [
    (["sync", "/mnt/x"], {"timeout": None, "retry_failed": False}),
    (["sync", "/mnt/x", "--retry-failed", "--timeout", "30"], {"timeout": 30.0, "retry_failed": True}),
    (["status", "/mnt/x"], {"json": False, "watch": None}),
    (["status", "/mnt/x", "--watch"], {"watch": 2.0}),
    (["status", "/mnt/x", "--json", "--watch", "0.5"], {"json": True, "watch": 0.5}),
    (["discard", "/mnt/x", "a.bin", "dir/b.bin"], {"paths": [Path("a.bin"), Path("dir/b.bin")]}),
])
def test_sync_status_and_discard_arguments(argv, fields):
    args = cli.build_parser().parse_args(argv)
    assert args.command == argv[0] and args.mountpoint == Path("/mnt/x")
    assert {name: getattr(args, name) for name in fields} == fields


def test_sync_status_and_discard_call_the_control_module(monkeypatch):
    calls = []

    class Control:
        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append((name, args, kwargs)) or 0

    monkeypatch.setattr(cli, "_control", Control)
    assert cli.main(["sync", "/mnt/x", "--retry-failed"]) == 0
    assert cli.main(["status", "/mnt/x", "--watch"]) == 0
    assert cli.main(["discard", "/mnt/x", "a.bin", "b.bin"]) == 0  # a command, not COSFS's BUCKET MOUNTPOINT
    assert calls == [("sync_command", (Path("/mnt/x"), None), {"retry_failed": True}),
                     ("status_command", (Path("/mnt/x"), False), {"watch": 2.0}),
                     ("discard_command", (Path("/mnt/x"), [Path("a.bin"), Path("b.bin")]), {})]
    assert "discard" in cli.SUBCOMMANDS
    with pytest.raises(ConfigError, match="PATH"):
        cli.build_parser().parse_args(["discard", "/mnt/x"])  # at least one path
