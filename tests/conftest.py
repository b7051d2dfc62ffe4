"""Shared fixtures: a real `cosfs serve` process on loopback, stopped by PID even on failure."""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import subprocess
import threading
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_BUCKET = "examplebucket-1250000000"


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM a server we started, by its PID; SIGKILL if it does not end within 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclasses.dataclass
class ServerProcess:
    """A running `cosfs serve`: where it listens and the keys it accepts."""

    process: subprocess.Popen
    endpoint: str
    root: Path
    buckets: list[str]
    secret_id: str
    secret_key: str = dataclasses.field(repr=False)
    access_log: Path | None

    @property
    def bucket(self) -> str:
        return self.buckets[0]

    def stop(self) -> None:
        stop_process(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def access_lines(self, settled: bool = False) -> list[str]:
        """The access log's lines. The server writes a line once its reply is sent, so a client
        may hold the reply before the line exists: `settled` first sends a barrier request of
        its own and waits for its line, which trio's scheduler writes after the line of every
        reply already received. Barrier lines are left out."""
        if self.access_log is None:
            return []
        if settled:
            mark = f"/cosfs-test-barrier-{secrets.token_hex(6)}"
            try:
                urllib.request.urlopen(self.endpoint + mark, timeout=10).close()
            except urllib.error.HTTPError:
                pass  # (refused: it has no signature; its line is what counts)
            deadline = time.monotonic() + 10
            while mark not in (self.access_log.read_text() if self.access_log.exists() else ""):
                assert time.monotonic() < deadline, "the barrier request never reached the access log"
                time.sleep(0.01)
        if not self.access_log.exists():
            return []
        return [line for line in self.access_log.read_text().splitlines() if "/cosfs-test-barrier-" not in line]


def start_server(
    root: Path,
    *extra_args: str,
    buckets: tuple[str, ...] = (DEFAULT_BUCKET,),
    access_log: Path | None = None,
    timeout_s: float = 20.0,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start `python -m cosfs serve` on a free loopback port and wait for its 'ready' line.

    The secret key goes through the environment (COSFS_SERVE_SECRET_KEY), never argv; `env`
    adds variables (TZ=...)."""
    secret_id = "AKIDtest" + secrets.token_hex(8)
    secret_key = secrets.token_hex(16)
    args = [sys.executable, "-m", "cosfs", "serve", "--root", str(root), "--address", "127.0.0.1:0",
            "--secret-id", secret_id]
    for bucket in buckets:
        args += ["--bucket", bucket]
    if access_log is not None:
        args += ["--access-log", str(access_log)]
    args += list(extra_args)
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {}), "COSFS_SERVE_SECRET_KEY": secret_key})
    endpoint = None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip())
            if line.startswith("endpoint:"):
                endpoint = line.split(":", 1)[1].strip()
            if line.strip() == "ready" and endpoint:
                break
        else:
            raise TimeoutError("cosfs serve did not become ready")
        if endpoint is None:
            raise RuntimeError("cosfs serve exited before it was ready:\n" + "\n".join(seen))
    except BaseException:
        process.kill()
        process.wait()
        raise
    # Keep draining stdout so the server never blocks on a full pipe.

    threading.Thread(target=process.stdout.read, daemon=True).start()
    return ServerProcess(process, endpoint, root, list(buckets), secret_id, secret_key, access_log)


@pytest.fixture
def cos_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh `cosfs serve` with one bucket and an access log."""
    server = start_server(tmp_path / "server-root", access_log=tmp_path / "access.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """Start servers with extra arguments (faults, buckets); all are stopped at teardown."""
    started: list[ServerProcess] = []

    def factory(*extra_args: str, root: Path | None = None, **kwargs) -> ServerProcess:
        """`root=` restarts a server on an earlier server's files."""
        root = root or tmp_path / f"server-root-{len(started)}"
        kwargs.setdefault("access_log", tmp_path / f"access-{len(started)}.log")
        server = start_server(root, *extra_args, **kwargs)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            server.stop()


# The suite writes nothing into the home directory: a tool that keeps files there by default
# (the official SDK's download_file keeps resume records in ~/.cos_download_tmp_file unless
# given DumpRecordDir) is to be pointed into tmp_path. The main process lists the home
# directory and its usual tool folders before the run and after it; a new entry fails the run.
HOME_FOLDERS = (".", ".config", ".cache", ".local/share", ".local/state")
HOME_BEFORE = pytest.StashKey[set[str]]()
HOME_NEW = pytest.StashKey[list[str]]()


def home_entries() -> set[str]:
    home = Path(os.path.expanduser("~"))
    found: set[str] = set()
    for folder in HOME_FOLDERS:
        try:
            with os.scandir(home / folder) as entries:
                found.update(os.path.normpath(os.path.join(folder, entry.name)) for entry in entries)
        except OSError:
            continue
    return found


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the main process (alone, or pytest-xdist's)
        config.stash[HOME_BEFORE] = home_entries()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(HOME_BEFORE, None)
    if before is None:
        return
    new = sorted(home_entries() - before)
    if new:
        session.config.stash[HOME_NEW] = new
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# The POSIX conformance tally (tests/posix): each test's report carries its case counts in
# user_properties, summed here, in the main process (also under pytest-xdist, whose main
# process loads this conftest but not those of subdirectories).
TALLY: list[tuple[str, int, int]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        TALLY.extend(value for name, value in report.user_properties if name == "posix_cases")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    new_in_home = config.stash.get(HOME_NEW, [])
    if new_in_home:
        terminalreporter.section("files the tests left in the home directory", red=True)
        home = os.path.expanduser("~")
        for name in new_in_home:
            terminalreporter.write_line(f"{home}/{name}")
        terminalreporter.write_line("the run fails: point whatever wrote them into tmp_path")
    if not TALLY:
        return
    passed = sum(p for _, p, _ in TALLY)
    total = sum(t for _, _, t in TALLY)
    terminalreporter.section("POSIX conformance cases (tests/posix)")
    for name, p, t in TALLY:
        terminalreporter.write_line(f"{p:5d} / {t:<5d} {name}")
    terminalreporter.write_line(f"{passed:5d} / {total:<5d} all ({100.0 * passed / max(total, 1):.1f}%)")
