"""RangeSet: a set of byte ranges [start, end), kept merged and sorted. Pure."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class RangeSet:
    """Disjoint, non-adjacent, sorted half-open ranges."""

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends))

    def __len__(self) -> int:
        return len(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    def to_list(self) -> list[list[int]]:
        return [[s, e] for s, e in self]

    def add(self, start: int, end: int) -> None:
        if start >= end:
            return
        # Ranges that touch or overlap [start, end) merge with it.
        lo = bisect.bisect_left(self._ends, start)
        hi = bisect.bisect_right(self._starts, end)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def remove(self, start: int, end: int) -> None:
        if start >= end:
            return
        lo = bisect.bisect_right(self._ends, start)
        hi = bisect.bisect_left(self._starts, end)
        keep_starts: list[int] = []
        keep_ends: list[int] = []
        for s, e in zip(self._starts[lo:hi], self._ends[lo:hi]):
            if s < start:
                keep_starts.append(s)
                keep_ends.append(start)
            if e > end:
                keep_starts.append(end)
                keep_ends.append(e)
        self._starts[lo:hi] = keep_starts
        self._ends[lo:hi] = keep_ends

    def overlaps(self, start: int, end: int) -> bool:
        if start >= end:
            return False
        lo = bisect.bisect_right(self._ends, start)
        return lo < len(self._starts) and self._starts[lo] < end

    def covers(self, start: int, end: int) -> bool:
        if start >= end:
            return True
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def split(self, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
        """Pieces of [start, end) in order, each (a, b, inside-the-set)."""
        pos = start
        i = bisect.bisect_right(self._ends, start)
        while pos < end:
            if i < len(self._starts) and self._starts[i] <= pos:
                stop = min(self._ends[i], end)
                yield pos, stop, True
                pos = stop
                i += 1
            else:
                stop = min(self._starts[i], end) if i < len(self._starts) else end
                yield pos, stop, False
                pos = stop
