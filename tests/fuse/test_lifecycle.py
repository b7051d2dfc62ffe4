"""How a mount starts and ends when things go wrong (issue 21, sections 1 and 2): nothing
hangs, nothing lingers, signals never leave a dead mount.

- a silent endpoint (accepts connections, never answers) fails the mount within the
  preflight's bound, with one line naming it; SIGTERM during the preflight ends the daemon;
- a 404 from something that is not COS is not called a missing bucket;
- `umount; mount` on one cache directory always works: the new mount waits (bounded, saying
  so) for a daemon whose mount is gone, and fails at once for a live one;
- a drain is bounded: an unmounted daemon whose uploads cannot progress exits after
  drain_timeout keeping the journal, and a SIGTERM ends that drain at once;
- repeated SIGTERM never aborts the drain of a live mount halfway: it unmounts cleanly.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.fuse.conftest import is_mounted, require_fuse, sdk_client

PREFLIGHT_BOUND_S = 15.0


def _mount_command(endpoint: str, bucket: str, mountpoint: Path, tmp_path: Path, *options: str,
                   foreground: bool = False) -> list[str]:
    passwd = tmp_path / "passwd"
    passwd.write_text(f"{bucket}:AKIDexample:secretexample\n")
    passwd.chmod(0o600)
    opts = [f"url={endpoint}", f"passwd_file={passwd}", f"cache_dir={tmp_path / 'cache'}",
            f"log_file={tmp_path / 'cosfs.log'}", *options]
    return [sys.executable, "-m", "cosfs", "mount", bucket, str(mountpoint), *(["-f"] if foreground else []),
            "-o", ",".join(opts)]


@contextlib.contextmanager
def silent_endpoint():
    """A TCP port that completes connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_silent_endpoint_fails_the_mount_within_the_bound_with_one_line(tmp_path):
    require_fuse()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with silent_endpoint() as (_, endpoint):
        started = time.monotonic()
        result = subprocess.run(_mount_command(endpoint, "b-1250000000", mountpoint, tmp_path),
                                capture_output=True, text=True, timeout=120)
        took = time.monotonic() - started
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and endpoint in lines[0] and "no answer" in lines[0], result.stderr
    assert took < PREFLIGHT_BOUND_S + 5, took
    assert not is_mounted(mountpoint)


def test_sigterm_during_the_preflight_ends_the_daemon(tmp_path):
    require_fuse()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with silent_endpoint() as (listener, endpoint):
        process = subprocess.Popen(_mount_command(endpoint, "b-1250000000", mountpoint, tmp_path, foreground=True),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            readable, _, _ = select.select([listener], [], [], 30)  # the preflight has connected
            assert readable, "the daemon never connected"
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=5)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 1
    assert "stopped by a signal before the mount was live" in stderr
    assert "Traceback" not in stderr


class _NotCos(http.server.BaseHTTPRequestHandler):
    def _not_found(self) -> None:
        body = b"<html><body>404 Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _not_found

    def log_message(self, *args) -> None:
        pass


