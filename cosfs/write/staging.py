"""StagingArea: the bytes written and not yet committed, on the local disk, per dirty file.

A dirty file is a sparse data file holding the bytes the application wrote, at their own
offsets, and the ranges they cover (`written`); every other byte comes from the base object
(the version the file started from, below `base_limit`) or is zero. So a 4 KiB write into a
10 GiB object stages 4 KiB, and the uploader copies the untouched ranges server-side.

Data files are named by the dirty file's random id and a generation, never by key: a rename
re-keys a dirty file in memory and in its journal record, not on disk.

An acknowledged state never changes: `seal` makes the live data durable and returns it as a
`Snapshot` (what the journal records, and what a delayed commit or the next mount uploads).
The next change of the file's bytes first copies the data file to a new generation
(`copy_file_range` of the written ranges), so a snapshot's bytes are never written again.
Its data file goes when a newer snapshot replaces it (`forget`) or the file is dropped.

Invariants: `_files[key].key == key`; a DirtyFile's live data file exists while it is in
`_files`, and so does its sealed snapshot's; `written` lies within [0, size).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from cosfs.blocks import ObjectRef
from cosfs.cos.store import WriteOptions
from cosfs.durable import private_dir
from cosfs.errors import CacheFull
from cosfs.ranges import RangeSet

# Keys of files that lost their name while open (unlink, rename over them): NUL can never be
# in an object key, so these are never uploaded, never journaled and never collide with a name.
ORPHAN_PREFIX = "\0orphan/"
COPY_CHUNK_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One state of a dirty file's content: the data file holding its staged bytes, which
    ranges they are, where the rest comes from, its size and its object options."""

    data_path: Path
    base: ObjectRef | None
    base_limit: int
    size: int
    written: tuple[tuple[int, int], ...]
    options: WriteOptions
    mtime_ns: int

    def pieces(self, offset: int, end: int) -> Iterator[tuple[int, int, str]]:
        """(start, stop, source) covering [offset, end): source is 'staged', 'base' or 'zero'."""
        return _pieces(RangeSet(self.written), self.base, self.base_limit, offset, end)


def _pieces(written: RangeSet, base: ObjectRef | None, base_limit: int, offset: int,
            end: int) -> Iterator[tuple[int, int, str]]:
    for a, b, inside in written.split(offset, end):
        if inside:
            yield a, b, "staged"
            continue
        limit = base_limit if base is not None else 0
        if a < limit:
            yield a, min(b, limit), "base"
            if b > limit:
                yield limit, b, "zero"
        else:
            yield a, b, "zero"


@dataclasses.dataclass
class DirtyFile:
    """One file with changes not yet committed to COS: its live state, and the acknowledged
    state the journal holds (`sealed`).

    `generation` grows with every change; `sealed_generation` is the generation `sealed`
    was taken at (the live state is the acknowledged one while they are equal);
    `committed_generation` is the one the object in COS reflects (clean when equal).
    """

    id: str
    key: str
    data_path: Path
    base: ObjectRef | None
    base_limit: int
    size: int
    written: RangeSet
    options: WriteOptions
    mtime_ns: int
    generation: int = 1
    committed_generation: int = 0
    sealed: Snapshot | None = None
    sealed_generation: int = 0
    data_generation: int = 0  # names the live data file: <id>-<data_generation>.data
    # The commit in flight, for status: bytes uploaded of `uploading_total`.
    uploading_total: int = 0
    uploaded: int = 0
    last_error: str = ""
    # COS refused the upload of the state of `refused_generation` for good: its reason.
    refused: str = ""
    refused_generation: int = 0
    retry_at: float | None = None  # time.monotonic() of the next retry of a failed upload
    # The multipart upload receiving parts while the file is written (uploader's
    # StreamingUpload), None when the file will upload at close.
    stream: Any = None
    # (key, upload id) of multipart uploads of ours a crash may leave behind (journaled).
    upload_ids: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.committed_generation == self.generation

    @property
    def refused_now(self) -> bool:
        """COS refused this very state; a later change is a new state, tried again."""
        return bool(self.refused) and self.refused_generation == self.generation

    @property
    def acknowledged(self) -> bool:
        """The live state is the one the journal holds."""
        return self.sealed is not None and self.sealed_generation == self.generation

    def state(self) -> Snapshot:
        """The live state, as a value (its data file may still change)."""
        return Snapshot(self.data_path, self.base, self.base_limit, self.size, tuple(self.written), self.options,
                        self.mtime_ns)

    def pieces(self, offset: int, end: int) -> Iterator[tuple[int, int, str]]:
        return _pieces(self.written, self.base, self.base_limit, offset, end)


