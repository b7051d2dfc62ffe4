"""A randomized crash soak of the write side, against a model of what was acknowledged.

One round: a fresh mount of a `cosfs serve` bucket; WRITERS threads each run random
operations on names of their own (`w<i>/f0`..): creates, appends, pwrites, ftruncates,
truncates by path, renames, unlinks, fsyncs and streaming-size writes. The daemon is
SIGKILLed at a random moment (or kills itself at a crash point, cosfs/crashpoints.py). The
next mount on the same cache directory finishes what was journaled (`cosfs sync`), and the
bucket must hold, for each writer, its acknowledged state, or the state of the one step it
had in flight (which may or may not have taken effect). Nothing else: not a torn write, not
a state the writer never acknowledged, not a lost file.

The model's acknowledgement points are the calls that return a durability promise:
close() (a file opened for writing), fsync(), rename(), truncate()/ftruncate() and unlink().
A write(2) that returned promises nothing until one of them. Each writer's steps end at an
acknowledgement point; the step in flight at the crash is the one that had not returned.
A file rename is copy + delete (README, Semantics), so a rename in flight may leave both
names with the same bytes; an open with O_TRUNC in flight may leave the file empty (as s3fs
does).

Used by tests/write/test_crash_soak.py (a few rounds per durability mode) and by
bench/crash_soak.py (`--rounds N`). Every round is seeded; a divergence names its seed.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.fuse.conftest import FUSERMOUNT, is_mounted
from tests.write.barriers import sync

MiB = 1024 * 1024
WRITERS = 3
NAMES = 4  # files per writer
BIG = 24 * MiB  # a streaming-size write (multipart while writing)
STOPPED = (errno.ENOTCONN, errno.EIO, errno.ECONNABORTED, errno.ENOENT)


@dataclasses.dataclass
class Step:
    """One acknowledged change of a writer's names: `after` maps each key it changes to its
    content (None: absent); `also` lists other states the bucket may show if the step was in
    flight at the crash (besides before and after)."""

    what: str
    after: dict[str, bytes | None]
    also: list[dict[str, bytes | None]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class WriterLog:
    acked: dict[str, bytes | None] = dataclasses.field(default_factory=dict)
    in_flight: Step | None = None
    steps_done: int = 0
    error: str = ""


class Writer(threading.Thread):
    """Random steps on `root / w<index>` until the mount dies or `stop` is set."""

    def __init__(self, root: Path, prefix: str, index: int, seed: int, stop: threading.Event,
                 log: WriterLog) -> None:
        super().__init__(name=f"soak-writer-{index}", daemon=True)
        self.dir = root / prefix / f"w{index}"
        self.prefix = f"{prefix}/w{index}/"
        self.rng = random.Random(seed)
        self.stop = stop
        self.log = log
        self.content: dict[str, bytes] = {}  # what each name holds now, as this writer knows it

    def key(self, name: str) -> str:
        return self.prefix + name

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.one_step()
        except OSError as exc:
            if exc.errno not in STOPPED:
                self.log.error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug of the soak itself: reported, never swallowed
            self.log.error = f"{type(exc).__name__}: {exc}"

    def begin(self, step: Step) -> None:
        self.log.in_flight = step

    def done(self, step: Step) -> None:
        for key, value in step.after.items():
            self.log.acked[key] = value
        self.log.in_flight = None
        self.log.steps_done += 1

    def data(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def one_step(self) -> None:
        rng = self.rng
        names = [f"f{i}" for i in range(NAMES)]
        existing = [n for n in names if n in self.content]
        action = rng.choice(["create", "create", "append", "pwrite", "ftruncate", "truncate", "rename",
                             "unlink", "fsync", "big"] if existing else ["create", "big"])
        name = rng.choice(existing if action not in ("create", "big") else names)
        path = self.dir / name
        key = self.key(name)
        old = self.content.get(name)
        if action in ("create", "big"):
            data = self.data(BIG if action == "big" else rng.choice([0, 1, 100, 4096, 70_000, 1 * MiB + 7]))
            step = Step(action, {key: data}, also=[{key: b""}] if old is not None else [])
            self.begin(step)
            with open(path, "wb") as handle:
                for at in range(0, len(data), MiB):
                    handle.write(data[at:at + MiB])
            self.content[name] = data
            self.done(step)
        elif action == "append":
            extra = self.data(rng.choice([1, 50, 5000, 300_000]))
            step = Step(action, {key: old + extra})
            self.begin(step)
            with open(path, "ab") as handle:
                handle.write(extra)
            self.content[name] = old + extra
            self.done(step)
        elif action == "pwrite":
            offset = rng.randrange(0, len(old) + 3000)
            extra = self.data(rng.choice([1, 700, 9000]))
            new = bytearray(old)
            if offset > len(new):
                new += bytes(offset - len(new))
            new[offset:offset + len(extra)] = extra
            step = Step(action, {key: bytes(new)})
            self.begin(step)
            fd = os.open(path, os.O_RDWR)
            try:
                os.pwrite(fd, extra, offset)
            finally:
                os.close(fd)
            self.content[name] = bytes(new)
            self.done(step)
        elif action == "ftruncate":
            # ftruncate acknowledges the size; the writes after it are acknowledged at close
            size = rng.randrange(0, len(old) + 5000)
            cut = (old + bytes(max(0, size - len(old))))[:size]
            extra = self.data(rng.choice([0, 10, 4000]))
            first = Step("ftruncate", {key: cut})
            self.begin(first)
            fd = os.open(path, os.O_RDWR)
            try:
                os.ftruncate(fd, size)
                self.content[name] = cut
                self.done(first)
                second = Step("write after ftruncate", {key: cut + extra})
                self.begin(second)
                os.pwrite(fd, extra, size)
            finally:
                os.close(fd)
            self.content[name] = cut + extra
            self.done(second)
        elif action == "truncate":
            size = rng.randrange(0, len(old) + 5000)
            cut = (old + bytes(max(0, size - len(old))))[:size]
            step = Step(action, {key: cut})
            self.begin(step)
            os.truncate(path, size)
            self.content[name] = cut
            self.done(step)
        elif action == "rename":
            target = rng.choice([n for n in names if n != name])
            step = Step(action, {key: None, self.key(target): old},
                        also=[{key: old, self.key(target): old}])  # copy + delete: both names
            self.begin(step)
            os.rename(path, self.dir / target)
            self.content[target] = self.content.pop(name)
            self.done(step)
        elif action == "unlink":
            step = Step(action, {key: None})
            self.begin(step)
            os.unlink(path)
            del self.content[name]
            self.done(step)
        elif action == "fsync":
            # write, fsync (acknowledged), write more, close (acknowledged)
            offset = rng.randrange(0, len(old) + 1)
            extra = self.data(rng.choice([10, 3000, 200_000]))
            middle = old[:offset] + extra + old[offset + len(extra):]
            more = self.data(rng.choice([1, 500]))
            final = middle + more
            first = Step("fsync", {key: middle})
            self.begin(first)
            fd = os.open(path, os.O_RDWR)
            try:
                os.pwrite(fd, extra, offset)
                os.fsync(fd)
                self.content[name] = middle
                self.done(first)
                second = Step("close after fsync", {key: final})
                self.begin(second)
                os.pwrite(fd, more, len(middle))
            finally:
                os.close(fd)
            self.content[name] = final
            self.done(second)


def allowed(log: WriterLog) -> list[dict[str, bytes | None]]:
    """The states of one writer's keys the bucket may show after recovery."""
    before = dict(log.acked)
    states = [before]
    step = log.in_flight
    if step is not None:
        states.append({**before, **step.after})
        states += [{**before, **extra} for extra in step.also]
    return states


