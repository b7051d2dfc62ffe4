"""Crash points: named steps of the write-back protocol where a test can kill the daemon.

`COSFS_CRASH_AT=NAME[:N]` in a mount's environment makes the daemon SIGKILL itself the Nth
time (default: first) it passes step NAME, as a power cut or the OOM killer would: nothing
is flushed, no handler runs. The crash-point harness (tests/trust/test_crash_points.py) runs a
scenario once per step and checks that the next mount recovers every acknowledged state and
shows nothing that was never written. Unset, `reached` costs one comparison.

Steps (where, and what is on disk when it fires):
- journal-saved     write-back: an acknowledged state (its data and its record) is durable
- before-upload     write-back: the base checked, nothing of this attempt sent
- uploaded          write-back: the object is in COS, the record not yet dropped
- part-uploaded     uploader: one part of a multipart upload (streamed or at commit) is in COS
- file-copied       rename of a file: the copy exists, the source is not yet deleted
- rename-journaled  directory rename: journal entry written, nothing copied
- rename-walked     directory rename: every key moved, staged files not yet re-keyed
"""

from __future__ import annotations

import os
import signal

STEPS = frozenset({"journal-saved", "before-upload", "uploaded", "part-uploaded", "file-copied", "rename-journaled",
                   "rename-walked"})

_armed: tuple[str, int] | None = None
_passed = 0


def arm(spec: str | None) -> None:
    """Arm from `NAME[:N]` (None or empty: disarmed)."""
    global _armed, _passed
    _passed = 0
    if not spec:
        _armed = None
        return
    name, _, count = spec.partition(":")
    if name not in STEPS:
        raise ValueError(f"unknown crash point {name!r} (known: {', '.join(sorted(STEPS))})")
    _armed = (name, int(count or 1))


def reached(name: str) -> None:
    global _passed
    if _armed is None or _armed[0] != name:
        return
    _passed += 1
    if _passed == _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)
