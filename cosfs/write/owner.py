"""WriteBack: the one owner of the write side. Every change of a file's bytes, size or object
options, every acknowledgement, commit, rename, unlink and recovery goes through it; the
filesystem core only decides which to call (docs/design.md, "The write-back protocol").

Invariants:
- Every change of a key's staged state, journal record or object happens while the
  changing task holds that key in `locks` (a rename holds both keys; a directory rename
  raises a barrier over both prefixes). A change for a file whose key a rename changed while
  it waited is made under the new key (`_holding` re-reads the key).
- The journal holds acknowledged states only. An acknowledgement point (close and fsync
  that commit or journal, a rename, a truncate, a metadata change of a staged file, a commit
  that failed after the application was told to wait for it) seals the live state: its data
  is fsynced, its record written, and its bytes are never written again (the next change
  copies them). Nothing else writes a record.
- Only acknowledged states are committed by anyone but the application's own close and
  fsync (which commit the live state they acknowledge): delayed commits, `cosfs sync`,
  retries and the next mount upload the sealed state, so a crash can leave in COS only an
  acknowledged state or the one being acknowledged, never bytes written since.
- A commit uploads only over the version its state started from: HEAD before (the object
  must still be the base, or carry the commit token of an earlier attempt of ours), If-Match
  on every server-side copy. Otherwise it is a conflict: the local data is kept in
  `<cache_dir>/conflicts/`, named in the log, the commit fails with `Conflict`, and it is
  never retried.
- Background work (delayed commits, streamed parts, aborts, recovery) never raises into the
  nursery: a failure stays with its file (`last_error`, `cosfs status`) and the data stays
  staged and journaled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol, TypeVar

import trio

from cosfs import crashpoints
from cosfs.blocks import ObjectRef
from cosfs.cos import rules
from cosfs.cos.store import ObjectStore, PutResult, WriteOptions
from cosfs.durable import private_dir, write_json_durably
from cosfs.errors import (AttributeTooLarge, CacheFull, Conflict, CosError, CosfsError, NotFound, Refused, Stale,
                          TransientError)
from cosfs.write.journal import Journal
from cosfs.write.locks import KeyLocks
from cosfs.write.renames import RenameJournal
from cosfs.write.staging import ORPHAN_PREFIX, DirtyFile, Snapshot, StagingArea
from cosfs.write.uploader import Uploader

log = logging.getLogger(__name__)

# x-cos-meta-cosfs-commit: a random token per acknowledged state and per commit attempt.
COMMIT_META = "cosfs-commit"
TOKEN_HEX = 16
# Orphan copies (unlinked-but-open files) are filled this many bytes at a time.
COPY_CHUNK_BYTES = 8 * 1024 * 1024
MAX_RETRY_DELAY_S = 300.0


@dataclasses.dataclass(frozen=True)
class Origin:
    """What a file starts from when it is first changed: its committed object (None: no
    bytes of it are kept), its size and its object options."""

    base: ObjectRef | None
    size: int
    options: WriteOptions


class Target(Protocol):
    """The file a change is for, as the filesystem knows it (an inode)."""

    @property
    def key(self) -> str:
        """Its key now (a rename may change it while a change waits for the key)."""

    @property
    def ino(self) -> int:
        """A number naming its private copy once it loses its name while open."""

    def committed(self) -> ObjectRef | None:
        """The committed version it shows (key, ETag, size), None if none is known."""

    async def origin(self) -> Origin:
        """Its committed object, options and size (asking COS if they are not fresh)."""


T = TypeVar("T")
ReadBase = Callable[[ObjectRef, int, int], Awaitable[bytes | memoryview]]  # (object, offset, size)
Committed = Callable[[str, Snapshot, PutResult], None]


def user_meta_with_commit(meta: dict[str, str]) -> dict[str, str]:
    """The user metadata a commit stores: `meta` with the commit token's room taken."""
    return {**meta, COMMIT_META: "0" * TOKEN_HEX}


