"""Sequential-read detection and a read-ahead window that grows while reads stay sequential."""

from __future__ import annotations


class ReadAhead:
    """Per open file. After each read, `advise` names the blocks worth fetching ahead.

    The window starts at `initial_blocks`, doubles each time the reader crosses into a new
    block sequentially, and falls back to nothing on a seek (a random reader costs only the
    block it reads)."""

    def __init__(self, block_size_bytes: int, max_window_bytes: int, initial_blocks: int = 2) -> None:
        self._block = block_size_bytes
        self._initial = initial_blocks
        self._max_blocks = max(1, max_window_bytes // block_size_bytes)
        self._window = 0
        self._next_offset = 0
        self._last_block = -1

    @property
    def window_blocks(self) -> int:
        return self._window

    def advise(self, offset: int, size: int, file_size: int) -> tuple[int, int] | None:
        """(first, last) block indexes to prefetch, or None."""
        # Kernel read-ahead may deliver neighbouring reads slightly out of order.
        sequential = abs(offset - self._next_offset) <= self._block
        self._next_offset = offset + size
        block = offset // self._block
        if not sequential:
            self._window = 0
            self._last_block = block
            return None
        if self._window == 0:
            self._window = self._initial
        elif block != self._last_block:
            self._window = min(self._window * 2, self._max_blocks)
        self._last_block = block
        last_block_of_file = max(0, (file_size - 1) // self._block)
        first = (offset + size) // self._block
        last = min(first + self._window - 1, last_block_of_file)
        if first > last_block_of_file:
            return None
        return first, last
