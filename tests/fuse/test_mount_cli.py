"""Mounting as COSFS and s3fs users do: background mode, fstab, umount, signals, and every
preflight failure with one clear line and a non-zero exit."""

from __future__ import annotations

import errno
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


def test_umount_of_a_mount_whose_daemon_was_killed_clears_it(cos_server, mountpoint, tmp_path):
    """A killed daemon leaves a dead mount ("Transport endpoint is not connected"): `cosfs
    umount` clears it with a line that says so, not a traceback."""
    result = cosfs("mount", cos_server.bucket, str(mountpoint), "-o", ",".join(base_options(cos_server, tmp_path)))
    assert result.returncode == 0, result.stderr
    pid = daemon_pid(tmp_path / "daemon.log")
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    with pytest.raises(OSError) as dead:
        os.stat(mountpoint)
    assert dead.value.errno == errno.ENOTCONN
    result = cosfs("umount", str(mountpoint))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "had stopped (killed or crashed)" in result.stderr
    assert not is_mounted(mountpoint)
    assert mountpoint.is_dir()


def test_cosfs_style_and_mount_helper_and_fstab(cos_server, mountpoint, tmp_path):
    sdk_client(cos_server).put_object(Bucket=cos_server.bucket, Key="sub/inside.txt", Body=b"prefix mount")
    opts = ",".join(base_options(cos_server, tmp_path))
    # COSFS style: cosfs BUCKET:/PREFIX MOUNTPOINT -o...
    result = cosfs(f"{cos_server.bucket}:/sub", str(mountpoint), f"-o{opts}")
    assert result.returncode == 0, result.stderr
    assert os.listdir(mountpoint) == ["inside.txt"]
    assert subprocess.run([FUSERMOUNT, "-u", str(mountpoint)]).returncode == 0
    # An fstab line, mounted by mount(8), which runs /sbin/mount.fuse.cosfs (scripts/install.sh
    # links it to the cosfs installed as a tool, which is what this runs).
    helper = Path("/sbin/mount.fuse.cosfs")
    assert helper.exists(), "mount.fuse.cosfs is not installed: run scripts/install.sh as root"
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


# --- COSFS and s3fs command lines, mounted -------------------------------------------------

def mountinfo_line(path: Path, pid: str = "self") -> str:
    target = str(Path(path).resolve())
    lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    return next((line for line in lines if line.split()[4] == target), "")