class StagingArea:
    """Owner of dirty files and their data files (see the module docstring)."""

    def __init__(self, cache_dir: Path) -> None:
        self.dir = cache_dir / "staging"
        self._files: dict[str, DirtyFile] = {}
        self._fds: dict[Path, int] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._files

    def __len__(self) -> int:
        return len(self._files)

    def get(self, key: str) -> DirtyFile | None:
        return self._files.get(key)

    def files(self) -> list[DirtyFile]:
        return list(self._files.values())

    def under(self, prefix: str) -> list[DirtyFile]:
        return [f for k, f in self._files.items() if k.startswith(prefix)]

    def data_path(self, file_id: str, generation: int) -> Path:
        return self.dir / f"{file_id}-{generation}.data"

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            self._fds[path] = fd
        return fd

    def _close(self, path: Path) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, key: str, base: ObjectRef | None, size: int, options: WriteOptions) -> DirtyFile:
        """A new dirty file for `key` (none may be staged there): `base` is the object it
        starts from (None for a new or truncated file), `size` its current size."""
        assert key not in self._files, key
        private_dir(self.dir)
        file_id = secrets.token_hex(12)
        path = self.data_path(file_id, 0)
        with _disk_errors():
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._fds[path] = fd
        dirty = DirtyFile(file_id, key, path, base, base.size_bytes if base else 0, size, RangeSet(), options,
                          time.time_ns())
        self._files[key] = dirty
        return dirty

    def adopt(self, file_id: str, key: str, snapshot: Snapshot, generation: int) -> DirtyFile:
        """A dirty file whose live state is an acknowledged snapshot found on disk (recovery)."""
        dirty = DirtyFile(file_id, key, snapshot.data_path, snapshot.base, snapshot.base_limit, snapshot.size,
                          RangeSet(snapshot.written), snapshot.options, snapshot.mtime_ns, sealed=snapshot,
                          sealed_generation=1, data_generation=generation)
        self._files[key] = dirty
        return dirty

    def drop(self, dirty: DirtyFile) -> None:
        """Forget a dirty file and its data files (after commit, discard or unlink)."""
        if self._files.get(dirty.key) is dirty:
            del self._files[dirty.key]
        paths = {dirty.data_path}
        if dirty.sealed is not None:
            paths.add(dirty.sealed.data_path)
        for path in paths:
            self._close(path)
            path.unlink(missing_ok=True)

    def detach(self, dirty: DirtyFile) -> None:
        """Take a dirty file out of the key map without touching its files (a rename over
        it: its files go once the replacing record is durable)."""
        if self._files.get(dirty.key) is dirty:
            del self._files[dirty.key]

    def rekey(self, dirty: DirtyFile, new: str) -> None:
        """Stage `dirty` under another key (nothing may be staged there). Its content, and
        so whether it is acknowledged, is unchanged: the journal record follows."""
        assert new not in self._files, new
        del self._files[dirty.key]
        dirty.key = new
        self._files[new] = dirty

    # --- data ----------------------------------------------------------------------------

    def _writable(self, dirty: DirtyFile) -> int:
        """The live data file's descriptor, copied to a new generation first when the
        acknowledged snapshot uses it (its bytes must never change)."""
        if dirty.sealed is None or dirty.sealed.data_path != dirty.data_path:
            return self._fd(dirty.data_path)
        source = self._fd(dirty.data_path)
        dirty.data_generation += 1
        path = self.data_path(dirty.id, dirty.data_generation)
        with _disk_errors():
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                for start, end in dirty.written:
                    _copy_range(source, fd, start, end)
                os.ftruncate(fd, dirty.size)
            except BaseException:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
        self._fds[path] = fd
        dirty.data_path = path
        return fd

    def write(self, dirty: DirtyFile, offset: int, data: bytes) -> None:
        fd = self._writable(dirty)
        view = memoryview(data)
        position = offset
        with _disk_errors():
            while view:
                written = os.pwrite(fd, view, position)
                view = view[written:]
                position += written
        dirty.written.add(offset, offset + len(data))
        dirty.size = max(dirty.size, offset + len(data))
        dirty.mtime_ns = time.time_ns()
        dirty.generation += 1

    def truncate(self, dirty: DirtyFile, size: int) -> None:
        fd = self._writable(dirty)
        if size < dirty.size:
            dirty.written.remove(size, dirty.size)
            dirty.base_limit = min(dirty.base_limit, size)
        with _disk_errors():
            os.ftruncate(fd, size)
        dirty.size = size
        dirty.mtime_ns = time.time_ns()
        dirty.generation += 1

    def restart(self, dirty: DirtyFile, options: WriteOptions | None = None) -> None:
        """Empty the live state and cut it from its base (O_TRUNC, a create over the file);
        the acknowledged snapshot, if any, stays until the next one replaces it."""
        self.truncate(dirty, 0)
        dirty.base, dirty.base_limit = None, 0
        if options is not None:
            dirty.options = options

    def edit(self, dirty: DirtyFile, options: WriteOptions, mtime_ns: int) -> None:
        """New object options (chmod, chown, utimens, xattrs); the bytes are unchanged."""
        dirty.options = options
        dirty.mtime_ns = mtime_ns
        dirty.generation += 1

    def read(self, path: Path, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of a data file (live or sealed); a sparse tail reads as zeros."""
        data = os.pread(self._fd(path), stop - start, start)
        return data + bytes(stop - start - len(data))

    # --- acknowledgement -----------------------------------------------------------------

    def seal(self, dirty: DirtyFile) -> tuple[Snapshot, Snapshot | None]:
        """Make the live state durable and acknowledged: (the new snapshot, the one it
        replaces, whose data file the caller forgets once the journal holds the new one)."""
        with _disk_errors():
            os.fsync(self._fd(dirty.data_path))
        previous = dirty.sealed
        dirty.sealed = dirty.state()
        dirty.sealed_generation = dirty.generation
        return dirty.sealed, previous

    def forget(self, dirty: DirtyFile, snapshot: Snapshot) -> None:
        """A snapshot no longer needed: its data file goes unless the file still uses it."""
        if snapshot.data_path != dirty.data_path and (dirty.sealed is None
                                                      or snapshot.data_path != dirty.sealed.data_path):
            self._close(snapshot.data_path)
            snapshot.data_path.unlink(missing_ok=True)

    def committed(self, dirty: DirtyFile, generation: int, new_base: ObjectRef) -> None:
        """The state of `generation` is the object `new_base` now: the snapshot is done with,
        and a live state that moved on since starts from the new object (its bytes outside
        what it staged are the same there)."""
        dirty.committed_generation = max(dirty.committed_generation, generation)
        sealed = dirty.sealed
        if sealed is not None and dirty.sealed_generation <= generation:
            dirty.sealed = None
            self.forget(dirty, sealed)
        if dirty.base is not None:
            dirty.base = new_base

    def sweep(self, keep: set[Path]) -> None:
        """Remove the data files no recovered record refers to (a crash left them)."""
        if not self.dir.exists():
            return
        for path in self.dir.glob("*.data"):
            if path not in keep:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _copy_range(source: int, dest: int, start: int, end: int) -> None:
    """Copy [start, end) between two files (in the kernel; a reflink where the disk can)."""
    position = start
    while position < end:
        copied = os.copy_file_range(source, dest, min(end - position, COPY_CHUNK_BYTES), position, position)
        if copied == 0:  # the source ends early: the rest reads as zeros
            return
        position += copied


class _disk_errors:
    """A full cache disk becomes CacheFull (ENOSPC for the writer); nothing else changes."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> Literal[False]:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CacheFull("the cache disk is full: the write was not staged") from exc
        return False
