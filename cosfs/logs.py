"""Where the mount's log goes, and in what shape.

Destinations, first match wins:

| settings | destination |
|---|---|
| log_file=PATH | PATH |
| foreground, under systemd (JOURNAL_STREAM set) | stderr, lines with syslog priority prefixes |
| foreground | stderr |
| background, a syslog socket that accepts a connection | syslog |
| background, no syslog socket (containers) or one that refuses | CACHE_DIR/cosfs.log |

A background daemon's stderr is /dev/null, so without this fallback a host without syslog
would get no log at all, silently; the last row keeps the log where an operator already looks for the mount's
state. `setup_logging` returns one line saying where the log goes, for the mount to print.

`log_format=json` writes one JSON object per line (time, level, logger, message, exc) for
log shippers; `text` (the default) is the classic line. Log files are created 0600 (records
name keys and paths) and followed across rotation: a file moved away (logrotate's default)
is noticed at the next record, and `reopen()` (SIGHUP) reopens it in any case.

Secrets: nothing here formats a record's arguments or extra fields beyond its message, and
no cosfs module puts keys, tokens or signatures in a message (cosfs.cos.engine's docstring).
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import os
import socket
import sys
from pathlib import Path

from cosfs.config import environment
from cosfs.durable import private_dir
from cosfs.errors import ConfigError

LOG_FORMATS = ("text", "json")
SYSLOG_ADDRESS = "/dev/log"
# The log file in the cache directory when there is no syslog to write to.
FALLBACK_NAME = "cosfs.log"

TEXT_LINE = "%(asctime)s cosfs[%(process)d] %(levelname)s %(name)s: %(message)s"
JOURNAL_LINE = "cosfs[%(process)d] %(name)s: %(message)s"
SYSLOG_LINE = "%(levelname)s %(name)s: %(message)s"  # after the handler's ident, cosfs[PID]:

# The log file of this process, if it logs to one: what `reopen` reopens.
_log_file: LogFile | None = None


class JournalFormatter(logging.Formatter):
    """stderr lines with syslog priority prefixes (<3>, <4>...), which journald turns into
    levels: used when systemd connects stderr to the journal (JOURNAL_STREAM is set)."""

    PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{self._inner.format(record)}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a message's newlines are escaped): time
    (ISO 8601, UTC, milliseconds), level, logger, message, and exc (the traceback) if any.
    Only the formatted message is written, never the record's other attributes."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        entry = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class LogFile(logging.handlers.WatchedFileHandler):
    """A log file created 0600, reopened when rotated away (WatchedFileHandler checks at each
    record) or when asked (`reopen`: SIGHUP after a copy or an edit in place)."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
            self._statstream()
        finally:
            self.release()


def _formatter(log_format: str, text_line: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(text_line)


def _syslog_refusal(address: str) -> str | None:
    """Why syslog at `address` cannot take records (None: it can). Python's SysLogHandler
    ignores a socket that is missing or refuses, and then drops every record."""
    if not os.path.exists(address):
        return f"no syslog socket at {address}"
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(address)
            except OSError as exc:
                reason = exc.strerror or str(exc)
            else:
                return None
    return f"syslog socket {address} refused the connection: {reason}"


def _open_log_file(path: str, what: str) -> LogFile:
    try:
        return LogFile(path)
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {path}{what}: {exc.strerror or exc}") from None


def _destination(settings, log_format: str, syslog_address: str) -> tuple[logging.Handler, str]:
    """The handler the settings ask for (see the module's table), and where it writes."""
    if settings.log_file:
        handler: logging.Handler = _open_log_file(settings.log_file, "")
        handler.setFormatter(_formatter(log_format, TEXT_LINE))
        return handler, f"logging to {settings.log_file}"
    if settings.foreground:
        handler = logging.StreamHandler(sys.stderr)
        if environment().get("JOURNAL_STREAM"):
            handler.setFormatter(JournalFormatter(_formatter(log_format, JOURNAL_LINE)))
            return handler, "logging to the journal (stderr)"
        handler.setFormatter(_formatter(log_format, TEXT_LINE))
        return handler, "logging to stderr"
    refusal = _syslog_refusal(syslog_address)
    if refusal is None:
        handler = logging.handlers.SysLogHandler(address=syslog_address)
        handler.ident = f"cosfs[{os.getpid()}]: "
        handler.setFormatter(_formatter(log_format, SYSLOG_LINE))
        return handler, f"logging to syslog ({syslog_address})"
    path = Path(settings.cache_dir) / FALLBACK_NAME
    try:
        private_dir(Path(settings.cache_dir))
    except OSError as exc:
        raise ConfigError(f"{refusal}, and the cache directory {settings.cache_dir} cannot hold the log: "
                          f"{exc.strerror or exc}; give -o log_file=PATH") from None
    handler = _open_log_file(str(path), f" ({refusal}; give -o log_file=PATH)")
    handler.setFormatter(_formatter(log_format, TEXT_LINE))
    return handler, f"logging to {path} ({refusal})"


def setup_logging(settings, *, syslog_address: str = SYSLOG_ADDRESS) -> str:
    """Send this process's log where `settings` say (the module's table), replacing the root
    logger's handlers; one line saying where it goes. Reads settings.log_file, foreground,
    cache_dir, log_level, log_format ("text" or "json"), http_debug and notes (log lines owed
    for options, written once the log is in place). ConfigError when the log cannot be
    written (an unwritable log_file, or no syslog and no writable cache directory)."""
    global _log_file
    if settings.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format={settings.log_format}: expected one of {', '.join(LOG_FORMATS)}")
    handler, where = _destination(settings, settings.log_format, syslog_address)
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    _log_file = handler if isinstance(handler, LogFile) else None
    http_level = logging.DEBUG if settings.http_debug else logging.WARNING
    logging.getLogger("cosfs.http").setLevel(logging.INFO if settings.http_debug else logging.WARNING)
    logging.getLogger("httpx").setLevel(http_level)
    logging.getLogger("httpcore").setLevel(http_level)
    for level, note in settings.notes:
        logging.getLogger("cosfs.options").log(level, "%s", note)
    if settings.log_format == "json":
        where += " as JSON lines"
    return where


def reopen() -> None:
    """Reopen the log file, if the log goes to one (SIGHUP: logrotate's postrotate, or a
    copytruncate), so records land in the file now at its path."""
    if _log_file is not None:
        _log_file.reopen()
