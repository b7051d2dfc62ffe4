"""What the kernel remembers of the tree for the attribute and entry timeouts, and how the
core tells it to forget.

The namespace learns that another client changed or deleted an object (an open's HEAD, a
listing fetched again) while the kernel still holds the old size or a name that is gone: a
read would stop at the old size, and `mkdir` or `open(O_APPEND|O_CREAT)` of a deleted name
would meet the old entry. The core calls this interface; the FUSE adapter implements it
(cosfs.fuse_ops), and before a mount, or in an in-process test, nothing is remembered.
"""

from __future__ import annotations

from typing import Protocol


class KernelCache(Protocol):
    def forget_attributes(self, ino: int) -> None:
        """Before the current request's reply: the kernel asks getattr next time (and sees
        a new size, or ENOENT). Takes no lock in the kernel (attributes only, no page-cache
        write-back), so it is safe inside a request handler."""

    def forget_entry(self, parent_ino: int, name: str) -> None:
        """Soon after the current request: the kernel looks `name` up again next time.
        Queued, as the kernel takes the directory's lock, which a caller waiting for this
        request may hold."""


class NoKernel:
    """Nothing is remembered: before the mount, and for the core on its own."""

    def forget_attributes(self, ino: int) -> None:
        pass

    def forget_entry(self, parent_ino: int, name: str) -> None:
        pass
