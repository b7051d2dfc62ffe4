"""cosfs/logs.py: where a mount's log goes (syslog, a file, stderr, the fallback file when
there is no syslog), its text and JSON shapes, and reopening after rotation."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import socket
import stat
from pathlib import Path

import pytest

from cosfs import logs
from cosfs.errors import ConfigError
from tests.logcheck import RECORD


@dataclasses.dataclass
class Settings:
    """The fields of mount.MountSettings that logs.setup_logging reads."""

    cache_dir: Path
    foreground: bool = False
    log_file: str = ""
    log_level: int = logging.INFO
    log_format: str = "text"
    http_debug: bool = False
    notes: tuple[tuple[int, str], ...] = ()


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch):
    """setup_logging replaces the root logger's handlers: give pytest's back afterwards."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {name: logging.getLogger(name).level for name in ("cosfs.http", "httpx", "httpcore")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in named.items():
        logging.getLogger(name).setLevel(old)
    logs._log_file = None


def flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def test_background_without_syslog_socket_logs_to_the_cache_dir(tmp_path):
    cache = tmp_path / "cache"
    where = logs.setup_logging(Settings(cache), syslog_address=str(tmp_path / "no-such-socket"))
    path = cache / "cosfs.log"
    assert where == f"logging to {path} (no syslog socket at {tmp_path / 'no-such-socket'})"
    logging.getLogger("cosfs.test").warning("upload of %s failed", "a.txt")
    flush()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    [line] = path.read_text().splitlines()
    match = RECORD.match(line)
    assert match and match["pid"] == str(os.getpid())
    assert match["rest"] == "cosfs.test: upload of a.txt failed"


def test_a_syslog_path_that_is_not_a_listening_socket_falls_back(tmp_path):
    fake = tmp_path / "log"
    fake.write_text("")
    where = logs.setup_logging(Settings(tmp_path / "cache"), syslog_address=str(fake))
    assert where.startswith(f"logging to {tmp_path / 'cache' / 'cosfs.log'} (syslog socket {fake} refused")
    logging.getLogger("cosfs.test").error("boom")
    flush()
    assert "ERROR cosfs.test: boom" in (tmp_path / "cache" / "cosfs.log").read_text()


def test_background_with_syslog_sends_datagrams(tmp_path):
    address = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(5)
        where = logs.setup_logging(Settings(tmp_path / "cache"), syslog_address=address)
        assert where == f"logging to syslog ({address})"
        logging.getLogger("cosfs.test").warning("hello")
        datagram = server.recv(4096).decode()
    assert datagram == f"<12>cosfs[{os.getpid()}]: WARNING cosfs.test: hello\x00"  # user.warning
    assert not (tmp_path / "cache").exists()


def test_json_lines_with_exception(tmp_path):
    log_file = tmp_path / "mount.log"
    where = logs.setup_logging(Settings(tmp_path / "cache", log_file=str(log_file), log_format="json"))
    assert where == f"logging to {log_file} as JSON lines"
    log = logging.getLogger("cosfs.test")
    log.info("two\nlines", extra={"secret_key": "AKIDsecret"})
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("failed")
    flush()
    first, second = (json.loads(line) for line in log_file.read_text().splitlines())
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["level"] == "INFO" and first["logger"] == "cosfs.test" and first["message"] == "two\nlines"
    assert first["time"].endswith("Z")
    moment = datetime.datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.timezone.utc) - moment).total_seconds()) < 60
    assert second["level"] == "ERROR" and "ValueError: bad value" in second["exc"]
    assert "AKIDsecret" not in log_file.read_text()


def test_log_file_is_created_private_and_reopened(tmp_path):
    log_file = tmp_path / "mount.log"
    logs.setup_logging(Settings(tmp_path / "cache", log_file=str(log_file)))
    log = logging.getLogger("cosfs.test")
    log.warning("before")
    flush()
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    log_file.rename(tmp_path / "mount.log.1")  # logrotate's move
    logs.reopen()
    log.warning("after")
    flush()
    assert "before" in (tmp_path / "mount.log.1").read_text()
    assert "after" not in (tmp_path / "mount.log.1").read_text()
    assert "WARNING cosfs.test: after" in log_file.read_text()
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600


def test_a_rotated_file_is_followed_without_a_signal(tmp_path):
    log_file = tmp_path / "mount.log"
    logs.setup_logging(Settings(tmp_path / "cache", log_file=str(log_file)))
    log_file.rename(tmp_path / "mount.log.1")
    logging.getLogger("cosfs.test").warning("after")
    flush()
    assert "after" in log_file.read_text()


def test_foreground_stderr_and_journal(tmp_path, capsys, monkeypatch):
    assert logs.setup_logging(Settings(tmp_path, foreground=True)) == "logging to stderr"
    logging.getLogger("cosfs.test").warning("plain")
    assert RECORD.match(capsys.readouterr().err.strip())
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    assert logs.setup_logging(Settings(tmp_path, foreground=True)) == "logging to the journal (stderr)"
    logging.getLogger("cosfs.test").error("journal")
    assert capsys.readouterr().err == f"<3>cosfs[{os.getpid()}] cosfs.test: journal\n"
    assert logs.setup_logging(Settings(tmp_path, foreground=True, log_format="json")).endswith("as JSON lines")
    logging.getLogger("cosfs.test").warning("shipped")
    line = capsys.readouterr().err
    assert line.startswith("<4>{") and json.loads(line[3:])["message"] == "shipped"


def test_notes_and_http_levels(tmp_path):
    log_file = tmp_path / "mount.log"
    logs.setup_logging(Settings(tmp_path, log_file=str(log_file), http_debug=True,
                                notes=((logging.WARNING, "option x is accepted without effect"),)))
    flush()
    assert "WARNING cosfs.options: option x is accepted without effect" in log_file.read_text()
    assert logging.getLogger("cosfs.http").level == logging.INFO
    assert logging.getLogger("httpx").level == logging.DEBUG


def test_unusable_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="log_format=xml"):
        logs.setup_logging(Settings(tmp_path, log_format="xml"))
    with pytest.raises(ConfigError, match="cannot write the log file"):
        logs.setup_logging(Settings(tmp_path, log_file=str(tmp_path / "missing" / "mount.log")))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="give -o log_file=PATH"):
        logs.setup_logging(Settings(blocker / "cache"), syslog_address=str(tmp_path / "none"))
