"""Directory renames: a key walk (copy every key under the old prefix, then delete them),
journaled so that a crash halfway is finished by the next mount, never left half done.

The journal entry `<cache_dir>/renames/<id>.json` holds the two prefixes. It is written (and
fsynced) before the first copy and removed after the last delete. Each key is copied with
If-Match on the ETag the listing gave, and deleted only while it still has the ETag that was
copied: a key rewritten by someone else during the walk is copied again, never deleted
unmoved. Recovery repeats the walk: a key already at the destination with the same ETag is
not copied again and deleting a missing key succeeds, so finishing is always safe. Objects
written under the old prefix by someone else during the rename are moved too, as a rename by
hand would.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from cosfs import crashpoints
from cosfs.cos.store import MAX_KEY_BYTES, ObjectStore
from cosfs.durable import private_dir, write_json_durably
from cosfs.errors import CosfsError, NameTooLong, NotFound, Stale, TransientError, one_error

log = logging.getLogger(__name__)

# A key rewritten again and again while the walk runs makes it give up after this many rounds.
MAX_ROUNDS = 5

CopyKey = Callable[[str, str, int, str], Awaitable[object]]  # (source, destination, size, ETag); result unused


class RenameJournal:
    """Owner of the rename journal directory and of the key walk."""

    def __init__(self, cache_dir: Path, store: ObjectStore, copy: CopyKey) -> None:
        self._dir = cache_dir / "renames"
        self._store = store
        self._copy = copy  # server-side copy of any size, If-Match on the given ETag

    async def rename_prefix(self, old_prefix: str, new_prefix: str, parallel: int,
                            after_walk: Callable[[], None] = lambda: None) -> int:
        """Move every key under old_prefix to new_prefix; returns how many moved.
        `after_walk` runs once the objects moved, while the journal entry still exists."""
        private_dir(self._dir)
        entry = self._dir / f"{uuid.uuid4().hex}.json"
        write_json_durably(entry, {"old": old_prefix, "new": new_prefix})
        crashpoints.reached("rename-journaled")
        try:
            moved = await self._walk(old_prefix, new_prefix, parallel)
        except NameTooLong:
            entry.unlink()  # refused before the first copy: nothing to finish
            raise
        crashpoints.reached("rename-walked")
        after_walk()
        entry.unlink()
        return moved

    async def _walk(self, old_prefix: str, new_prefix: str, parallel: int) -> int:
        copied: dict[str, str] = {}  # key -> the ETag its copy was made from
        limiter = trio.CapacityLimiter(parallel)

        async def copy(key: str, size: int, etag: str) -> None:
            async with limiter:
                destination = new_prefix + key[len(old_prefix):]
                try:
                    if (await self._store.head_object(destination)).etag != etag:
                        await self._copy(key, destination, size, etag)
                except NotFound:
                    try:
                        await self._copy(key, destination, size, etag)
                    except (NotFound, Stale):
                        return  # deleted or rewritten meanwhile: the next round sees it
                except Stale:
                    return
                copied[key] = etag

        for _ in range(MAX_ROUNDS):
            listed: list[tuple[str, int, str]] = []
            async for page in self._store.list_all(old_prefix):
                listed.extend((e.key, e.size_bytes, e.etag) for e in page.entries)
            if not listed:
                return len(copied)
            longest = max(len((new_prefix + key[len(old_prefix):]).encode("utf-8", "surrogateescape"))
                          for key, _, _ in listed)
            if longest > MAX_KEY_BYTES and not copied:
                raise NameTooLong(f"a key under {new_prefix} would be {longest} bytes, more than COS's {MAX_KEY_BYTES}")
            todo = [(key, size, etag) for key, size, etag in listed if copied.get(key) != etag]
            with one_error():
                async with trio.open_nursery() as nursery:
                    for key, size, etag in todo:
                        nursery.start_soon(copy, key, size, etag)
            # Delete only what is unchanged since its copy: this listing says so.
            done = [key for key, _, etag in listed if copied.get(key) == etag]
            if done:
                await self._store.delete_objects(done)
            if len(done) == len(listed):
                return len(copied)
        raise TransientError(f"keys under {old_prefix} kept changing while they were being renamed")

    async def recover(self) -> list[tuple[str, str]]:
        """Finish renames a crash interrupted; returns the (old, new) prefixes finished."""
        if not self._dir.exists():
            return []
        finished = []
        for entry in sorted(self._dir.glob("*.json")):
            try:
                record = json.loads(entry.read_text(encoding="utf-8"))
                old_prefix, new_prefix = record["old"], record["new"]
            except (OSError, ValueError, KeyError) as exc:
                log.error("rename journal %s is unusable (%s); kept for inspection", entry, exc)
                continue
            log.warning("finishing the rename of %s to %s interrupted by a crash", old_prefix, new_prefix)
            try:
                await self._walk(old_prefix, new_prefix, 8)
            except CosfsError as exc:
                log.error("could not finish the rename of %s to %s yet: %s", old_prefix, new_prefix, exc)
                continue
            finished.append((old_prefix, new_prefix))
            entry.unlink()
        return finished
