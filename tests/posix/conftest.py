"""Fixtures of the POSIX conformance tests: real mounts of a `cosfs serve` bucket (tests/fuse,
tests/trust), the SDK's view of the bucket, and a table-driven checker.

Every test builds tables of cases (one system call each, with the errno or result POSIX and
the Linux man pages require), runs them as root in this process or as user nobody in a
/usr/bin/python3 subprocess (tests/posix/syscalls.py), and collects every case before it
fails: the failure message lists each broken behaviour with the rule it checks, and ends
with "N of M cases passed". The terminal summary adds the ratio over the whole module.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fuse.conftest import expect_log, mount_factory  # noqa: F401  (re-exported fixtures)
from tests.posix import syscalls
from tests.trust.conftest import shared_mount  # noqa: F401  (re-exported fixture)
from tests.write.bucket import Bucket

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter is private to root
_SOURCE = inspect.getsource(syscalls)

# (test name, passed, total) of every conformance checker that ran, for the summary.
@pytest.fixture
def bucket(cos_server) -> Bucket:
    return Bucket(cos_server)


@pytest.fixture(autouse=True)
def fixed_umask():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@dataclasses.dataclass
class Row:
    """One system call and what the standard says it must do."""

    op: str
    args: tuple
    expect: tuple[str, ...]  # ("ok",) or the acceptable errno names
    what: str  # the behaviour, in words
    rule: str  # where it is written: man page / POSIX section
    value: Callable[[Any], bool] | None = None  # a further check of a successful call's value
    shows: str = ""  # what `value` requires, for the message


def ok(op: str, *args, what: str, rule: str, value: Callable[[Any], bool] | None = None, shows: str = "") -> Row:
    return Row(op, args, ("ok",), what, rule, value, shows)


def err(codes: str | tuple[str, ...], op: str, *args, what: str, rule: str) -> Row:
    return Row(op, args, (codes,) if isinstance(codes, str) else tuple(codes), what, rule)


def run_as_nobody(cases: list[dict]) -> list[dict]:
    """Run the cases in order as uid/gid 65534 with no supplementary groups."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"{SYSTEM_PYTHON} is needed to act as user nobody (the venv's python is private to root)")
    result = subprocess.run([SYSTEM_PYTHON, "-c", _SOURCE], input=json.dumps(cases), capture_output=True,
                            text=True, timeout=120, user=NOBODY, group=NOBODY, extra_groups=[], cwd="/")
    if result.returncode != 0:
        raise AssertionError(f"the syscall runner failed as nobody: {result.stderr}")
    return json.loads(result.stdout)


class Conformance:
    """Collects case results of one test; `verify()` fails with every broken case listed."""

    def __init__(self, name: str, properties: list | None = None) -> None:
        self.name = name
        # The test report's user_properties: the tally travels with the report, so it is
        # summed in the main process also when pytest-xdist runs the tests in workers.
        self.properties = [] if properties is None else properties
        self.passed = 0
        self.failures: list[str] = []
        self.base: str | None = None  # shown as "M" in messages

    def short(self, value: Any) -> str:
        if isinstance(value, dict) and "mode" in value and "nlink" in value:  # stat fields
            text = (f"{{{stat.filemode(value['mode'])} mode {value['mode']:07o} owner {value['uid']}:{value['gid']} "
                    f"nlink {value['nlink']} size {value['size']} rdev {value['rdev']:#x} "
                    f"atime/mtime/ctime {value['atime_ns']}/{value['mtime_ns']}/{value['ctime_ns']} ns}}")
            return text
        text = repr(value)
        if self.base:
            text = text.replace(self.base, "M")
        return text if len(text) <= 160 else text[:150] + "...(" + str(len(text)) + " chars)"

    def that(self, condition: bool, what: str, rule: str, detail: str = "") -> bool:
        if condition:
            self.passed += 1
        else:
            self.failures.append(f"{what} [{rule}]" + (f": {detail}" if detail else ""))
        return condition

    def table(self, rows: list[Row], *, user: str = "root") -> list[dict]:
        """Run the rows in order (as root here, or as nobody in one subprocess) and record them."""
        cases = [{"op": row.op, "args": [str(a) if isinstance(a, Path) else a for a in row.args]} for row in rows]
        results = run_as_nobody(cases) if user == "nobody" else [syscalls.run(case) for case in cases]
        for row, case, result in zip(rows, cases, results):
            got = "ok" if result.get("ok") else result["errno"]
            call = f"{row.op}({', '.join(self.short(a) for a in case['args'])}) as {user}"
            if got not in row.expect:
                self.that(False, row.what, row.rule, f"{call}: expected {'/'.join(row.expect)}, got {got}")
            elif got == "ok" and row.value is not None:
                value = result["value"]
                good = False
                try:
                    good = bool(row.value(value))
                except Exception as exc:  # noqa: BLE001
                    value = f"{value!r} ({type(exc).__name__}: {exc})"
                self.that(good, row.what, row.rule, f"{call}: expected {row.shows or 'a different value'}, "
                                                      f"got {self.short(value)}")
            else:
                self.that(True, row.what, row.rule)
        return results

    def verify(self) -> None:
        total = self.passed + len(self.failures)
        self.properties.append(("posix_cases", (self.name, self.passed, total)))
        if self.failures:
            lines = "\n".join(f"  - {line}" for line in self.failures)
            raise AssertionError(f"{len(self.failures)} of {total} POSIX cases failed "
                                 f"({self.passed} of {total} passed):\n{lines}")


@pytest.fixture
def conformance(request: pytest.FixtureRequest) -> Conformance:
    return Conformance(request.node.name, request.node.user_properties)


# --- timestamps -------------------------------------------------------------------------------


def next_second() -> int:
    """Sleep into the next wall-clock second (plus a margin) and return it: anything stamped
    after this is at least one whole second later than anything stamped before."""
    now = time.time()
    target = math.floor(now) + 1
    time.sleep(target - now + 0.02)
    return target


def seconds(ns: int) -> int:
    return ns // 1_000_000_000