def check_user_meta_fits(meta: dict[str, str]) -> None:
    """Refuse (E2BIG) metadata COS would refuse once stored with its commit token: every
    header counted as COS counts it (rules.check_user_meta)."""
    try:
        rules.check_user_meta(user_meta_with_commit(meta))
    except CosfsError as exc:
        raise AttributeTooLarge(f"the file's metadata would exceed COS's {rules.MAX_USER_META_BYTES} bytes of "
                                f"user metadata (mode, owner, times and extended attributes together)") from exc


class WriteBack:
    """The owner of the write side (see the module docstring)."""

    def __init__(self, store: ObjectStore, cache_dir: Path, *, labels: dict[str, str] | None, read_base: ReadBase,
                 make_room: Callable[[int], bool], part_bytes: int, multipart_threshold_bytes: int,
                 parallel_parts: int, write_back_delay_s: float, parallel: int, on_committed: Committed,
                 on_conflict: Callable[[str], None]) -> None:
        self._store = store
        self.staging = StagingArea(cache_dir)
        self.journal = Journal(self.staging.dir, labels)
        self.uploader = Uploader(store, self.read_state, part_bytes=part_bytes,
                                 multipart_threshold_bytes=multipart_threshold_bytes, parallel_parts=parallel_parts,
                                 on_upload=self.journal.save_uploads)
        self.renames = RenameJournal(cache_dir, store, self.uploader.copy_key)
        self.locks = KeyLocks()
        self._read_base = read_base
        self._make_room = make_room
        self._conflicts_dir = cache_dir / "conflicts"
        self._delay_s = write_back_delay_s
        self._parallel = parallel
        self._on_committed = on_committed
        self._on_conflict = on_conflict
        self._nursery: trio.Nursery | None = None
        self._scheduled: set[str] = set()
        # Commit tokens of this mount's attempts, by file id (an object carrying one is ours).
        self._tokens: dict[str, list[str]] = {}
        # At recovery: the token of an attempt that was in flight at the crash (by file id).
        self._landed_if: dict[str, str] = {}
        self.failed_uploads = 0
        self.committed_uploads = 0
        self.conflicts = 0

    # --- recovery ------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Finish what a crash interrupted: journaled directory renames first (the staged
        files below an old prefix follow their directory), then the acknowledged states;
        abort the multipart uploads of ours nothing will resume."""
        self._nursery = nursery
        self.uploader.start(nursery)
        records, uploads = self.journal.load()
        keep: set[Path] = set()
        for record in records:
            if record.key.startswith(ORPHAN_PREFIX):
                self.journal.delete(record.file_id)
                continue
            adopted_file = self.staging.adopt(record.file_id, record.key, record.snapshot, record.generation)
            if record.refused:
                adopted_file.refused, adopted_file.refused_generation = record.refused, adopted_file.generation
                adopted_file.last_error = record.refused
            keep.add(record.snapshot.data_path)
        adopted = {dirty.id: dirty for dirty in self.staging.files()}
        for found in uploads:
            dirty = adopted.get(found.file_id)
            if dirty is None:  # never acknowledged: nothing will resume these
                for key, upload_id in found.uploads:
                    await self.uploader.abort(key, upload_id)
                found.path.unlink(missing_ok=True)
                continue
            dirty.upload_ids = list(found.uploads)
            if found.attempt_token:
                self._landed_if[dirty.id] = found.attempt_token
        self.staging.sweep(keep)
        for old_prefix, new_prefix in await self.renames.recover():
            self._rekey_below(old_prefix, new_prefix)
        for dirty in self.staging.files():
            if dirty.refused_now:
                log.warning("%s stays staged: COS refused its upload (%s); `cosfs sync --retry-failed` tries "
                            "again, `cosfs discard` drops it", dirty.key, dirty.refused)
                continue
            log.warning("finishing the upload of %s journaled by an earlier mount", dirty.key)
            self.schedule(dirty.key, delay_s=0)

    # --- reads ---------------------------------------------------------------------------

    async def read_state(self, state: Snapshot, start: int, end: int) -> bytes:
        """Bytes [start, end) of a state: staged bytes over its base object over zeros."""
        if any(a <= start and end <= b for a, b in state.written):
            return self.staging.read(state.data_path, start, end)
        return await self._read_pieces(state.data_path, state.base, state.pieces(start, end))

    async def read(self, key: str, start: int, end: int) -> bytes | None:
        """Bytes [start, end) of the live state of a staged file (None: nothing staged)."""
        dirty = self.staging.get(key)
        if dirty is None:
            return None
        end = min(end, dirty.size)
        if start >= end:
            return b""
        if dirty.written.covers(start, end):
            return self.staging.read(dirty.data_path, start, end)  # the common case: one read
        return await self._read_pieces(dirty.data_path, dirty.base, dirty.pieces(start, end))

    async def _read_pieces(self, data_path: Path, base: ObjectRef | None, pieces) -> bytes:
        parts = []
        for a, b, source in list(pieces):
            if source == "staged":
                parts.append(self.staging.read(data_path, a, b))
            elif source == "base":
                assert base is not None
                parts.append(bytes(await self._read_base(base, a, b - a)))
            else:
                parts.append(bytes(b - a))
        return b"".join(parts)

    # --- holding keys --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _holding(self, key_of: Callable[[], str], *others: str) -> AsyncIterator[str]:
        """Hold the key `key_of()` names (and `others`). A rename may move the file while we
        wait for its key: then wait for the key it has now."""
        while True:
            key = key_of()
            async with self.locks.hold(key, *others):
                if key_of() == key:
                    yield key
                    return

    # --- changes -------------------------------------------------------------------------

    async def create(self, key_of: Callable[[], str], options: WriteOptions) -> DirtyFile:
        """A file created now (or recreated over a staged one): empty, from no object."""
        async with self._holding(key_of) as key:
            dirty = self.staging.get(key)
            if dirty is None:
                return self.staging.start(key, None, 0, options)
            self.uploader.abandon(dirty)
            self.staging.restart(dirty, options)
            return dirty

    async def open_truncate(self, target: Target) -> DirtyFile:
        """open(O_TRUNC): the live state empties (acknowledged at its close)."""
        async with self._holding(lambda: target.key) as key:
            dirty = self.staging.get(key)
            if dirty is None:
                origin = await target.origin()
                return self.staging.start(key, None, 0, origin.options)
            self.uploader.abandon(dirty)
            self.staging.restart(dirty)
            return dirty

    async def write(self, target: Target, offset: int, data: bytes) -> DirtyFile:
        async with self._holding(lambda: target.key) as key:
            dirty = await self._dirty_locked(key, target)
            if not self._make_room(len(data)):
                raise CacheFull("the cache disk would keep less than ensure_diskfree free: the write was not staged")
            self.staging.write(dirty, offset, data)
            if self.uploader.wants_stream(dirty):
                await self.uploader.start_stream(dirty)
            self.uploader.after_write(dirty, offset, offset + len(data))
            return dirty

    async def _dirty_locked(self, key: str, target: Target) -> DirtyFile:
        """The file's staged state, started from its committed object when there is none."""
        dirty = self.staging.get(key)
        if dirty is None:
            origin = await target.origin()
            dirty = self.staging.start(key, origin.base, origin.size, origin.options)
        return dirty

    async def truncate(self, target: Target, size: int, *, by_path: bool) -> DirtyFile:
        """truncate(2) (`by_path`: committed as a close would) or ftruncate(2) (journaled)."""
        async with self._holding(lambda: target.key) as key:
            dirty = self.staging.get(key)
            if dirty is None and size == 0:
                origin = await target.origin()
                dirty = self.staging.start(key, None, 0, origin.options)
            else:
                dirty = await self._dirty_locked(key, target)
                old = dirty.size
                self.staging.truncate(dirty, size)
                self.uploader.after_write(dirty, min(old, size), max(old, size))
            if by_path:
                await self._close_locked(dirty)
            else:
                self._acknowledge_locked(dirty)
            return dirty

    async def change_meta(self, target: Target, meta: dict[str, str], mtime_ns: int,
                          rewrite: Callable[[dict[str, str]], Awaitable[None]]) -> bool:
        """chmod/chown/utimens/xattrs: in the staged options of a staged file (acknowledged
        now; True), else `rewrite` in COS. Metadata COS would refuse is refused first."""
        check_user_meta_fits(meta)
        async with self._holding(lambda: target.key) as key:
            dirty = self.staging.get(key)
            if dirty is None:
                await rewrite(meta)
                return False
            self.staging.edit(dirty, dataclasses.replace(dirty.options, user_meta=meta), mtime_ns)
            self._acknowledge_locked(dirty)
            return True

    # --- acknowledgement points ----------------------------------------------------------

    async def flush(self, key_of: Callable[[], str]) -> None:
        """close(): commit now (default), or journal now and commit after the delay."""
        async with self._holding(key_of) as key:
            dirty = self.staging.get(key)
            if dirty is not None and not dirty.clean:
                await self._close_locked(dirty)

    async def fsync(self, key_of: Callable[[], str]) -> None:
        """fsync(): commit the live state now, whatever the mode."""
        async with self._holding(key_of) as key:
            dirty = self.staging.get(key)
            if dirty is not None and not dirty.clean:
                await self._commit_locked(dirty, live=True)

    async def _close_locked(self, dirty: DirtyFile) -> None:
        if self._delay_s > 0:
            if not dirty.acknowledged:
                self._acknowledge_locked(dirty)
            self.schedule(dirty.key, self._delay_s)
        else:
            await self._commit_locked(dirty, live=True)

    def _acknowledge_locked(self, dirty: DirtyFile) -> None:
        """Seal the live state: durable data, its record, its bytes never written again."""
        if dirty.key.startswith(ORPHAN_PREFIX) or dirty.acknowledged:
            return
        self._finish_options(dirty)
        _, previous = self.staging.seal(dirty)
        self.journal.save(dirty)
        crashpoints.reached("journal-saved")
        if previous is not None:
            self.staging.forget(dirty, previous)

    def _finish_options(self, dirty: DirtyFile) -> None:
        """The headers a state is stored with: COSFS's mtime (the last write, or a later
        utimens), ctime, and a fresh commit token."""
        user_meta = dict(dirty.options.user_meta)
        seconds = dirty.mtime_ns // 1_000_000_000
        user_meta["mtime"] = str(seconds)
        stored_ctime = user_meta.get("ctime", "")
        user_meta["ctime"] = str(max(seconds, int(stored_ctime) if stored_ctime.isdigit() else 0))
        token = secrets.token_hex(TOKEN_HEX // 2)
        user_meta[COMMIT_META] = token
        self._tokens.setdefault(dirty.id, []).append(token)
        dirty.options = dataclasses.replace(dirty.options, user_meta=user_meta)

    # --- commits -------------------------------------------------------------------------

    async def _commit_locked(self, dirty: DirtyFile, *, live: bool) -> None:
        """Upload the live state (`live`) or the acknowledged one. Holds: the key."""
        key = dirty.key
        if key.startswith(ORPHAN_PREFIX):
            dirty.committed_generation = dirty.generation  # nameless: nothing to upload
            return
        if dirty.refused_now:
            raise Refused(f"COS refused the upload of {key} for good: {dirty.refused}")
        if live or dirty.sealed is None:
            if not dirty.acknowledged:
                self._finish_options(dirty)
            state, generation = dirty.state(), dirty.generation
        else:
            state, generation = dirty.sealed, dirty.sealed_generation
        try:
            checked = await self._check_base(dirty, state)
            if checked is None:  # this state (or a later one of ours) is in COS already
                self._committed_locked(dirty, state, generation, None)
                return
            state = checked
            if dirty.sealed is not None and generation != dirty.sealed_generation:
                # A record exists: the next mount HEADs the key; tell it this attempt's token.
                self.journal.save_uploads(dirty, attempt_token=state.options.user_meta.get(COMMIT_META))
            crashpoints.reached("before-upload")
            result = await self.uploader.commit(dirty, state, live=generation == dirty.generation)
            crashpoints.reached("uploaded")
        except Stale as exc:
            if state.base is None:
                raise self._failed(dirty, exc) from exc
            raise self._conflict(dirty, str(exc)) from exc
        except (Conflict, CacheFull):
            raise  # kept aside, or not staged: the caller gets its errno, no upload was tried
        except CosfsError as exc:
            raise self._failed(dirty, exc) from exc
        self._committed_locked(dirty, state, generation, result)

    def _committed_locked(self, dirty: DirtyFile, state: Snapshot, generation: int,
                          result: PutResult | None) -> None:
        """`state` (of `generation`) is the key's object now (result None: it already was)."""
        if result is not None:
            self.staging.committed(dirty, generation, ObjectRef(dirty.key, result.etag, state.size))
        else:
            dirty.committed_generation = max(dirty.committed_generation, generation)
            if dirty.sealed is not None and dirty.sealed_generation <= generation:
                sealed, dirty.sealed = dirty.sealed, None
                self.staging.forget(dirty, sealed)
        self._landed_if.pop(dirty.id, None)
        dirty.last_error = ""
        if dirty.clean:
            self.uploader.abandon(dirty)
            self.staging.drop(dirty)
            self.journal.delete(dirty.id)
            self._tokens.pop(dirty.id, None)
        else:  # the live state moved on: it is not acknowledged, nothing is left to finish
            self.journal.record_path(dirty.id).unlink(missing_ok=True)
            self.journal.save_uploads(dirty)
        if result is not None:
            self.committed_uploads += 1
            self._on_committed(dirty.key, state, result)

    async def _check_base(self, dirty: DirtyFile, state: Snapshot) -> Snapshot | None:
        """The object must still be the version the state's unchanged bytes come from, or
        one an earlier attempt of ours made from it (then it becomes the base: its bytes
        outside what is staged are the same). None: the object already holds this state, or
        (at recovery) the later one whose commit was in flight at the crash."""
        base = state.base
        if base is None or state.base_limit == 0:
            return state
        try:
            head = await self._store.head_object(base.key)
        except NotFound:
            raise self._conflict(dirty, "the object was deleted by someone else") from None
        token = head.user_meta.get(COMMIT_META)
        if token is not None and token in (state.options.user_meta.get(COMMIT_META), self._landed_if.get(dirty.id)):
            return None
        if head.etag == base.etag:
            return state
        if token is not None and token in self._tokens.get(dirty.id, ()):
            return dataclasses.replace(state, base=ObjectRef(base.key, head.etag, head.size_bytes))
        raise self._conflict(dirty, f"the object was replaced by someone else (ETag {head.etag}, "
                                    f"this mount started from {base.etag})")

    def _failed(self, dirty: DirtyFile, exc: CosfsError) -> CosfsError:
        """A commit failed: the data stays staged and journaled (the state the application
        waited for is acknowledged now, so a retry survives a crash). A transient failure is
        retried with backoff; a refusal for good (any COS error not worth a retry: 403,
        MetadataTooLarge, EntityTooLarge...) is kept, journaled as refused, and tried again
        only when the operator asks."""
        try:
            self._acknowledge_locked(dirty)
        except CosfsError as journal_exc:
            log.error("%s stays staged but could not be journaled: %s", dirty.key, journal_exc)
        dirty.last_error = str(exc)
        self.failed_uploads += 1
        if isinstance(exc, CosError) and not isinstance(exc, TransientError):
            dirty.refused, dirty.refused_generation = str(exc), dirty.generation
            if dirty.acknowledged:
                self.journal.save(dirty)
            log.error("COS refused the upload of %s for good; its data stays staged and is not retried until "
                      "`cosfs sync --retry-failed` (`cosfs discard` drops it): %s", dirty.key, exc)
            return Refused(f"COS refused the upload of {dirty.key}: {exc}")
        log.error("upload of %s failed; its data stays staged in the cache directory: %s", dirty.key, exc)
        self.schedule(dirty.key, self._retry_delay_s(1))
        if dirty.key in self._scheduled:
            self._note_retry(dirty.key, self._retry_delay_s(1))
        return TransientError(f"upload of {dirty.key} failed: {exc}")

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
        self.staging.drop(dirty)
        self.journal.delete(dirty.id)
        self.conflicts += 1
        self._on_conflict(dirty.key)
        log.error("conflict on %s: %s; the changes made through this mount were NOT uploaded and are kept in "
                  "%s.data (written ranges in %s.json)", dirty.key, why, target, target)
        return Conflict(f"{dirty.key} changed in COS since this mount read it; local changes kept in {target}.data")

    # --- scheduled commits ---------------------------------------------------------------

    def schedule(self, key: str, delay_s: float) -> None:
        """Commit the key's acknowledged state after `delay_s` (retried with backoff)."""
        if key in self._scheduled or self._nursery is None:
            return
        self._scheduled.add(key)
        self._nursery.start_soon(self._delayed_commit, key, delay_s, name=f"upload {key}")

    def reschedule_all(self, *, retry_refused: bool = False) -> None:
        """Start uploading every acknowledged change at once (`cosfs sync`); the ones COS
        refused too when `retry_refused` (`cosfs sync --retry-failed`)."""
        for dirty in self.staging.files():
            if dirty.refused_now:
                if not retry_refused:
                    continue
                dirty.refused = ""
            self._scheduled.discard(dirty.key)
            self.schedule(dirty.key, delay_s=0)

    async def discard_refused(self, key: str) -> None:
        """`cosfs discard`: drop the staged data of a file COS refused; the mount shows the
        object in COS again (or no file, if it never was committed)."""
        async with self.locks.hold(key):
            dirty = self.staging.get(key)
            if dirty is None or not dirty.refused_now:
                raise NotFound(f"{key} has no refused upload to discard")
            self._drop_locked(dirty)
            log.warning("discarded the staged data of %s, which COS had refused (%s)", key, dirty.refused)
            self._on_conflict(key)

    @staticmethod
    def _retry_delay_s(attempt: int) -> float:
        return min(MAX_RETRY_DELAY_S, 5.0 * 2**attempt)

    async def _delayed_commit(self, key: str, delay_s: float) -> None:
        attempt = 0
        try:
            while True:
                await trio.sleep(delay_s)
                try:
                    async with self.locks.hold(key):
                        dirty = self.staging.get(key)
                        if dirty is None or dirty.sealed is None:
                            return  # committed, renamed or dropped meanwhile; or nothing acknowledged
                        await self._commit_locked(dirty, live=dirty.acknowledged)
                    return
                except (Conflict, Refused):
                    return  # kept aside or refused for good, and logged: retrying cannot help
                except CosfsError:
                    attempt += 1
                    delay_s = self._retry_delay_s(attempt)
                    log.warning("will retry the upload of %s in %.0f s", key, delay_s)
                    self._note_retry(key, delay_s)
        except Exception:  # a bug: the file stays staged and journaled, the mount stays up
            log.exception("the scheduled upload of %s crashed; it stays staged for the next sync or mount", key)
        finally:
            self._scheduled.discard(key)
            self._note_retry(key, None)

    def _note_retry(self, key: str, delay_s: float | None) -> None:
        """When the next attempt of a failed upload starts, for `cosfs status`."""
        dirty = self.staging.get(key)
        if dirty is not None:
            dirty.retry_at = None if delay_s is None else time.monotonic() + delay_s

    async def drain(self) -> int:
        """Commit every staged file (unmount, SIGTERM: nothing is open). Returns how many failed."""
        failed = 0
        for dirty in self.staging.files():
            if dirty.refused_now:
                failed += 1  # kept for the operator: not retried
                continue

            def key_of(dirty: DirtyFile = dirty) -> str:  # read under the lock: a rename may move it
                return dirty.key

            try:
                await self.fsync(key_of)
            except CosfsError:
                failed += 1
        return failed

    # --- names ---------------------------------------------------------------------------

    def released(self, key: str, *, writable: bool, last_open: bool) -> None:
        """A descriptor closed. The last one of a nameless file: its private copy goes.
        A writer's changes made after its close (through a shared mapping) are closed too."""
        if key.startswith(ORPHAN_PREFIX):
            if last_open:
                self._discard_locked(key)  # nameless: no one else can hold it
            return
        dirty = self.staging.get(key)
        if writable and dirty is not None and not dirty.acknowledged and not dirty.clean and self._nursery:
            self._nursery.start_soon(self._settle, key, dirty.generation, name=f"close {key}")

    async def _settle(self, key: str, generation: int) -> None:
        """Close what a released writer left unacknowledged, unless the file changed since."""
        try:
            async with self.locks.hold(key):
                dirty = self.staging.get(key)
                if dirty is not None and dirty.generation == generation and not dirty.acknowledged:
                    await self._close_locked(dirty)
        except CosfsError as exc:  # kept staged, journaled and retried (_failed)
            log.debug("closing %s after its release: %s", key, exc)
        except Exception:
            log.exception("closing %s after its release crashed; it stays staged", key)

    def _discard_locked(self, key: str) -> None:
        """Forget a key's staged state, its journal and any upload streaming it. Holds: key."""
        dirty = self.staging.get(key)
        if dirty is not None:
            self._drop_locked(dirty)

    def _drop_locked(self, dirty: DirtyFile) -> None:
        self.uploader.abandon(dirty)
        self.staging.drop(dirty)
        self.journal.delete(dirty.id)
        self._tokens.pop(dirty.id, None)

    async def tree_change(self, keys: list[str], change: Callable[[], Awaitable[T]]) -> T:
        """A change of the tree that no staged file is part of (mkdir, rmdir, symlink,
        mknod), made while its keys are held so that no commit or rename interleaves."""
        async with self.locks.hold(*keys):
            return await change()

    async def unlink(self, target: Target, remove: Callable[[], Awaitable[None]], *, keep_open_copy: bool,
                     detached: Callable[[str | None], None]) -> None:
        """unlink(2): `remove` deletes the object; the staged state and its journal go after
        it. An open file first gets a private copy for its descriptors; `detached(its key)`
        moves them to it before the key is given back."""
        async with self._holding(lambda: target.key) as key:
            orphan = await self._private_copy(target) if keep_open_copy else None
            try:
                await remove()
            except BaseException:
                if orphan is not None:
                    self._discard_locked(orphan)
                raise
            self._discard_locked(key)
            detached(orphan)

    async def _private_copy(self, target: Target) -> str:
        """A private staged copy for the descriptors of a file about to lose its name (POSIX
        unlinked-but-open semantics): never uploaded or journaled, dropped at the last close.
        The original is untouched until the name is really gone. Holds: the file's key."""
        orphan_key = f"{ORPHAN_PREFIX}{target.ino}"
        source = self.staging.get(target.key)
        if source is not None:
            size, options, state = source.size, source.options, source.state()

            async def read(start: int, end: int) -> bytes:
                return await self.read_state(state, start, end)
        else:
            origin = await target.origin()
            size, options, ref = origin.size, origin.options, origin.base

            async def read(start: int, end: int) -> bytes:
                assert ref is not None
                return bytes(await self._read_base(ref, start, end - start))
        self._discard_locked(orphan_key)
        orphan = self.staging.start(orphan_key, None, 0, options)
        try:
            for offset in range(0, size, COPY_CHUNK_BYTES):
                self.staging.write(orphan, offset, await read(offset, min(size, offset + COPY_CHUNK_BYTES)))
            self.staging.truncate(orphan, size)
        except BaseException:
            self._discard_locked(orphan_key)
            raise
        return orphan_key

    async def rename_file(self, source: Target, new_key: str, *, content_type: str, open_replaced: Target | None,
                          moved: Callable[[str | None, str | None], None]) -> None:
        """rename(2) of a file: a never-committed file is re-keyed (its record names the new
        key at once); a committed one is copied (after committing what is staged) and the
        old key deleted; either takes `content_type` (the new name's). Until the copy
        succeeded nothing of either name changes. The file
        it replaces, if open (`open_replaced`), gets a private copy first; `moved(that copy's
        key, the new object's ETag or None)` updates names and handles before the keys are
        given back."""
        async with self._holding(lambda: source.key, new_key) as old_key:
            orphan = await self._private_copy(open_replaced) if open_replaced is not None else None
            etag: str | None = None
            try:
                dirty = self.staging.get(old_key)
                replaced = self.staging.get(new_key)
                if dirty is not None and dirty.base is None:
                    # Never committed under the old name (or truncated to nothing): no copy.
                    await self._store.delete_object(old_key)
                    self.uploader.abandon(dirty)  # its stream is for the old key
                    if replaced is not None:
                        self.staging.detach(replaced)
                    self.staging.rekey(dirty, new_key)
                    if dirty.options.content_type != content_type:
                        self.staging.edit(dirty, dataclasses.replace(dirty.options, content_type=content_type),
                                          dirty.mtime_ns)
                    if dirty.acknowledged:
                        self.journal.save(dirty)  # the record names the new key now
                    else:
                        self._acknowledge_locked(dirty)
                    if replaced is not None:
                        self._drop_locked(replaced)  # after the record that replaces it
                else:
                    if dirty is not None:
                        await self._commit_locked(dirty, live=True)
                    version = source.committed()
                    assert version is not None, old_key
                    etag = await self.uploader.copy_key(old_key, new_key, version.size_bytes, version.etag,
                                                        content_type=content_type)
                    crashpoints.reached("file-copied")
                    self._discard_locked(new_key)
                    await self._store.delete_object(old_key)
            except BaseException:
                if orphan is not None:
                    self._discard_locked(orphan)
                raise
            moved(orphan, etag)
            renamed = self.staging.get(new_key)
            if renamed is not None and renamed.acknowledged and self._delay_s > 0:
                self.schedule(new_key, self._delay_s)

    async def rename_prefix(self, old_prefix: str, new_prefix: str, moved: Callable[[], None]) -> None:
        """Move every key under `old_prefix` (objects and staged files) to `new_prefix`.

        Under a barrier over both prefixes: staged files with a base object are committed
        first (so the key walk copies their bytes), the walk copies each listed key with
        If-Match on its listed ETag and deletes only what it copied, and the staged files
        still below the old prefix (never committed) are re-keyed to the new one, their
        records rewritten. `moved` (the tree's names and handles following) runs before the
        barrier falls."""
        async with self.locks.bar(old_prefix, new_prefix):
            for dirty in self.staging.under(old_prefix):
                if dirty.base is not None:
                    await self._commit_locked(dirty, live=True)
            await self.renames.rename_prefix(old_prefix, new_prefix, self._parallel,
                                             after_walk=lambda: self._rekey_below(old_prefix, new_prefix))
            moved()

    def _rekey_below(self, old_prefix: str, new_prefix: str) -> None:
        for dirty in self.staging.under(old_prefix):
            self.uploader.abandon(dirty)
            new_key = new_prefix + dirty.key[len(old_prefix):]
            self.staging.rekey(dirty, new_key)
            if dirty.sealed is not None:
                self.journal.save(dirty)  # the record names the new key
                self.schedule(new_key, self._delay_s)

    # --- status --------------------------------------------------------------------------

    def conflict_files(self) -> list[Path]:
        if not self._conflicts_dir.exists():
            return []
        return sorted(self._conflicts_dir.glob("*.data"))
