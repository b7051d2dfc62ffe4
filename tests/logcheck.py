r"""Fail a test whose cosfs daemon logged a WARNING, ERROR or CRITICAL line the test did not
declare (in the spirit of s3ql's pytest_checklogs).

The daemon's log file (`-o log_file=...`) has one record per line,
    2026-01-31 12:00:00,123 cosfs[4242] WARNING cosfs.namespace: skipping key ...
(cosfs/mount.py, setup_logging); lines that do not start that way (a traceback) continue
the record above them. Whatever a daemon wrote to its stderr also counts as a serious record:
with a log file, a foreground daemon writes nothing there unless something escaped logging.

A test declares what it expects with the `expect_log` fixture (tests/fuse/conftest.py):
`expect_log(regex)`; the regex is searched (re.search) in "LEVEL logger: message" plus any
continuation lines, e.g.
    expect_log(r"^WARNING cosfs\.namespace: skipping key .* cannot be a file name$", why="...")
Every serious record must match a declaration, and every declaration must match at least one
record (or exactly `count` records), so declarations cannot go stale. Only a record that the
scenario may or may not cause (a retry after a randomly injected fault, a race the test does
not control) is declared with `required=False`, and `why=` says so.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} cosfs\[(?P<pid>\d+)\] (?P<level>[A-Z]+) (?P<rest>.*)$")
SERIOUS = frozenset({"WARNING", "ERROR", "CRITICAL", "STDERR", "UNPARSED"})


@dataclasses.dataclass
class Record:
    source: str  # file name, for messages
    level: str
    text: str  # "LEVEL logger: message", continuation lines joined with "\n"

    def show(self) -> str:
        return f"{self.source}: {self.text}"


def parse(text: str, source: str) -> list[Record]:
    records: list[Record] = []
    for line in text.splitlines():
        match = RECORD.match(line)
        if match:
            records.append(Record(source, match["level"], f"{match['level']} {match['rest']}"))
        elif records:
            records[-1].text += "\n" + line
        elif line.strip():  # text before any record: nothing the daemon's logging wrote
            records.append(Record(source, "UNPARSED", line))
    return records


def parse_stderr(text: str, source: str) -> list[Record]:
    return [Record(source, "STDERR", text.strip())] if text.strip() else []


@dataclasses.dataclass
class Expected:
    pattern: re.Pattern
    count: int | None
    required: bool
    why: str
    matched: int = 0

    def describe(self) -> str:
        if not self.required:
            times = "any number of times"
        else:
            times = "at least once" if self.count is None else f"exactly {self.count} time(s)"
        return f"{self.pattern.pattern!r} ({times}; {self.why or 'no reason given'})"


class LogCheck:
    """The daemon logs one test watches, and the records it expects in them."""

    def __init__(self) -> None:
        self.expected: list[Expected] = []
        self.logs: list[Path] = []
        self.stderrs: list[Path] = []

    def __call__(self, pattern: str, *, count: int | None = None, required: bool = True, why: str = "") -> None:
        """Declare WARNING/ERROR/CRITICAL records (or stderr output) this test causes: `pattern`
        is searched in "LEVEL logger: message"; it must match at least once, or exactly
        `count` times, or (required=False) may match any number of times."""
        if count is not None and not required:
            raise ValueError("count= and required=False contradict each other")
        self.expected.append(Expected(re.compile(pattern, re.DOTALL), count, required, why))

    def watch(self, log_file: Path, stderr_file: Path | None = None) -> None:
        """Check this log file (and stderr capture) at teardown; each path is read once."""
        if log_file not in self.logs:
            self.logs.append(log_file)
        if stderr_file is not None and stderr_file not in self.stderrs:
            self.stderrs.append(stderr_file)

    def records(self) -> list[Record]:
        found: list[Record] = []
        for path in self.logs:
            if path.exists():
                found += parse(path.read_text(errors="replace"), path.name)
        for path in self.stderrs:
            if path.exists():
                found += parse_stderr(path.read_text(errors="replace"), path.name)
        return [record for record in found if record.level in SERIOUS]

    def problems(self, *, test_failed: bool = False) -> list[str]:
        """Unexpected records, and declarations nothing matched (not reported when the test
        itself failed: it may have stopped before causing them)."""
        for expected in self.expected:
            expected.matched = 0
        unexpected = []
        for record in self.records():
            hits = [e for e in self.expected if e.pattern.search(record.text)]
            for expected in hits:
                expected.matched += 1
            if not hits:
                unexpected.append(record)
        problems = [f"unexpected {record.level} from the daemon: {record.show()}" for record in unexpected[:20]]
        if len(unexpected) > 20:
            problems.append(f"... and {len(unexpected) - 20} more unexpected records")
        if not test_failed:
            for expected in self.expected:
                if not expected.required:
                    continue
                if expected.count is None and expected.matched == 0:
                    problems.append(f"declared but never logged: {expected.describe()}")
                elif expected.count is not None and expected.matched != expected.count:
                    problems.append(f"declared {expected.describe()}, logged {expected.matched} time(s)")
        return problems

    def verify(self, *, test_failed: bool = False) -> None:
        problems = self.problems(test_failed=test_failed)
        if problems:
            watched = ", ".join(str(path) for path in self.logs + self.stderrs)
            raise AssertionError("daemon log check failed (declare expected records with expect_log(regex)):\n"
                                 + "\n".join(problems) + f"\nlogs: {watched}")


# Declarations for tests in files the log check's author could not edit when it landed, made
# by the conftest of their directory: {"tests/dir/test_x.py::test_name": [(regex, kwargs)]}.
# Prefer expect_log(...) in the test itself, and move these there.
_DECLARED_FOR: dict[str, list[tuple[str, dict]]] = {}


def declare_for(test: str, pattern: str, **kwargs) -> None:
    """As `expect_log(pattern, **kwargs)` in `test` ("tests/dir/test_x.py::test_name", every
    parametrization of it)."""
    re.compile(pattern)
    _DECLARED_FOR.setdefault(test, []).append((pattern, kwargs))


def declared_for(nodeid: str) -> list[tuple[str, dict]]:
    return _DECLARED_FOR.get(nodeid.split("[")[0], [])
