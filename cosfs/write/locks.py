"""KeyLocks: per-key mutual exclusion, and barriers over prefixes for directory renames."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio


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
