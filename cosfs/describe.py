"""`ListingDescriber`: the stored metadata of a listing's entries, fetched ahead of readdir.

A LIST gives each entry's name, size, time and ETag; its type, mode, owner and stored times
live in the object's x-cos-meta-* headers (a directory's in its marker), which only a HEAD
returns. readdir hands every entry to the kernel with attributes (readdirplus), so it must
know them first: the describer HEADs the entries in listing order, `parallel` at a time, in
one continuous pipeline from the first readdir of a handle on, and readdir waits only for
the entry it is about to reply with. What the namespace already knows (a HEAD or our own
write of the same version within the stat TTL) costs nothing.

Invariants:
- An entry's result is set once: its metadata (None for an implicit directory), `GONE` for
  an object deleted since the LIST, or the error its fetch ended with (raised to the readdir
  that reaches it: its attributes cannot be shown without it).
- The fetch runs at most `window` entries ahead of the furthest entry asked for, and ends
  when the handle is released (`close`); its failures never reach the nursery.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from cosfs.errors import CosfsError, NotFound

if TYPE_CHECKING:
    from cosfs.cos.store import ObjectMeta
    from cosfs.namespace import DirEntry, Gone

log = logging.getLogger(__name__)

Known = Callable[["DirEntry"], "tuple[bool, ObjectMeta | None]"]
Fetch = Callable[["DirEntry"], "Awaitable[ObjectMeta | None]"]


class ListingDescriber:
    """One directory handle's entries and their metadata (see the module docstring)."""

    def __init__(self, entries: list[DirEntry], nursery: trio.Nursery, *, known: Known, fetch: Fetch, gone: Gone,
                 parallel: int, window: int) -> None:
        self._entries = entries
        self._nursery = nursery
        self._known = known
        self._fetch = fetch
        self._gone = gone
        self._parallel = parallel
        self._window = window
        self._results: dict[int, ObjectMeta | None | Gone | CosfsError] = {}
        self._next = 0  # the next index a worker takes
        self._wanted = 0  # the furthest index readdir asked for
        self._progress = trio.Event()  # set (and replaced) whenever a result lands or `_wanted` moves
        self._cancel = trio.CancelScope()
        self._started = False

    def close(self) -> None:
        self._cancel.cancel()

    async def get(self, index: int) -> ObjectMeta | None | Gone:
        """The metadata of entry `index`, waiting for its fetch (started on the first call)."""
        if index > self._wanted:
            self._wanted = index
            self._next = max(self._next, min(index, len(self._entries)))  # a seekdir skips ahead
            self._wake()
        if not self._started:
            self._started = True
            self._nursery.start_soon(self._run, name=f"describe listing of {len(self._entries)} entries")
        while index not in self._results:
            known, meta = self._known(self._entries[index])
            if known:
                return meta
            await self._progress.wait()
        result = self._results[index]
        if isinstance(result, CosfsError):
            raise result
        return result

    def _wake(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    async def _run(self) -> None:
        with self._cancel:
            async with trio.open_nursery() as workers:
                for _ in range(self._parallel):
                    workers.start_soon(self._work)

    async def _work(self) -> None:
        while True:
            while self._next < len(self._entries) and self._next > self._wanted + self._window:
                await self._progress.wait()
            if self._next >= len(self._entries):
                return
            index = self._next
            self._next += 1
            entry = self._entries[index]
            if index in self._results:
                continue
            known, meta = self._known(entry)
            result: ObjectMeta | None | Gone | CosfsError = meta
            if not known:
                try:
                    result = await self._fetch(entry)
                except NotFound:
                    result = self._gone
                except CosfsError as exc:
                    result = exc
                except Exception as exc:  # a bug: this entry fails, the mount stays up
                    log.exception("describing %r failed", entry.key)
                    result = CosfsError(f"describing {entry.key!r} failed: {exc!r}")
            self._results[index] = result
            self._wake()
