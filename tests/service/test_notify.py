"""cosfs@.service for real, minus systemd: the unit's ExecStart command line, run under the
unit's capability bounding set and no_new_privs, against `cosfs serve`, with NOTIFY_SOCKET
pointing at a socket of ours. READY=1 must arrive from the main PID once the mount is live,
STOPPING=1 on SIGTERM, then the mount must be gone and the exit status 0. The unit's
ExecStopPost must detach a dead mount (daemon killed) and leave a live one alone.

Mounts are only ever looked at through /proc/self/mountinfo (never stat'ed by this process),
and every mount and process is cleaned up by path and PID in finally blocks."""

from __future__ import annotations

import array
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess
from tests.fuse.conftest import FUSERMOUNT, is_mounted, require_fuse, unmount, write_passwd
from tests.service.units import command, escape_path, load

INSTANCE_TIMEOUT_S = 30.0


def unit_sandbox() -> list[str]:
    """setpriv arguments reproducing the unit's CapabilityBoundingSet= and NoNewPrivileges=."""
    unit = load("cosfs@.service")
    setpriv = "/usr/bin/setpriv"
    if not os.access(setpriv, os.X_OK):
        pytest.fail("setpriv (util-linux) is missing")
    caps = [c.lower().removeprefix("cap_") for c in unit.get("Service", "CapabilityBoundingSet").split()]
    argv = [setpriv, "--bounding-set", ",".join(["-all", *(f"+{c}" for c in caps)])]
    if unit.get("Service", "NoNewPrivileges") == "yes":
        argv.append("--no-new-privs")
    return argv


def unit_exec(key: str, mountpoint: Path, environment: dict[str, str]) -> list[str]:
    """The unit's command for `key`, as systemd would run it for the instance of `mountpoint`,
    with /usr/local/bin/cosfs replaced by this checkout's cosfs."""
    (line,) = load("cosfs@.service").all("Service", key)
    _, argv = command(line, instance=_escape(mountpoint), environment=environment)
    if argv[0] == "/usr/local/bin/cosfs":
        argv = [sys.executable, "-m", "cosfs", *argv[1:]]
    return argv


def _escape(path: Path) -> str:
    return escape_path(str(path))


class NotifySocket:
    """What systemd listens on: a datagram socket that also learns each sender's PID."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def receive(self, timeout_s: float, process: subprocess.Popen, log: Path) -> tuple[int, set[str]]:
        """(sender PID, the message's KEY=VALUE lines); fails if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.settimeout(0.2)
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
            except TimeoutError:
                if process.poll() is not None:
                    raise AssertionError(f"the daemon exited with {process.returncode} before notifying:\n"
                                         + log.read_text()) from None
                continue
            pid = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = array.array("i", payload[: struct.calcsize("3i")])[0]
            return pid, set(data.decode().split("\n")) - {""}
        raise AssertionError(f"no notification within {timeout_s} s:\n" + log.read_text())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # A short directory: AF_UNIX paths are limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="cosfs-notify-") as directory:
        sock = NotifySocket(Path(directory))
        try:
            yield sock
        finally:
            sock.close()


def mount_fields(path: Path) -> tuple[str, str] | None:
    """(fstype, source) of the mount at `path`, from /proc/self/mountinfo."""
    target = str(path.resolve())
    found = None
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 4 and fields[4] == target:
                after = fields[fields.index("-") + 1:]
                found = (_unoctal(after[0]), _unoctal(after[1]))
    return found


def _unoctal(field: str) -> str:
    """mountinfo writes space, tab, newline, backslash and '#' as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def start_unit_daemon(server: ServerProcess, tmp_path: Path, name: str,
                      notify: NotifySocket | None) -> tuple[Path, subprocess.Popen, Path]:
    require_fuse()
    mountpoint = tmp_path / name
    mountpoint.mkdir()
    passwd = write_passwd(tmp_path / f"{name}.passwd", server)
    conf = {"COSFS_BUCKET": server.bucket,
            "COSFS_OPTIONS": f"url={server.endpoint},passwd_file={passwd},cache_dir={tmp_path / (name + '.cache')}"}
    env = {key: value for key, value in os.environ.items() if key != "NOTIFY_SOCKET"}
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify.path)
    stderr_path = tmp_path / f"{name}.stderr"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen([*unit_sandbox(), *unit_exec("ExecStart", mountpoint, conf)], env=env,
                                   stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    return mountpoint, process, stderr_path


def test_ready_when_mounted_stopping_on_sigterm(cos_server: ServerProcess, tmp_path: Path,
                                                notify_socket: NotifySocket) -> None:
    mountpoint, process, stderr = start_unit_daemon(cos_server, tmp_path, "mnt", notify_socket)
    try:
        pid, ready = notify_socket.receive(INSTANCE_TIMEOUT_S, process, stderr)
        live_at_ready = mount_fields(mountpoint)
        assert "READY=1" in ready, ready
        # NotifyAccess=main: systemd takes it only from the main PID (no fork in -f mode,
        # setpriv execs in place).
        assert pid == process.pid
        assert live_at_ready == ("fuse.cosfs", f"cosfs#{cos_server.bucket}"), live_at_ready
        assert process.poll() is None

        process.send_signal(signal.SIGTERM)
        pid, stopping = notify_socket.receive(INSTANCE_TIMEOUT_S, process, stderr)
        assert "STOPPING=1" in stopping and pid == process.pid, (pid, stopping)
        assert process.wait(timeout=INSTANCE_TIMEOUT_S) == 0, stderr.read_text()
        assert not is_mounted(mountpoint)
    finally:
        unmount(mountpoint, process)
    assert not is_mounted(mountpoint)


def test_stop_post_detaches_a_dead_mount_and_spares_a_live_one(cos_server: ServerProcess, tmp_path: Path) -> None:
    dead, killed, _ = start_unit_daemon(cos_server, tmp_path, "dead", None)
    live, running, live_stderr = start_unit_daemon(cos_server, tmp_path, "live", None)
    try:
        for path, process in ((dead, killed), (live, running)):
            _wait_mounted(path, process)
        killed.kill()  # what TimeoutStopSec's SIGKILL, the OOM killer or a crash do
        killed.wait(timeout=10)
        assert is_mounted(dead), "a killed FUSE daemon leaves its mount behind"

        for path in (dead, live):
            result = subprocess.run([*unit_sandbox(), *unit_exec("ExecStopPost", path, {})],
                                    capture_output=True, text=True, timeout=30)
            assert result.returncode in (0, 1), result.stderr  # '-' prefix: never fails the unit
        assert not is_mounted(dead), "ExecStopPost left the dead mount"
        assert dead.is_dir() and not any(dead.iterdir())  # a plain empty directory again
        assert is_mounted(live) and running.poll() is None, "ExecStopPost detached a live mount"
        # ExecStartPre is the same guard: on the now-plain directory it does nothing.
        result = subprocess.run([*unit_sandbox(), *unit_exec("ExecStartPre", dead, {})],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    finally:
        unmount(live, running)
        unmount(dead, killed)
        for path in (dead, live):
            if is_mounted(path):
                subprocess.run([FUSERMOUNT, "-uz", str(path)], capture_output=True)
    assert running.returncode == 0, live_stderr.read_text()


def _wait_mounted(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + INSTANCE_TIMEOUT_S
    while not is_mounted(path):
        assert process.poll() is None, f"cosfs exited with {process.returncode} before mounting"
        assert time.monotonic() < deadline, f"{path} not mounted within {INSTANCE_TIMEOUT_S} s"
        time.sleep(0.05)
