"""The write side against a model, with crashes (hypothesis stateful testing, in process).

A RuleBasedStateMachine drives the filesystem core over MemoryStore, a daemon that lives
across steps on its own trio loop: files are created, opened (with or without O_TRUNC),
written at random offsets, ftruncated, truncated by path, chmodded, renamed and unlinked,
closed, fsynced, or left open. At any step the daemon may crash: its nursery is cancelled,
nothing is flushed, every descriptor is lost. The next daemon, on the same cache directory
and bucket, recovers what the last one journaled; after a `sync` the bucket must hold
exactly what was acknowledged (close, fsync, rename, truncate, ftruncate, a metadata
change). Operations here are atomic, so nothing is in flight at a crash. Hypothesis shrinks
a failure to a minimal sequence of steps.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from cosfs.config import FsConfig
from cosfs.cos.memory import MemoryStore
from cosfs.filesystem import Caller, CosFilesystem
from cosfs.inodes import ROOT_INO

ME = Caller(0, 0, 0o022)
MiB = 1024 * 1024
names = st.sampled_from(["a", "b", "c"])
chunks = st.one_of(st.binary(min_size=1, max_size=40),
                   st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255), st.integers(1, 3 * MiB)))
offsets = st.one_of(st.integers(0, 100), st.sampled_from([MiB - 1, 2 * MiB + 5]))
sizes = st.one_of(st.integers(0, 100), st.sampled_from([MiB, 3 * MiB]))


class Daemon:
    """The core on a trio loop of its own thread, alive between steps until it crashes."""

    def __init__(self, store: MemoryStore, cache_dir: Path, delay_s: float) -> None:
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.fs: CosFilesystem | None = None

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._token = trio.lowlevel.current_trio_token()
                config = FsConfig(write_back_delay_s=delay_s, part_size_bytes=MiB,
                                  multipart_threshold_bytes=2 * MiB, stat_ttl_s=0.0, negative_ttl_s=0.0)
                self.fs = CosFilesystem(store, config, cache_dir)
                try:
                    await self.fs.start(nursery)
                    self._ready.set()
                    await trio.sleep_forever()
                finally:
                    self.fs.close()  # what the process's end would release

        def thread() -> None:
            try:
                trio.run(main)
            except BaseException as exc:  # a background task killed the daemon: the test fails
                self._error = exc
            finally:
                self._ready.set()

        self._thread = threading.Thread(target=thread, daemon=True)
        self._thread.start()
        self._ready.wait()
        self.check()

    def check(self) -> None:
        if self._error is not None:
            raise AssertionError(f"the daemon died: {self._error!r}") from self._error

    def run(self, step):
        """Run `await step(fs)` on the daemon's loop and return its result."""
        self.check()
        return trio.from_thread.run(step, self.fs, trio_token=self._token)

    def crash(self) -> None:
        trio.from_thread.run_sync(self._nursery.cancel_scope.cancel, trio_token=self._token)
        self._thread.join()
        self.check()


