"""Open file and directory handles."""

from __future__ import annotations

import dataclasses
from typing import Generic, TypeVar

from cosfs.blocks import ObjectRef
from cosfs.errors import NotFound
from cosfs.describe import ListingDescriber
from cosfs.namespace import DirEntry
from cosfs.prefetch import ReadAhead

T = TypeVar("T")


@dataclasses.dataclass
class FileHandle:
    """An open file: the object version it reads (pinned at open; None while the file has
    uncommitted changes, which are read from staging), its read-ahead state, and whether it
    may write."""

    ino: int
    ref: ObjectRef | None
    readahead: ReadAhead
    writable: bool = False


@dataclasses.dataclass
class DirHandle:
    """An open directory: a snapshot of its entries, taken at the first readdir (offset 0),
    so offsets stay stable while the directory changes, and the describer fetching their
    stored metadata ahead of readdir."""

    ino: int
    entries: list[DirEntry] | None = None
    describer: ListingDescriber | None = None


class HandleTable(Generic[T]):
    """Owner of handle numbers; numbers are never reused while the mount lives."""

    def __init__(self) -> None:
        self._next = 1
        self._open: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._open)

    def add(self, handle: T) -> int:
        fh = self._next
        self._next += 1
        self._open[fh] = handle
        return fh

    def get(self, fh: int) -> T:
        try:
            return self._open[fh]
        except KeyError:
            raise NotFound(f"no open handle {fh}") from None

    def pop(self, fh: int) -> T:
        handle = self.get(fh)
        del self._open[fh]
        return handle

    def values(self) -> list[T]:
        return list(self._open.values())


class FileHandles(HandleTable[FileHandle]):
    """Open files. Owner of the rule that a handle reads the version of the object its inode
    stands for: every change of that version or its key goes through `pin` or `moved`."""

    def pin(self, inos: set[int], ref: ObjectRef | None) -> None:
        """Handles of these inodes read `ref` from now on (None: their staged data)."""
        for handle in self._open.values():
            if handle.ino in inos:
                handle.ref = ref

    def moved(self, old: str, new: str, *, prefix: bool) -> None:
        """Keys changed by a rename: a file's key, or every key below a directory's prefix."""
        for handle in self._open.values():
            ref = handle.ref
            if ref is None:
                continue
            if ref.key == old or (prefix and ref.key.startswith(old)):
                handle.ref = dataclasses.replace(ref, key=new + ref.key[len(old):])
