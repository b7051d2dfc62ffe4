"""WriteBack: the owner of commits. It decides when and how a staged file becomes an object,
and keeps every rule that makes that safe in one place.

Invariants (the protocol is written out in docs/design.md, "Commits and renames"):
- Every change of a key's staged state or of its object (staged write, truncate, re-key,
  commit, discard, delete, tree change) happens while the changing task holds that key in
  `locks`. A directory rename raises a barrier over both prefixes: from then until it ends
  no other task holds or takes a key under them, so no commit, write or staging change can
  interleave with its key walk (the rename itself works through the `*_locked` methods).
- An acknowledgement (close with `write_back_delay`, a truncation of a journaled file, a
  re-key) is given only after the journal that lets the next mount finish it is durable.
- A commit uploads only over the version it started from: a staged file with a base object
  is committed only while COS still holds that version (HEAD before, If-Match on every
  server-side copy). Otherwise it is a conflict: the local data is kept in
  `<cache_dir>/conflicts/`, named in the log, the commit fails with `Conflict`, and it is
  never retried.
- Transient commit failures keep the data staged and are retried with backoff.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from cosfs import crashpoints
from cosfs.blocks import ObjectRef
from cosfs.cos.store import ObjectStore, PutResult
from cosfs.durable import private_dir, write_json_durably
from cosfs.errors import CacheFull, Conflict, CosfsError, NotFound, Stale, TransientError
from cosfs.renames import RenameJournal
from cosfs.staging import ORPHAN_PREFIX, DirtyFile, StagingArea
from cosfs.uploader import Uploader

log = logging.getLogger(__name__)


# x-cos-meta-cosfs-commit: a random token per commit attempt (see commit_locked).
COMMIT_META = "cosfs-commit"

Committed = Callable[[str, DirtyFile, PutResult], None]


class KeyLocks:
    """Per-key mutual exclusion, and barriers over prefixes for directory renames.

    Invariants: at most one task holds a key; while a barrier over prefix P is up, no task
    but the barrier's owner holds a key under P (takers wait for the barrier to fall, and
    holders from before it went up have finished when `bar` returns).
    """

    def __init__(self) -> None:
        self._locks: dict[str, trio.Lock] = {}
        self._barriers: dict[str, trio.Event] = {}

    def _barrier_over(self, key: str) -> trio.Event | None:
        for prefix, lifted in self._barriers.items():
            if key.startswith(prefix):
                return lifted
        return None

    @contextlib.asynccontextmanager
    async def hold(self, *keys: str) -> AsyncIterator[None]:
        """Hold every key (taken in sorted order, so two holders never deadlock)."""
        held: list[str] = []
        try:
            for key in sorted(set(keys)):
                await self._take(key)
                held.append(key)
            yield
        finally:
            for key in reversed(held):
                self._give(key)

    async def _take(self, key: str) -> None:
        while True:
            barrier = self._barrier_over(key)
            if barrier is not None:
                await barrier.wait()
                continue
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = trio.Lock()
            await lock.acquire()
            if self._barrier_over(key) is None:
                return
            self._give(key)  # a barrier went up while we waited: let the rename go first

    def _give(self, key: str) -> None:
        lock = self._locks[key]
        lock.release()
        if not lock.locked() and lock.statistics().tasks_waiting == 0:
            del self._locks[key]

    def held(self, key: str) -> bool:
        lock = self._locks.get(key)
        return lock is not None and lock.locked()

    @contextlib.asynccontextmanager
    async def bar(self, *prefixes: str) -> AsyncIterator[None]:
        """Keep everyone else off keys under `prefixes` for the duration."""
        while True:
            overlapping = [event for prefix, event in self._barriers.items()
                           if any(prefix.startswith(p) or p.startswith(prefix) for p in prefixes)]
            if not overlapping:
                break
            await overlapping[0].wait()
        lifted = trio.Event()
        for prefix in prefixes:
            self._barriers[prefix] = lifted
        try:
            while True:  # wait for the holders that were already inside
                busy = [lock for key, lock in self._locks.items()
                        if lock.locked() and any(key.startswith(p) for p in prefixes)]
                if not busy:
                    break
                async with busy[0]:
                    pass
            yield
        finally:
            for prefix in prefixes:
                del self._barriers[prefix]
            lifted.set()


class WriteBack:
    """Owner of commits, the key locks, the journals' acknowledgement points, conflicts and
    crash recovery (see the module docstring for the invariants)."""

    def __init__(self, store: ObjectStore, staging: StagingArea, uploader: Uploader, renames: RenameJournal,
                 cache_dir: Path, *, write_back_delay_s: float, parallel: int, on_committed: Committed,
                 on_conflict: Callable[[str], None]) -> None:
        self._store = store
        self.staging = staging
        self.uploader = uploader
        self.renames = renames
        self.locks = KeyLocks()
        self._conflicts_dir = cache_dir / "conflicts"
        self._delay_s = write_back_delay_s
        self._parallel = parallel
        self._on_committed = on_committed
        self._on_conflict = on_conflict
        self._nursery: trio.Nursery | None = None
        self._scheduled: set[str] = set()
        self.failed_uploads = 0
        self.committed_uploads = 0
        self.conflicts = 0

    async def start(self, nursery: trio.Nursery) -> None:
        """Finish what a crash interrupted: journaled renames first (staged files below an
        old prefix follow their directory), then journaled uploads."""
        self._nursery = nursery
        self.staging.recover()
        for old_prefix, new_prefix in await self.renames.recover():
            for dirty in self.staging.under(old_prefix):
                self.staging.rekey(dirty.key, new_prefix + dirty.key[len(old_prefix):])
        for dirty in self.staging.files():
            if dirty.key.startswith(ORPHAN_PREFIX):
                self.staging.drop(dirty.key)  # a nameless file's data dies with its descriptors
                continue
            # The commit resumes the newest interrupted multipart upload of ours and aborts
            # the older ones.
            log.warning("finishing the upload of %s journaled by an earlier mount", dirty.key)
            self.schedule(dirty.key, delay_s=0)

    # --- changes ---------------------------------------------------------------------------

    def discard_locked(self, key: str) -> None:
        """Forget a key's staged changes (and any upload streaming them). Holds: key."""
        dirty = self.staging.get(key)
        if dirty is not None:
            self.uploader.abandon(dirty)
            self.staging.drop(key)

    def truncate_locked(self, dirty: DirtyFile, size: int) -> None:
        """Change a staged file's size; journaled first when the file has acknowledged
        state, so a crash can never replay the old size over truncated data. Holds: key."""
        old_size = dirty.size
        self.staging.truncate(dirty, size)
        self.uploader.after_write(dirty, min(old_size, size), max(old_size, size))

    async def acknowledge(self, key: str) -> None:
        """close(): commit now (default), or journal now and commit after the delay."""
        dirty = self.staging.get(key)
        if dirty is None or dirty.clean:
            return
        if self._delay_s > 0:
            async with self.locks.hold(key):
                dirty = self.staging.get(key)
                if dirty is not None and not dirty.clean:
                    self.staging.save(dirty)
            self.schedule(key, self._delay_s)
        else:
            await self.commit(key)

    # --- commits ---------------------------------------------------------------------------

    async def commit(self, key: str) -> None:
        """Upload the key's staged file now and wait (fsync, close, unmount)."""
        async with self.locks.hold(key):
            await self.commit_locked(key)

    async def commit_locked(self, key: str) -> None:
        """Holds: key (or a barrier over it)."""
        dirty = self.staging.get(key)
        if dirty is None or dirty.clean:
            return
        if key.startswith(ORPHAN_PREFIX):
            dirty.committed_generation = dirty.generation  # nameless: nothing to upload
            return
        try:
            await self._check_base(dirty)
            # COSFS's mtime header carries the file's mtime: the last write, or a later
            # utimens. The commit token, journaled before the upload and stored with the
            # object, lets the base check recognise an upload of ours that landed although
            # the mount did not see it finish (a crash, a lost reply).
            user_meta = dict(dirty.options.user_meta)
            user_meta["mtime"] = str(dirty.mtime_ns // 1_000_000_000)
            stored_ctime = user_meta.get("ctime", "")
            ctime = int(stored_ctime) if stored_ctime.isdigit() else 0
            user_meta["ctime"] = str(max(dirty.mtime_ns // 1_000_000_000, ctime))
            user_meta[COMMIT_META] = secrets.token_hex(8)
            dirty.options = dataclasses.replace(dirty.options, user_meta=user_meta)
            if self._journal_before_upload(dirty):
                self.staging.save(dirty)
            crashpoints.reached("before-upload")
            result = await self.uploader.commit(dirty)
            crashpoints.reached("uploaded")
        except Stale as exc:
            if dirty.base is None:
                raise self._failed(dirty, exc) from exc
            raise self._conflict(dirty, str(exc)) from exc
        except (Conflict, CacheFull):
            raise  # kept aside, or not journaled: the caller gets ENOSPC, no upload was tried
        except CosfsError as exc:
            raise self._failed(dirty, exc) from exc
        self.staging.drop(key)
        self.committed_uploads += 1
        self._on_committed(key, dirty, result)

    def _journal_before_upload(self, dirty: DirtyFile) -> bool:
        """Whether the record goes to disk before the upload. Not for a new file that was
        never acknowledged (no record yet) and goes up in one PUT: nothing was promised
        before that PUT returns, it has no base for the commit token to be checked against,
        and no multipart upload can be left behind. Its caller waits for the PUT; if the PUT
        fails, `_failed` journals it before the error is reported (small-file creates: one
        record and three fsyncs fewer per file)."""
        return dirty.journaled or dirty.base is not None or not self.uploader.single_put(dirty)

    def _failed(self, dirty: DirtyFile, exc: CosfsError) -> TransientError:
        """A commit failed: the data stays staged, journaled (so the retry survives a crash)."""
        if not dirty.journaled:
            try:
                self.staging.save(dirty)
            except CosfsError as journal_exc:
                log.error("%s stays staged but could not be journaled: %s", dirty.key, journal_exc)
        dirty.last_error = str(exc)
        self.failed_uploads += 1
        log.error("upload of %s failed; its data stays staged in the cache directory: %s", dirty.key, exc)
        return TransientError(f"upload of {dirty.key} failed: {exc}")

    async def _check_base(self, dirty: DirtyFile) -> None:
        """The object must still be the version this file's unchanged bytes come from, or
        one our own earlier commit attempt of this file made from it (then it becomes the
        base: its bytes outside what is staged are the same)."""
        base = dirty.base
        if base is None or dirty.base_limit == 0:
            return
        try:
            head = await self._store.head_object(base.key)
        except NotFound:
            raise self._conflict(dirty, "the object was deleted by someone else") from None
        if head.etag == base.etag:
            return
        token = dirty.options.user_meta.get(COMMIT_META)
        if token is not None and head.user_meta.get(COMMIT_META) == token:
            dirty.base = ObjectRef(base.key, head.etag, head.size_bytes)
            return
        raise self._conflict(dirty, f"the object was replaced by someone else (ETag {head.etag}, "
                                    f"this mount started from {base.etag})")

    def _conflict(self, dirty: DirtyFile, why: str) -> Conflict:
        """Keep the local data where nothing will overwrite or upload it, and stop."""
        self.uploader.abandon(dirty)
        private_dir(self._conflicts_dir)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", dirty.key.rsplit("/", 1)[-1])[:100] or "file"
        target = f"{self._conflicts_dir}/{stamp}-{os.getpid()}-{safe}"
        os.replace(dirty.data_path, target + ".data")
        os.truncate(target + ".data", dirty.size)
        write_json_durably(Path(target + ".json"), {
            "key": dirty.key,
            "size": dirty.size,
            "written": dirty.written.to_list(),
            "base": None if dirty.base is None else [dirty.base.key, dirty.base.etag, dirty.base.size_bytes],
            "complete": dirty.written.covers(0, dirty.size) or dirty.base_limit == 0,
            "why": why,
        })
        self.staging.drop(dirty.key)
        self.conflicts += 1
        self._on_conflict(dirty.key)
        log.error("conflict on %s: %s; the changes made through this mount were NOT uploaded and are kept in "
                  "%s.data (written ranges in %s.json)", dirty.key, why, target, target)
        return Conflict(f"{dirty.key} changed in COS since this mount read it; local changes kept in {target}.data")

    def schedule(self, key: str, delay_s: float) -> None:
        if key in self._scheduled or self._nursery is None:
            return
        self._scheduled.add(key)
        self._nursery.start_soon(self._delayed_commit, key, delay_s, name=f"upload {key}")

    def reschedule_all(self) -> None:
        """Start uploading every pending change at once (`cosfs sync`)."""
        for dirty in self.staging.files():
            self._scheduled.discard(dirty.key)
            self.schedule(dirty.key, delay_s=0)

    async def _delayed_commit(self, key: str, delay_s: float) -> None:
        attempt = 0
        try:
            while True:
                await trio.sleep(delay_s)
                try:
                    await self.commit(key)
                    return
                except Conflict:
                    return  # kept aside and logged: retrying cannot help
                except CosfsError:
                    attempt += 1
                    delay_s = min(300.0, 5.0 * 2**attempt)
                    log.warning("will retry the upload of %s in %.0f s", key, delay_s)
        finally:
            self._scheduled.discard(key)

    async def drain(self) -> int:
        """Commit every staged file (unmount, SIGTERM). Returns how many failed."""
        failed = 0
        for dirty in self.staging.files():
            try:
                await self.commit(dirty.key)
            except CosfsError:
                failed += 1
        return failed

    # --- directory renames -----------------------------------------------------------------

    async def rename_prefix(self, old_prefix: str, new_prefix: str, moved: Callable[[], None]) -> None:
        """Move every key under `old_prefix` (objects and staged files) to `new_prefix`.

        Under a barrier over both prefixes: staged files with a base object are committed
        first (so the key walk copies their bytes), the walk copies each listed key with
        If-Match on its listed ETag and deletes only what it copied, and the staged files
        still below the old prefix (never committed) are re-keyed to the new one. `moved`
        (the tree's names and handles following) runs before the barrier falls."""
        async with self.locks.bar(old_prefix, new_prefix):
            for dirty in self.staging.under(old_prefix):
                if dirty.base is not None:
                    await self.commit_locked(dirty.key)
            await self.renames.rename_prefix(old_prefix, new_prefix, self._parallel,
                                             after_walk=lambda: self._rekey_below(old_prefix, new_prefix))
            moved()

    def _rekey_below(self, old_prefix: str, new_prefix: str) -> None:
        for dirty in self.staging.under(old_prefix):
            self.uploader.abandon(dirty)
            new_key = new_prefix + dirty.key[len(old_prefix):]
            self.staging.rekey(dirty.key, new_key)
            if dirty.journaled:  # acknowledged already: its commit was scheduled under the old key
                self.schedule(new_key, self._delay_s)

    def orphan_key(self, ino: int) -> str:
        return f"{ORPHAN_PREFIX}{ino}"

    def conflict_files(self) -> list[Path]:
        if not self._conflicts_dir.exists():
            return []
        return sorted(self._conflicts_dir.glob("*.data"))

    def describe_conflicts(self) -> list[dict]:
        described = []
        for path in self.conflict_files():
            try:
                record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record = {}
            described.append({"key": record.get("key", ""), "kept_in": str(path)})
        return described
