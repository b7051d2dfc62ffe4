"""The crash-point harness: a scenario of acknowledged changes is run once per step of the
write-back protocol with the daemon killed (SIGKILL, from inside: cosfs/crashpoints.py) the
first time it passes that step; the next mount on the same cache directory must show every
acknowledged state, and nothing that was never written.

The scenario records what each operation acknowledged. A crash stops it inside one
operation: the bucket may then hold the state before that operation or after it (a rename of
a file may also leave both names, its copy made and its source not yet deleted), never
anything else."""

from __future__ import annotations

import os
import subprocess

import pytest

from cosfs.crashpoints import STEPS
from tests.fuse.conftest import FUSERMOUNT, is_mounted
from tests.write.barriers import sync, wait_until
from tests.write.bucket import Bucket

MiB = 1024 * 1024
TENTATIVE = "\0tentative"  # a marker in a state, never an object key
BIG = bytes(range(256)) * (80 * 1024)  # 20 MiB: a multipart upload


def scenario(root, states: list[dict[str, bytes]]) -> None:
    """Apply the operations; after each one that returned, append the bucket state it
    acknowledges. Stops at the first failure (the daemon died)."""
    state: dict[str, bytes] = {}

    def done(tentative: bool = False, **changes) -> None:
        """`tentative`: a change that is durable only if the mount journals it (a
        truncation through an open descriptor, before close, with write_back_delay)."""
        for key, value in changes.items():
            key = key.replace("__", "/")
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        states.append({**state, TENTATIVE: tentative})

    def write(name: str, data: bytes) -> None:
        with open(root / name, "wb") as handle:
            handle.write(data)

    try:
        write("a.txt", b"A1")
        done(**{"a.txt": b"A1"})
        write("b.txt", b"B1")
        done(**{"b.txt": b"B1"})
        os.rename(root / "b.txt", root / "c.txt")
        done(**{"b.txt": None, "c.txt": b"B1"})
        with open(root / "a.txt", "r+b") as handle:  # truncation of a journaled file
            handle.truncate(0)
            done(tentative=True, **{"a.txt": b""})
            handle.write(b"A2-longer")
        done(**{"a.txt": b"A2-longer"})
        os.truncate(root / "a.txt", 2)
        done(**{"a.txt": b"A2"})
        fd = os.open(root / "a.txt", os.O_RDONLY)
        try:
            os.fsync(fd)  # committed now: the rename below copies it server-side
        finally:
            os.close(fd)
        os.rename(root / "a.txt", root / "f.txt")
        done(**{"a.txt": None, "f.txt": b"A2"})
        os.mkdir(root / "d")
        done(**{"d/": b""})
        write("d/e.txt", b"E1")
        done(**{"d__e.txt": b"E1"})
        os.rename(root / "d", root / "d2")
        done(**{"d/": None, "d__e.txt": None, "d2/": b"", "d2__e.txt": b"E1"})
        write("big.bin", BIG)
        done(**{"big.bin": BIG})
    except OSError:
        return


def allowed_states(states: list[dict], full: list[dict], *, both_names: bool) -> list[dict[str, bytes]]:
    """The last firm state, the tentative ones after it, the state of the operation the crash
    interrupted, and with `both_names` (a file rename killed between its copy and its delete)
    the union of the states before and after it."""
    firm = len(states)
    while firm and states[firm - 1][TENTATIVE]:
        firm -= 1
    chain = [states[firm - 1] if firm else {TENTATIVE: False}] + states[firm:]
    if len(states) < len(full):
        interrupted = full[len(states)]
        chain.append(interrupted)
        if both_names:
            chain.append({**(states[-1] if states else {}), **interrupted})
    return [{k: v for k, v in state.items() if k != TENTATIVE} for state in chain]


def objects(bucket: Bucket) -> dict[str, bytes]:
    return {key: bucket.get(key) for key in bucket.keys()}


@pytest.fixture(scope="module")
def full_states(tmp_path_factory) -> list[dict[str, bytes]]:
    """The scenario's acknowledged states, from a local directory (no crash)."""
    states: list[dict[str, bytes]] = []
    scenario(tmp_path_factory.mktemp("local"), states)
    return states


CASES = [(step, "0") for step in sorted(STEPS)] + [(step, "3600") for step in sorted(STEPS)]
# Later passes of the busiest steps: the crash lands further into the scenario.
CASES += [("before-upload:5", "0"), ("uploaded:4", "0"), ("journal-saved:6", "3600"), ("uploaded:3", "3600")]


@pytest.mark.parametrize(("step", "delay"), CASES)
def test_every_acknowledged_state_survives_a_crash_at(step, delay, cos_server, mount_factory, expect_log,
                                                      full_states, monkeypatch):
    bucket = Bucket(cos_server)
    monkeypatch.setenv("COSFS_CRASH_AT", step)
    mounted = mount_factory(cos_server, f"write_back_delay={delay}", name="crashing")
    monkeypatch.delenv("COSFS_CRASH_AT")
    states: list[dict[str, bytes]] = []
    scenario(mounted.path, states)
    if len(states) == len(full_states):
        # The step was not reached while the scenario ran: reach it while the work drains.
        try:
            sync(mounted.path, timeout_s=60)
        except OSError:
            pass
    crashed = mounted.process.poll() is not None or wait_until(
        lambda: mounted.process.poll() is not None, "the daemon to die at " + step, timeout_s=60)
    assert crashed
    subprocess.run([FUSERMOUNT, "-uz", str(mounted.path)], capture_output=True)
    assert not is_mounted(mounted.path)
    expect_log(r"^WARNING cosfs\.write\.owner: finishing the upload of .* journaled by an earlier mount$",
               required=False, why="recovery of what the killed daemon had journaled")
    expect_log(r"^WARNING cosfs\.write\.renames: finishing the rename of .* interrupted by a crash$",
               required=False, why="recovery of a directory rename the killed daemon had journaled")
    again = mount_factory(cos_server, f"write_back_delay={delay}", name="crashing")
    sync(again.path)
    final = objects(bucket)
    assert final in allowed_states(states, full_states, both_names=step == "file-copied"), (
        f"crash at {step} after {len(states)} operations: bucket has {({k: v[:16] for k, v in final.items()})}")
    assert not list((again.cache_dir / cos_server.bucket / "conflicts").glob("*"))
