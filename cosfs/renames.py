"""Directory renames: a key walk (copy every key under the old prefix, then delete them),
journaled so that a crash halfway is finished by the next mount, never left half done.

The journal entry `<cache_dir>/renames/<id>.json` holds the two prefixes. It is written (and
fsynced) before the first copy and removed after the last delete. Recovery repeats the walk:
copying is idempotent (a key already at the destination with the same ETag is skipped) and
deleting a missing key succeeds, so finishing is always safe. Objects written under the old
prefix by someone else during the rename are moved too, as a rename by hand would.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from cosfs.cos.store import ObjectStore
from cosfs.durable import write_json_durably
from cosfs.errors import CosfsError, NotFound

log = logging.getLogger(__name__)


class RenameJournal:
    """Owner of the rename journal directory."""

    def __init__(self, cache_dir: Path, store: ObjectStore,
                 copy: Callable[[str, str, int], Awaitable[None]]) -> None:
        self._dir = cache_dir / "renames"
        self._store = store
        self._copy = copy  # server-side copy of any size (multipart copy above 5 GB)

    async def rename_prefix(self, old_prefix: str, new_prefix: str, parallel: int) -> int:
        """Move every key under old_prefix to new_prefix; returns how many moved."""
        self._dir.mkdir(parents=True, exist_ok=True)
        entry = self._dir / f"{uuid.uuid4().hex}.json"
        write_json_durably(entry, {"old": old_prefix, "new": new_prefix})
        moved = await self._walk(old_prefix, new_prefix, parallel)
        entry.unlink()
        return moved

    async def _walk(self, old_prefix: str, new_prefix: str, parallel: int) -> int:
        keys: list[tuple[str, int, str]] = []
        async for page in self._store.list_all(old_prefix):
            keys.extend((e.key, e.size_bytes, e.etag) for e in page.entries)
        limiter = trio.CapacityLimiter(parallel)

        async def copy(key: str, size: int, etag: str) -> None:
            async with limiter:
                destination = new_prefix + key[len(old_prefix):]
                try:
                    if (await self._store.head_object(destination)).etag == etag:
                        return  # done by the interrupted walk
                except NotFound:
                    pass
                try:
                    await self._copy(key, destination, size)
                except NotFound:
                    pass  # deleted meanwhile: nothing to move

        async with trio.open_nursery() as nursery:
            for key, size, etag in keys:
                nursery.start_soon(copy, key, size, etag)
        await self._store.delete_objects([key for key, _, _ in keys])
        return len(keys)

    async def recover(self) -> None:
        """Finish renames a crash interrupted."""
        if not self._dir.exists():
            return
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
            entry.unlink()