class WriteModel(RuleBasedStateMachine):
    delay_s = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory(prefix="cosfs-model-")
        self.store = MemoryStore()
        self.daemon = Daemon(self.store, Path(self.tmp.name) / "cache", self.delay_s)
        self.acked: dict[str, bytes] = {}  # what the bucket must hold after a crash and a sync
        self.live: dict[str, bytes] = {}  # what each name holds now
        self.handles: dict[str, int] = {}  # name -> the descriptor of its one writer

    def teardown(self) -> None:
        try:
            self.crash_and_check()
        finally:
            self.tmp.cleanup()

    def run(self, step):
        return self.daemon.run(step)

    def pick(self, data, pool) -> str:
        return data.draw(st.sampled_from(sorted(pool)))

    def acknowledge(self, name: str) -> None:
        self.acked[name] = self.live[name]

    @initialize(first=chunks, second=chunks)
    def two_acknowledged_files(self, first, second):
        """Most sequences act on files that exist: start with two, closed."""
        for name, chunk in (("a", first), ("b", second)):
            self.create(name, chunk)
            fh = self.handles.pop(name)

            async def step(fs, fh=fh):  # bound now, though self.run() calls it in this iteration
                await fs.flush(fh)
                fs.release(fh)

            self.run(step)
            self.acknowledge(name)

    # --- descriptors -----------------------------------------------------------------------

    @rule(name=names, chunk=chunks)
    def create(self, name, chunk):
        if name in self.live:
            return

        async def step(fs):
            opened, _ = await fs.create(ROOT_INO, name, 0o644, ME)
            await fs.write(opened.fh, 0, chunk)
            return opened.fh

        self.handles[name] = self.run(step)
        self.live[name] = chunk

    @precondition(lambda self: set(self.live) - set(self.handles))
    @rule(data=st.data(), truncate=st.booleans())
    def open(self, data, truncate):
        name = self.pick(data, set(self.live) - set(self.handles))

        async def step(fs):
            return (await fs.open((await fs.lookup(ROOT_INO, name)).ino, write=True, truncate=truncate)).fh

        self.handles[name] = self.run(step)
        if truncate:
            self.live[name] = b""

    @precondition(lambda self: self.handles)
    @rule(data=st.data(), offset=offsets, chunk=chunks)
    def write(self, data, offset, chunk):
        name = self.pick(data, self.handles)
        fh = self.handles[name]

        async def step(fs):
            await fs.write(fh, offset, chunk)

        self.run(step)
        old = self.live[name]
        new = bytearray(old + bytes(max(0, offset - len(old))))
        new[offset:offset + len(chunk)] = chunk
        self.live[name] = bytes(new)

    @precondition(lambda self: self.handles)
    @rule(data=st.data(), how=st.sampled_from(["close", "fsync", "ftruncate"]), size=sizes)
    def acknowledge_through_descriptor(self, data, how, size):
        name = self.pick(data, self.handles)
        fh = self.handles[name]

        async def step(fs):
            if how == "close":
                await fs.flush(fh)
                fs.release(fh)
            elif how == "fsync":
                await fs.fsync(fh)
            else:
                await fs.setattr(fs.files.get(fh).ino, size=size, fh=fh)

        self.run(step)
        if how == "close":
            del self.handles[name]
        if how == "ftruncate":
            old = self.live[name]
            self.live[name] = (old + bytes(max(0, size - len(old))))[:size]
        self.acknowledge(name)

    # --- by path ---------------------------------------------------------------------------

    @precondition(lambda self: self.live)
    @rule(data=st.data(), size=sizes)
    def truncate(self, data, size):
        name = self.pick(data, self.live)

        async def step(fs):
            await fs.setattr((await fs.lookup(ROOT_INO, name)).ino, size=size)

        self.run(step)
        old = self.live[name]
        self.live[name] = (old + bytes(max(0, size - len(old))))[:size]
        self.acknowledge(name)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), mode=st.sampled_from([0o600, 0o644, 0o755]))
    def chmod(self, data, mode):
        name = self.pick(data, self.live)

        async def step(fs):
            await fs.setattr((await fs.lookup(ROOT_INO, name)).ino, mode=mode)

        self.run(step)
        if name in self.handles or name not in self.acked or self.acked[name] != self.live[name]:
            self.acknowledge(name)  # a staged file: its metadata change acknowledges it whole

    @precondition(lambda self: self.live)
    @rule(data=st.data(), new_name=names)
    def rename(self, data, new_name):
        name = self.pick(data, self.live)
        if name == new_name or new_name in self.handles:
            return

        async def step(fs):
            await fs.rename(ROOT_INO, name, ROOT_INO, new_name)

        self.run(step)
        self.live[new_name] = self.live.pop(name)
        self.acked.pop(name, None)
        self.acknowledge(new_name)
        if name in self.handles:
            self.handles[new_name] = self.handles.pop(name)

    @precondition(lambda self: set(self.live) - set(self.handles))
    @rule(data=st.data())
    def unlink(self, data):
        name = self.pick(data, set(self.live) - set(self.handles))

        async def step(fs):
            await fs.unlink(ROOT_INO, name)

        self.run(step)
        del self.live[name]
        self.acked.pop(name, None)

    # --- crashes ---------------------------------------------------------------------------

    @rule()
    def crash_and_check(self):
        """The daemon dies; the next one recovers and syncs: the bucket is what was acknowledged."""
        self.daemon.crash()
        self.daemon = Daemon(self.store, Path(self.tmp.name) / "cache", self.delay_s)
        self.handles.clear()

        async def step(fs):
            with trio.fail_after(30):
                while len(fs.staging):
                    fs.sync_now()
                    await trio.sleep(0.01)
            return {key: (await self.store.get_object(key))[1] for key in self.store.keys()}

        found = self.run(step)
        assert found == self.acked, ({k: len(v) for k, v in found.items()}, {k: len(v) for k, v in self.acked.items()})
        assert self.store.pending_uploads() == 0
        self.live = dict(self.acked)


SETTINGS = settings(max_examples=int(os.environ.get("COSFS_MODEL_EXAMPLES", "40")), stateful_step_count=25,
                    deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class DurableClose(WriteModel):
    delay_s = 0.0


class DelayedCommit(WriteModel):
    delay_s = 3600.0


TestDurableClose = DurableClose.TestCase
TestDurableClose.settings = SETTINGS
TestDelayedCommit = DelayedCommit.TestCase
TestDelayedCommit.settings = SETTINGS