def test_a_404_from_something_that_is_not_cos_is_not_a_missing_bucket(tmp_path, cos_server):
    require_fuse()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotCos)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{web.server_address[1]}"
        result = subprocess.run(_mount_command(endpoint, "b-1250000000", mountpoint, tmp_path,
                                               "use_path_request_style"), capture_output=True, text=True, timeout=60)
    finally:
        web.shutdown()
        web.server_close()
    assert result.returncode == 78
    assert "does not exist" not in result.stderr
    assert f"{endpoint} answered 404 for bucket b-1250000000 without a COS error code" in result.stderr
    # A real COS server's 404 for a missing bucket still says so.
    missing = "nosuch-1250000000"
    (tmp_path / "passwd").write_text(f"{missing}:{cos_server.secret_id}:{cos_server.secret_key}\n")
    result = subprocess.run(
        [sys.executable, "-m", "cosfs", "mount", missing, str(mountpoint), "-o",
         f"url={cos_server.endpoint},passwd_file={tmp_path / 'passwd'},cache_dir={tmp_path / 'cache'}"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert f"bucket {missing} does not exist" in result.stderr


def _hold_lock(cache_dir: Path, pid: int, mountpoint: Path) -> int:
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(cache_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{pid}\n{mountpoint}\n".encode(), 0)
    return fd


def test_a_new_mount_waits_for_a_daemon_whose_mount_is_gone(cos_server, tmp_path, mount_factory, expect_log):
    require_fuse()
    expect_log(r"^cosfs: waiting for cosfs pid 4242 \(its mount is gone\)", count=1, why="the line the mount owes")
    cache_dir = tmp_path / "mnt0.cache" / cos_server.bucket
    fd = _hold_lock(cache_dir, 4242, tmp_path / "gone")  # a draining daemon: its mount point is not mounted
    stderr_file = tmp_path / "mnt0.stderr"

    def release_when_said() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if stderr_file.exists() and "waiting for cosfs pid 4242" in stderr_file.read_text():
                break
            time.sleep(0.02)
        os.close(fd)

    releaser = threading.Thread(target=release_when_said)
    releaser.start()
    try:
        m = mount_factory(cos_server)
    finally:
        releaser.join()
    assert "(its mount is gone)" in stderr_file.read_text()
    (m.path / "f").write_bytes(b"mounted")
    # A live mount's lock is not waited for: a second mount on the same cache fails at once.
    second = tmp_path / "second"
    second.mkdir()
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "cosfs", "mount", cos_server.bucket, str(second), "-o",
         f"url={cos_server.endpoint},passwd_file={tmp_path / 'mnt0.passwd'},cache_dir={tmp_path / 'mnt0.cache'}"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert f"is in use by another cosfs mount (pid {m.process.pid}, on {m.path})" in result.stderr
    assert time.monotonic() - started < 10


def _staged(cache_dir: Path) -> list[str]:
    staging = cache_dir / "staging"
    return sorted(p.name for p in staging.glob("*.json")) if staging.exists() else []


@pytest.fixture
def stoppable_server(tmp_path):
    """A server the test may kill (uploads then fail) and start again on the same root."""
    servers = []

    def start():
        # Again on the same port: a journal belongs to its endpoint.
        again = ("--address", servers[0].endpoint.split("://", 1)[1]) if servers else ()
        server = start_server(tmp_path / "root", *again, access_log=tmp_path / "access.log")
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def test_an_unmounted_daemon_with_failing_uploads_exits_after_the_drain_bound(stoppable_server, tmp_path,
                                                                             mount_factory, expect_log):
    expect_log(r"^(WARNING|ERROR) cosfs\.", required=False, why="uploads fail while the server is down")
    server = stoppable_server()
    m = mount_factory(server, "write_back_delay=3600", "drain_timeout=2", "retries=30")
    (m.path / "pending").write_bytes(b"acknowledged")
    server.stop()
    started = time.monotonic()
    subprocess.run(["fusermount3", "-u", str(m.path)], check=True)
    m.process.wait(timeout=60)
    took = time.monotonic() - started
    assert took < 2 + 20, took  # the bound plus one attempt's connect failure and the poll
    assert "no upload progressed for 2 s" in m.log_file.read_text()
    assert _staged(m.cache_dir / server.bucket), "the journal must keep the file"
    # The next mount on the cache directory, with the server back, uploads it.
    server = stoppable_server()
    m = mount_factory(server, name="mnt0")
    os.setxattr(m.path, "user.cosfs.sync", b"1")
    deadline = time.monotonic() + 30
    while _staged(m.cache_dir / server.bucket):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (m.path / "pending").read_bytes() == b"acknowledged"


def test_sigterm_after_unmount_ends_the_drain_at_once_keeping_the_journal(stoppable_server, mount_factory,
                                                                          expect_log):
    expect_log(r"^(WARNING|ERROR) cosfs\.", required=False, why="uploads fail while the server is down")
    server = stoppable_server()
    m = mount_factory(server, "write_back_delay=3600", "drain_timeout=600")
    (m.path / "pending").write_bytes(b"acknowledged")
    server.stop()
    subprocess.run(["fusermount3", "-u", str(m.path)], check=True)
    deadline = time.monotonic() + 30
    while "unmounted: committing 1 file(s)" not in m.log_file.read_text():
        assert time.monotonic() < deadline, m.log_file.read_text()
        time.sleep(0.02)
    started = time.monotonic()
    m.process.send_signal(signal.SIGTERM)
    m.process.wait(timeout=30)
    assert time.monotonic() - started < 5
    assert "SIGTERM after unmount: ending the drain; 1 file(s) stay journaled" in m.log_file.read_text()
    assert _staged(m.cache_dir / server.bucket)


def test_repeated_sigterm_never_aborts_the_drain_of_a_live_mount(stoppable_server, mount_factory, expect_log):
    expect_log(r"^(WARNING|ERROR) cosfs\.", required=False, why="uploads fail while the server is down")
    server = stoppable_server()
    m = mount_factory(server, "write_back_delay=3600", "drain_timeout=5", "retries=30")
    (m.path / "pending").write_bytes(b"acknowledged")
    server.stop()
    m.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while "SIGTERM: committing 1 pending file(s), then unmounting" not in m.log_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for _ in range(3):
        m.process.send_signal(signal.SIGTERM)
        m.process.send_signal(signal.SIGINT)
    assert (m.path / "pending").read_bytes() == b"acknowledged"  # the mount still answers
    assert m.process.wait(timeout=60) == 0
    assert not is_mounted(m.path)  # unmounted cleanly: no "Transport endpoint is not connected"
    assert "SIGTERM again: still committing" in m.log_file.read_text()
    assert _staged(m.cache_dir / server.bucket)


def _background_mount(server, tmp_path: Path, mountpoint: Path, *options: str) -> list[str]:
    """`cosfs mount` (in the background, as scripts run it) of the server's bucket."""
    passwd = tmp_path / "passwd"
    passwd.write_text(f"{server.bucket}:{server.secret_id}:{server.secret_key}\n")
    passwd.chmod(0o600)
    opts = [f"url={server.endpoint}", f"passwd_file={passwd}", f"cache_dir={tmp_path / 'cache'}", *options]
    return [sys.executable, "-m", "cosfs", "mount", server.bucket, str(mountpoint), "-o", ",".join(opts)]


def test_umount_then_mount_at_once_always_works(cos_server, tmp_path, expect_log):
    """A script's `cosfs umount; cosfs mount` on one cache directory, with a change pending
    at each unmount: the daemon is gone (its lock released) by the time the next mount
    takes the cache directory, or that mount waits for it."""
    require_fuse()
    expect_log(r"^cosfs: waiting for cosfs pid", required=False, why="a daemon still finishing its upload")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    command = _background_mount(cos_server, tmp_path, mountpoint, f"log_file={tmp_path / 'cosfs.log'}",
                                "write_back_delay=30")
    try:
        for round_ in range(3):
            result = subprocess.run(command, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            (mountpoint / f"f{round_}").write_bytes(b"pending at unmount")
            result = subprocess.run([sys.executable, "-m", "cosfs", "umount", str(mountpoint)],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
    finally:
        if is_mounted(mountpoint):
            subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
    fd = os.open(tmp_path / "cache" / cos_server.bucket / "lock", os.O_RDWR)
    try:  # the last daemon uploads what was pending, then exits and releases the lock
        deadline = time.monotonic() + 60
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the last daemon did not exit"
                time.sleep(0.05)
    finally:
        os.close(fd)
    sdk = sdk_client(cos_server)
    for round_ in range(3):
        body = sdk.get_object(Bucket=cos_server.bucket, Key=f"f{round_}")["Body"].get_raw_stream().read()
        assert body == b"pending at unmount"


def test_a_background_mount_says_where_it_logs_when_there_is_no_syslog(cos_server, tmp_path, expect_log):
    """With no syslog socket (containers), the log goes to CACHE_DIR/cosfs.log and the mount's
    output says so once it is live; with one, the mount says nothing."""
    require_fuse()
    expect_log(r"^cosfs: logging to ", required=False, why="the line under test")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = subprocess.run(_background_mount(cos_server, tmp_path, mountpoint), capture_output=True, text=True,
                            timeout=60)
    try:
        assert result.returncode == 0, result.stderr
        (mountpoint / "f").write_bytes(b"x")
    finally:
        subprocess.run([sys.executable, "-m", "cosfs", "umount", str(mountpoint)], capture_output=True, timeout=60)
    from cosfs.logs import SYSLOG_ADDRESS, _syslog_refusal

    if _syslog_refusal(SYSLOG_ADDRESS) is None:
        assert result.stderr == ""
    else:
        log_file = tmp_path / "cache" / cos_server.bucket / "cosfs.log"
        assert result.stderr.splitlines() == [f"cosfs: logging to {log_file} (no syslog socket at {SYSLOG_ADDRESS})"]
        assert log_file.stat().st_mode & 0o777 == 0o600
