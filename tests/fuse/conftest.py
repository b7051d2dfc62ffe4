r"""Real FUSE mounts of a `cosfs serve` bucket. Every mount is unmounted and every process we
started is stopped (by PID) at teardown, even when the test failed.

Every mount made through `mount_factory` has its log checked after it is unmounted: a
WARNING/ERROR/CRITICAL line (or stderr output) the test did not declare with the `expect_log`
fixture fails the test, and so does a declaration that nothing matched (tests/logcheck.py):

    def test_x(cos_server, mount_factory, expect_log):
        expect_log(r"^WARNING cosfs\.namespace: skipping key", why="the bucket holds odd keys")
        m = mount_factory(cos_server)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import ServerProcess
from tests.logcheck import LogCheck, declare_for, declared_for

FUSERMOUNT = shutil.which("fusermount3") or "fusermount3"


def require_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse is missing: these tests mount for real and cannot run without FUSE")
    if shutil.which("fusermount3") is None:
        pytest.fail("fusermount3 is missing: run scripts/setup.sh (apt-get install fuse3)")


def sdk_client(server: ServerProcess, retries: int = 1):
    """The official Tencent SDK pointed at the local server (virtual-hosted via Host header)."""
    from qcloud_cos import CosConfig, CosS3Client

    url = urlparse(server.endpoint)
    config = CosConfig(Region="ap-guangzhou", SecretId=server.secret_id, SecretKey=server.secret_key,
                       Scheme="http", IP=url.hostname, Port=url.port)
    return CosS3Client(config, retry=retries)


def write_passwd(path: Path, server: ServerProcess) -> Path:
    path.write_text(f"{server.bucket}:{server.secret_id}:{server.secret_key}\n")
    path.chmod(0o600)
    return path


@dataclasses.dataclass
class Mounted:
    path: Path
    process: subprocess.Popen
    server: ServerProcess
    log_file: Path
    cache_dir: Path
    stderr_file: Path

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""


def is_mounted(path: Path) -> bool:
    """From /proc/self/mountinfo: never stats the mount, so a hung daemon cannot hang the test."""
    target = str(Path(path).resolve())
    with open("/proc/self/mountinfo") as handle:
        return any(line.split()[4] == target for line in handle if len(line.split()) > 4)


def wait_mounted(path: Path, process: subprocess.Popen | None, timeout_s: float = 30.0,
                 stderr_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_mounted(path):
            return
        if process is not None and process.poll() is not None:
            if stderr_file is not None and stderr_file.exists():
                said = stderr_file.read_text(errors="replace")
            else:
                said = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"cosfs mount exited with {process.returncode} before mounting:\n" + said)
        time.sleep(0.05)
    raise AssertionError(f"{path} was not mounted within {timeout_s} s")


def unmount(path: Path, process: subprocess.Popen | None) -> None:
    if is_mounted(path):
        subprocess.run([FUSERMOUNT, "-u", str(path)], capture_output=True)
    if process is not None:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if is_mounted(path):
        subprocess.run([FUSERMOUNT, "-uz", str(path)], capture_output=True)
    if process is not None and process.stderr is not None:
        process.stderr.close()


def start_mount(server: ServerProcess, tmp_path: Path, *options: str, name: str = "mnt",
                bucket: str | None = None, env: dict[str, str] | None = None) -> Mounted:
    require_fuse()
    mountpoint = tmp_path / name
    mountpoint.mkdir(exist_ok=True)
    passwd = write_passwd(tmp_path / f"{name}.passwd", server)
    log_file = tmp_path / f"{name}.log"
    cache_dir = tmp_path / f"{name}.cache"
    # stderr goes to a file (appended to by a later mount of the same name): never a pipe
    # nobody drains, and what escaped logging can be checked like the log.
    stderr_file = tmp_path / f"{name}.stderr"
    opts = [f"url={server.endpoint}", f"passwd_file={passwd}", f"cache_dir={cache_dir}", f"log_file={log_file}",
            "dbglevel=info", *options]
    with open(stderr_file, "a") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cosfs", "mount", bucket or server.bucket, str(mountpoint), "-f", "-o",
             ",".join(opts)],
            stdout=subprocess.DEVNULL, stderr=stderr, text=True, env={**os.environ, **(env or {})})
    try:
        wait_mounted(mountpoint, process, stderr_file=stderr_file)
    except BaseException:
        unmount(mountpoint, process)
        raise
    return Mounted(mountpoint, process, server, log_file, cache_dir, stderr_file)


@pytest.fixture
def expect_log(request: pytest.FixtureRequest) -> Iterator[LogCheck]:
    """`expect_log(regex, count=None, required=True, why="")` declares WARNING/ERROR/CRITICAL
    records the test's daemons will log (regex searched in "LEVEL logger: message"): at least
    once, exactly `count` times, or (required=False, only for what the scenario may or may not
    cause) any number of times. Checked at teardown, after `mount_factory` (which depends on
    this fixture) has unmounted everything; `expect_log.watch(log_file, stderr_file)` adds the
    log of a daemon started some other way."""
    check = LogCheck()
    for pattern, kwargs in declared_for(request.node.nodeid):
        check(pattern, **kwargs)
    failed_before = request.session.testsfailed
    yield check
    check.verify(test_failed=request.session.testsfailed > failed_before)


@pytest.fixture
def mount_factory(tmp_path: Path, expect_log: LogCheck) -> Iterator:
    """`mount_factory(server, *options, name=None, bucket=None)` mounts and returns Mounted.
    Mounts with the same `name` share the mount point, cache directory and log (a remount
    after a crash). All are unmounted at teardown; then expect_log checks their logs."""
    started: list[Mounted] = []

    def factory(server: ServerProcess, *options: str, name: str | None = None, **kwargs) -> Mounted:
        mounted = start_mount(server, tmp_path, *options, name=name or f"mnt{len(started)}", **kwargs)
        started.append(mounted)
        expect_log.watch(mounted.log_file, mounted.stderr_file)
        return mounted

    try:
        yield factory
    finally:
        errors: list[BaseException] = []
        for mounted in reversed(started):
            try:
                unmount(mounted.path, mounted.process)
            except BaseException as exc:  # unmount the others all the same
                errors.append(exc)
        if errors:
            raise errors[0]


# What tests of this directory expect in their daemon's log, declared by test id (expect_log
# in the test itself says the same for new tests).
_READ = "tests/fuse/test_read_mount.py::"
for _key in ("odd//",):
    declare_for(_READ + "test_odd_keys_are_skipped_not_fatal",
                rf"^WARNING cosfs\.namespace: skipping key '{_key}': '.*' cannot be a file name$",
                why="the bucket holds keys that cannot be file names")
declare_for(_READ + "test_replaced_under_an_open_file_gives_estale_never_mixed",
            r"^WARNING cosfs\.fuse_ops: read failed \(ESTALE\): COS 412 PreconditionFailed",
            why="the object was replaced under an open file")
# BUG (minor): the same failure is logged twice, by the client and again by fuse_ops.
declare_for(_READ + "test_replaced_under_an_open_file_gives_estale_never_mixed",
            r"^WARNING cosfs\.cos\.client: open_object 'moving\.bin' failed: status=412 code=PreconditionFailed",
            why="BUG (minor): the ESTALE read above, logged a second time by the client")


def count_requests(server: ServerProcess, since: int = 0) -> dict[str, int]:
    """Requests in the server's access log since line `since`, by kind: LIST (GET of the bucket
    itself), GET, HEAD, PUT, POST, DELETE. Log lines are `TIME METHOD PATH QUERY STATUS ...`."""
    counts: dict[str, int] = {}
    for line in server.access_lines(settled=True)[since:]:
        method, path = line.split()[1:3]
        kind = "LIST" if method == "GET" and path.strip("/") == server.bucket else method
        counts[kind] = counts.get(kind, 0) + 1
    return counts
