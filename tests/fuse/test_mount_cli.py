"""Mounting as COSFS and s3fs users do: background mode, fstab, umount, signals, and every
preflight failure with one clear line and a non-zero exit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fuse.conftest import FUSERMOUNT, is_mounted, require_fuse, sdk_client, unmount, write_passwd

VENV_BIN = str(Path(sys.executable).parent)


def cosfs(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosfs", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def daemon_pid(log_file: Path) -> int:
    match = re.search(r"cosfs\[(\d+)\]", log_file.read_text())
    assert match, "the daemon wrote no log line"
    return int(match.group(1))


def wait_gone(pid: int, timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def mountpoint(tmp_path):
    require_fuse()
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    unmount(path, None)


def base_options(server, tmp_path) -> list[str]:
    passwd = write_passwd(tmp_path / "passwd", server)
    return [f"url={server.endpoint}", f"passwd_file={passwd}", f"cache_dir={tmp_path / 'cache'}",
            f"log_file={tmp_path / 'daemon.log'}", "dbglevel=info"]


def test_background_mount_returns_once_live_and_umount_stops_daemon(cos_server, mountpoint, tmp_path):
    sdk_client(cos_server).put_object(Bucket=cos_server.bucket, Key="hello.txt", Body=b"hi")
    result = cosfs("mount", cos_server.bucket, str(mountpoint), "-o", ",".join(base_options(cos_server, tmp_path)))
    assert result.returncode == 0, result.stderr
    assert is_mounted(mountpoint)  # live the moment the command returned
    assert (mountpoint / "hello.txt").read_bytes() == b"hi"
    pid = daemon_pid(tmp_path / "daemon.log")
    result = cosfs("umount", str(mountpoint))
    assert result.returncode == 0, result.stderr
    assert not is_mounted(mountpoint)
    assert wait_gone(pid), "the daemon did not exit after umount"


def test_sigterm_unmounts_cleanly(cos_server, mountpoint, tmp_path):
    result = cosfs("mount", cos_server.bucket, str(mountpoint), "-o", ",".join(base_options(cos_server, tmp_path)))
    assert result.returncode == 0, result.stderr
    pid = daemon_pid(tmp_path / "daemon.log")
    os.kill(pid, signal.SIGTERM)
    assert wait_gone(pid)
    assert not is_mounted(mountpoint)


def test_cosfs_style_and_mount_helper_and_fstab(cos_server, mountpoint, tmp_path):
    sdk_client(cos_server).put_object(Bucket=cos_server.bucket, Key="sub/inside.txt", Body=b"prefix mount")
    opts = ",".join(base_options(cos_server, tmp_path))
    # COSFS style: cosfs BUCKET:/PREFIX MOUNTPOINT -o...
    result = cosfs(f"{cos_server.bucket}:/sub", str(mountpoint), f"-o{opts}")
    assert result.returncode == 0, result.stderr
    assert os.listdir(mountpoint) == ["inside.txt"]
    assert subprocess.run([FUSERMOUNT, "-u", str(mountpoint)]).returncode == 0
    # An fstab line, mounted by mount(8), which runs /sbin/mount.fuse.cosfs (scripts/setup.sh links it).
    helper = Path("/usr/sbin/mount.fuse.cosfs")
    assert helper.exists(), "mount.fuse.cosfs is not installed: run scripts/setup.sh as root"
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{cos_server.bucket} {mountpoint} fuse.cosfs _netdev,{opts} 0 0\n")
    result = subprocess.run(["mount", "-T", str(fstab), str(mountpoint)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(mountpoint)) == ["sub"]
    assert subprocess.run([FUSERMOUNT, "-u", str(mountpoint)]).returncode == 0
    # mount.cosfs as mount(8) would call it
    result = subprocess.run([os.path.join(VENV_BIN, "mount.cosfs"), cos_server.bucket, str(mountpoint), "-o", opts],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert is_mounted(mountpoint)


def test_sigv4_and_path_style_mount(cos_server, mountpoint, tmp_path):
    """The way any S3-compatible server is mounted: AWS SigV4, path-style URLs."""
    sdk_client(cos_server).put_object(Bucket=cos_server.bucket, Key="s3.txt", Body=b"sigv4")
    opts = ",".join(base_options(cos_server, tmp_path) + ["sigv4", "use_path_request_style"])
    result = cosfs("mount", cos_server.bucket, str(mountpoint), "-o", opts)
    assert result.returncode == 0, result.stderr
    assert (mountpoint / "s3.txt").read_bytes() == b"sigv4"
    assert cosfs("umount", str(mountpoint)).returncode == 0


@pytest.mark.parametrize("case", ["wrong_key", "no_bucket", "unreachable", "no_mountpoint", "not_empty",
                                  "unknown_option", "no_endpoint"])
def test_preflight_failures(case, cos_server, mountpoint, tmp_path):
    opts = base_options(cos_server, tmp_path)
    bucket = cos_server.bucket
    target = mountpoint
    expected = ""
    if case == "wrong_key":
        (tmp_path / "passwd").write_text(f"{cos_server.secret_id}:wrongwrongwrong\n")
        expected = "refused the credentials"
    elif case == "no_bucket":
        bucket = "missing-1250000000"
        (tmp_path / "passwd").write_text(f"{cos_server.secret_id}:{cos_server.secret_key}\n")
        expected = "does not exist"
    elif case == "unreachable":
        opts[0] = "url=http://127.0.0.1:9"
        opts.append("retries=1")
        expected = "cannot reach"
    elif case == "no_mountpoint":
        target = tmp_path / "absent"
        expected = "does not exist"
    elif case == "not_empty":
        (mountpoint / "file").write_text("x")
        expected = "not empty"
    elif case == "unknown_option":
        opts.append("frobnicate=1")
        expected = "unknown option 'frobnicate'"
    elif case == "no_endpoint":
        opts = opts[1:]
        expected = "no endpoint"
    result = cosfs("mount", bucket, str(target), "-o", ",".join(opts))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert cos_server.secret_key not in result.stderr
    assert not is_mounted(target)