def describe(state: dict[str, bytes | None]) -> dict[str, str]:
    return {k: ("absent" if v is None else f"{len(v)} bytes") for k, v in sorted(state.items())}


@dataclasses.dataclass
class RoundResult:
    seed: int
    mode: str
    crash: str
    steps: int
    divergences: list[str]


def run_round(bucket, mount, seed: int, delay: str, *, crash_at: str | None = None) -> RoundResult:
    """One round (see the module docstring), in the bucket folder `r<seed>/`.
    `mount(name, *options, env=...)` mounts the bucket (the same name: the same cache
    directory); `bucket` reads it independently (tests/write/bucket.py)."""
    rng = random.Random(seed)
    name = f"soak{seed}"
    prefix = f"r{seed}"
    env = {"COSFS_CRASH_AT": crash_at} if crash_at else {}
    first = mount(name, f"write_back_delay={delay}", env=env)
    for index in range(WRITERS):
        (first.path / prefix / f"w{index}").mkdir(parents=True)
    stop = threading.Event()
    logs = [WriterLog() for _ in range(WRITERS)]
    writers = [Writer(first.path, prefix, i, seed * 100 + i, stop, logs[i]) for i in range(WRITERS)]
    for writer in writers:
        writer.start()
    killed_by = crash_at or "SIGKILL"
    deadline = time.monotonic() + rng.uniform(0.3, 4.0)
    while time.monotonic() < deadline and first.process.poll() is None:
        time.sleep(0.02)
    if first.process.poll() is None:
        if crash_at:
            killed_by = f"SIGKILL ({crash_at} not reached)"
        first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    stop.set()
    for writer in writers:
        writer.join(timeout=60)
        if writer.is_alive():
            raise AssertionError(f"seed {seed}: a writer is still blocked 60 s after the kill")
    subprocess.run([FUSERMOUNT, "-uz", str(first.path)], capture_output=True)
    assert not is_mounted(first.path)
    errors = [f"writer {i}: {log.error}" for i, log in enumerate(logs) if log.error]
    again = mount(name, f"write_back_delay={delay}", env={})
    sync(again.path, timeout_s=120)
    divergences = list(errors)
    present = set(bucket.keys(prefix + "/"))
    for index, log in enumerate(logs):
        keys = {f"{prefix}/w{index}/f{i}" for i in range(NAMES)}
        shown = {key: (bucket.get(key) if key in present else None) for key in keys}
        options = allowed(log)
        if not any(all(shown[key] == state.get(key) for key in keys) for state in options):
            in_flight = log.in_flight.what if log.in_flight else "nothing"
            divergences.append(
                f"writer {index} ({log.steps_done} steps, in flight: {in_flight}): bucket {describe(shown)}; "
                f"allowed {[describe({k: s.get(k) for k in keys}) for s in options]}")
    expected = {f"{prefix}/"} | {f"{prefix}/w{i}/" for i in range(WRITERS)} | {
        f"{prefix}/w{i}/f{j}" for i in range(WRITERS) for j in range(NAMES)}
    divergences += [f"unexpected object {key}" for key in sorted(present - expected)]
    return RoundResult(seed, f"write_back_delay={delay}", killed_by, sum(log.steps_done for log in logs),
                       divergences)