def test_options_before_the_bucket_and_foreground_flag_first(cos_server, mountpoint, tmp_path):
    sdk_client(cos_server).put_object(Bucket=cos_server.bucket, Key="a.txt", Body=b"cosfs style")
    opts = ",".join(base_options(cos_server, tmp_path))
    result = cosfs("-o", opts, cos_server.bucket, str(mountpoint))  # cosfs -o OPTS BUCKET MNT
    assert result.returncode == 0, result.stderr
    assert (mountpoint / "a.txt").read_bytes() == b"cosfs style"
    assert cosfs("umount", str(mountpoint)).returncode == 0
    assert wait_gone(daemon_pid(tmp_path / "daemon.log"))
    process = subprocess.Popen([sys.executable, "-m", "cosfs", "-f", cos_server.bucket, str(mountpoint), "-o", opts],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from tests.fuse.conftest import wait_mounted

        wait_mounted(mountpoint, process)
        assert process.poll() is None  # -f: the command is the daemon
        assert (mountpoint / "a.txt").read_bytes() == b"cosfs style"
    finally:
        unmount(mountpoint, process)


def test_legacy_appid_bucket_folder_source(cos_server, mountpoint, tmp_path):
    name, appid = cos_server.bucket.rsplit("-", 1)
    sdk_client(cos_server).put_object(Bucket=cos_server.bucket, Key="dir/in.txt", Body=b"legacy")
    result = cosfs(f"{appid}:{name}:/dir", str(mountpoint), "-o", ",".join(base_options(cos_server, tmp_path)))
    assert result.returncode == 0, result.stderr
    assert os.listdir(mountpoint) == ["in.txt"]
    assert cosfs("umount", str(mountpoint)).returncode == 0


def test_kernel_options_reach_the_mount(cos_server, mountpoint, tmp_path):
    """noexec, nosuid, nodev, sync, dirsync go to the kernel (never dropped); fsname and
    subtype replace cosfs's own."""
    opts = base_options(cos_server, tmp_path) + ["noexec", "nosuid", "nodev", "sync", "dirsync", "fsname=mycos",
                                                  "subtype=s3fs"]
    result = cosfs("mount", cos_server.bucket, str(mountpoint), "-o", ",".join(opts))
    assert result.returncode == 0, result.stderr
    line = mountinfo_line(mountpoint)
    flags, (fstype, source, super_options) = line.split(" - ")[0].split()[5].split(","), line.split(" - ")[1].split()
    assert {"noexec", "nosuid", "nodev"} <= set(flags)
    assert {"sync", "dirsync"} <= set(super_options.split(","))
    assert (fstype, source) == ("fuse.s3fs", "mycos")
    script = mountpoint / "run.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    with pytest.raises(PermissionError):
        subprocess.run([str(script)])
    assert cosfs("umount", str(mountpoint)).returncode == 0


def test_fstab_fake_mount_mounts_nothing(cos_server, mountpoint, tmp_path):
    fstab = tmp_path / "fstab"
    options = ",".join(base_options(cos_server, tmp_path))
    fstab.write_text(f"{cos_server.bucket} {mountpoint} fuse.cosfs _netdev,{options} 0 0\n")
    result = subprocess.run(["mount", "-f", "-T", str(fstab), str(mountpoint)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    helper = subprocess.run([os.path.join(VENV_BIN, "mount.cosfs"), cos_server.bucket, str(mountpoint), "-f", "-o",
                             ",".join(base_options(cos_server, tmp_path))], capture_output=True, text=True, timeout=60)
    assert helper.returncode == 0, helper.stderr
    time.sleep(0.5)
    assert not is_mounted(mountpoint) and not (tmp_path / "daemon.log").exists()


def test_mount_helper_mounts_in_another_namespace(cos_server, tmp_path):
    """mount -N: the helper joins the namespace (a PID's), the mount exists only there."""
    require_fuse()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "300"])
    pid = str(holder.pid)
    try:
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            assert time.monotonic() < deadline, "unshare did not make a namespace"
            time.sleep(0.05)
        result = subprocess.run([os.path.join(VENV_BIN, "mount.cosfs"), cos_server.bucket, str(mnt), "-N", pid,
                                 "-o", ",".join(base_options(cos_server, tmp_path))],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert mountinfo_line(mnt, pid) and not is_mounted(mnt)
    finally:
        subprocess.run(["nsenter", "-t", pid, "-m", FUSERMOUNT, "-u", str(mnt)], capture_output=True)
        if (tmp_path / "daemon.log").exists():
            assert wait_gone(daemon_pid(tmp_path / "daemon.log"))
        holder.kill()
        holder.wait()


def test_setuid_drops_to_the_user_for_real():
    """setuid=USER (as mount.fuse has it): uid, gid, groups and HOME become USER's before the
    mount starts. (Here the daemon itself cannot run as another user: this Python lives under
    /root, so the drop is checked in a process that needs no further imports.)"""
    import pwd

    nobody = pwd.getpwnam("nobody")
    code = ("import os; from cosfs.cli import become_user; become_user('nobody'); "
            "print(os.getuid(), os.getgid(), os.getgroups(), os.environ['HOME'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    uid, gid, groups, home = result.stdout.split(" ", 3)
    assert (int(uid), int(gid), home.strip()) == (nobody.pw_uid, nobody.pw_gid, nobody.pw_dir)
    assert "0" not in groups.strip("[]\n").split(", ")  # root's groups are gone too


def test_encryption_and_storage_class_reach_cos(cos_server, mount_factory):
    for name, option, expected in (("sse", "use_sse", "AES256"), ("kms", "use_sse=kmsid:kms-key-1", "cos/kms")):
        m = mount_factory(cos_server, option, "storage_class=standard_ia", name=name)
        (m.path / f"{name}.txt").write_bytes(b"secret")
        head = sdk_client(cos_server).head_object(Bucket=cos_server.bucket, Key=f"{name}.txt")
        assert head["x-cos-server-side-encryption"] == expected
        assert head["x-cos-storage-class"] == "STANDARD_IA"


def test_noted_options_log_what_cosfs_does_instead(cos_server, mount_factory, expect_log):
    expect_log(r"^WARNING cosfs\.options: nocopyapi: ", count=1, why="nocopyapi asks for what cosfs never does")
    m = mount_factory(cos_server, "nocopyapi", "nodnscache", "curldbg")
    (m.path / "f.txt").write_bytes(b"x")
    log = m.log()
    assert "INFO cosfs.options: nodnscache: cosfs keeps no DNS cache of its own" in log
    assert re.search(r"INFO cosfs\.http: PUT http://\S+/f\.txt -> 200 OK", log)  # curldbg
