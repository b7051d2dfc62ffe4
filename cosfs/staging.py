"""StagingArea: written-but-not-committed file data on local disk, with a journal.

A dirty file is a sparse staging file holding the bytes the application wrote, at their own
offsets, plus a record of which ranges they are (`written`). Everything else reads from the
base object (the version the file was opened on, below `base_limit`) or as zeros. So a 4 KiB
write into a 10 GiB object stages 4 KiB, and the uploader copies the untouched ranges
server-side.

The journal is `<key hash>.json` beside `<key hash>.data` under `<cache_dir>/staging/`. It is
rewritten (temp file, fsync, rename) at every point where the application is told its data
is safe and it is not yet in COS (close with write-back delay, before an upload that could
leave something behind, after a failed one), before a journaled file's size changes, and when a file moves
to another key, so after a crash the next mount with the same cache directory finds every
acknowledged change and commits it. Each record names the bucket and endpoint it belongs to
(a journal is never replayed into another bucket) and carries a sequence number: a re-keyed
file's new record (written first) names the key it replaces, and wins over that key's
older record if a crash left both.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cosfs import crashpoints
from cosfs.blocks import ObjectRef
from cosfs.cos.store import WriteOptions
from cosfs.durable import private_dir, write_json_durably
from cosfs.errors import CacheFull
from cosfs.ranges import RangeSet

log = logging.getLogger(__name__)

JOURNAL_VERSION = 2
# Keys of files that lost their name while open (unlink, rename over them): NUL can never be
# in an object key, so these are never uploaded and never collide with a real name.
ORPHAN_PREFIX = "\0orphan/"


@dataclasses.dataclass
class DirtyFile:
    """One file with changes not yet committed to COS.

    Invariants: `written` lies within [0, size); bytes in `written` are in the staging file at
    the same offsets; bytes outside it below `base_limit` come from `base`, and the rest are
    zeros. `generation` grows with every change; `committed_generation` is the generation the
    object in COS reflects (the file is clean when they are equal).
    """

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
    # The commit in flight, for status: bytes uploaded of `uploading_total`.
    uploading_total: int = 0
    uploaded: int = 0
    last_error: str = ""
    # The multipart upload that receives parts while the file is written (uploader's
    # StreamingUpload), None when the file will upload at close.
    stream: Any = None
    # Multipart upload ids of ours that a crash may leave behind: aborted at recovery.
    upload_ids: list[str] = dataclasses.field(default_factory=list)
    # True once a journal record exists: later size changes are journaled before they happen.
    journaled: bool = False
    # The key this file was staged under before its last re-key (a record of that key older
    # than this file's is stale: recovery drops it).
    renamed_from: str | None = None

    @property
    def clean(self) -> bool:
        return self.committed_generation == self.generation

    def pieces(self, offset: int, end: int) -> Iterator[tuple[int, int, str]]:
        """(start, stop, source) covering [offset, end): source is 'staged', 'base' or 'zero'."""
        for a, b, inside in self.written.split(offset, end):
            if inside:
                yield a, b, "staged"
                continue
            limit = self.base_limit if self.base is not None else 0
            if a < limit:
                yield a, min(b, limit), "base"
                if b > limit:
                    yield limit, b, "zero"
            else:
                yield a, b, "zero"


class StagingArea:
    """Owner of dirty files, keyed by object key.

    Invariants: `_files[key].key == key`; each DirtyFile's data file exists while it is in
    `_files`; a journal file exists for every DirtyFile that was ever acknowledged.
    """

    def __init__(self, cache_dir: Path, owner: dict[str, str] | None = None) -> None:
        self._dir = cache_dir / "staging"
        self._files: dict[str, DirtyFile] = {}
        self._fds: dict[str, int] = {}
        # Bucket and endpoint: written into every record, checked at recovery.
        self._owner = dict(owner or {})
        self._seq = 0

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

    def _stem(self, key: str) -> Path:
        return self._dir / hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:48]

    def _fd(self, dirty: DirtyFile) -> int:
        fd = self._fds.get(dirty.key)
        if fd is None:
            fd = os.open(dirty.data_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._fds[dirty.key] = fd
        return fd

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, key: str, base: ObjectRef | None, size: int, options: WriteOptions) -> DirtyFile:
        """A dirty file for `key`: `base` is the object it starts from (None for a new or
        truncated file), `size` its current size."""
        private_dir(self._dir)
        stem = self._stem(key)
        data_path = stem.with_suffix(".data")
        with _disk_errors():
            fd = os.open(data_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._fds[key] = fd
        dirty = DirtyFile(key, data_path, base, base.size_bytes if base else 0, size, RangeSet(), options, time.time_ns())
        self._files[key] = dirty
        return dirty

    def drop(self, key: str) -> None:
        """Forget a dirty file and its disk files (after commit, or after unlink)."""
        self._files.pop(key, None)
        fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)
        stem = self._stem(key)
        for suffix in (".json", ".data"):
            stem.with_suffix(suffix).unlink(missing_ok=True)

    def rekey(self, old: str, new: str) -> None:
        """Move a dirty file to another key (rename, or an open file losing its name). The
        new record is durable before the old one goes, so a crash in between leaves a state
        recovery resolves (the newer record names the key it replaces)."""
        dirty = self._files[old]
        fd = self._fds.pop(old, None)
        if fd is not None:
            os.close(fd)
        self.drop(new)
        old_data, new_data = dirty.data_path, self._stem(new).with_suffix(".data")
        with _disk_errors():
            os.link(old_data, new_data)
        del self._files[old]
        dirty.key, dirty.data_path = new, new_data
        dirty.renamed_from = old if dirty.journaled else None
        dirty.generation += 1
        self._files[new] = dirty
        if dirty.renamed_from is not None:
            self.save(dirty)
            crashpoints.reached("rekey-new-record")
            self._stem(old).with_suffix(".json").unlink(missing_ok=True)
        old_data.unlink()

    # --- data ----------------------------------------------------------------------------

    def write(self, dirty: DirtyFile, offset: int, data: bytes) -> None:
        fd = self._fd(dirty)
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

    def read_staged(self, dirty: DirtyFile, start: int, stop: int) -> bytes:
        data = os.pread(self._fd(dirty), stop - start, start)
        # A sparse tail the data file does not reach reads as zeros.
        return data + bytes(stop - start - len(data))

    def truncate(self, dirty: DirtyFile, size: int) -> None:
        """Change the size. A journaled file's record changes first: a crash must never
        replay an old size over bytes that are gone (they would come back as zeros)."""
        if size < dirty.size:
            dirty.written.remove(size, dirty.size)
            dirty.base_limit = min(dirty.base_limit, size)
        dirty.size = size
        dirty.mtime_ns = time.time_ns()
        dirty.generation += 1
        if dirty.journaled:
            self.save(dirty, data=False)
            crashpoints.reached("truncate-journaled")
        with _disk_errors():
            os.ftruncate(self._fd(dirty), size)

    # --- journal -------------------------------------------------------------------------

    def save(self, dirty: DirtyFile, *, data: bool = True) -> None:
        """Make the dirty file's state (and, unless data=False, its data) durable on disk."""
        self._seq = max(self._seq + 1, time.time_ns())
        record = {
            "version": JOURNAL_VERSION,
            **self._owner,
            "seq": self._seq,
            "key": dirty.key,
            "renamed_from": dirty.renamed_from,
            "base": None if dirty.base is None else [dirty.base.key, dirty.base.etag, dirty.base.size_bytes],
            "base_limit": dirty.base_limit,
            "size": dirty.size,
            "written": dirty.written.to_list(),
            "content_type": dirty.options.content_type,
            "user_meta": dict(dirty.options.user_meta),
            "mtime_ns": dirty.mtime_ns,
            "upload_ids": list(dirty.upload_ids),
        }
        with _disk_errors():
            if data:
                os.fsync(self._fd(dirty))
            write_json_durably(self._stem(dirty.key).with_suffix(".json"), record)
        dirty.journaled = True
        crashpoints.reached("journal-saved")

    def recover(self) -> list[DirtyFile]:
        """Dirty files journaled by an earlier mount of this bucket (records of another
        bucket or endpoint, and records that do not match their data, are kept for
        inspection and never replayed)."""
        if not self._dir.exists():
            return []
        records: dict[str, tuple[Path, dict]] = {}
        for path in sorted(self._dir.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                self._check_record(record, path.with_suffix(".data"))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("staging journal %s is not replayed (%s); kept for inspection", path, exc)
                continue
            records[record["key"]] = (path, record)
        for key, (path, record) in list(records.items()):
            replaced = records.get(record.get("renamed_from") or "")
            if replaced is not None and replaced[1]["seq"] < record["seq"]:
                # A re-key that a crash interrupted: the new record wins, the old name is gone.
                replaced[0].unlink(missing_ok=True)
                replaced[0].with_suffix(".data").unlink(missing_ok=True)
                del records[replaced[1]["key"]]
        recovered = []
        for path, record in records.values():
            base = ObjectRef(*record["base"]) if record["base"] else None
            dirty = DirtyFile(
                record["key"], path.with_suffix(".data"), base, record["base_limit"], record["size"],
                RangeSet(tuple(r) for r in record["written"]),
                WriteOptions(content_type=record["content_type"], user_meta=record["user_meta"]),
                record["mtime_ns"], upload_ids=list(record.get("upload_ids", [])), journaled=True,
            )
            self._files[dirty.key] = dirty
            recovered.append(dirty)
        for leftover in self._dir.glob("*.json.tmp"):
            leftover.unlink(missing_ok=True)
        return recovered

    def _check_record(self, record: dict, data_path: Path) -> None:
        if record.get("version") != JOURNAL_VERSION:
            raise ValueError(f"journal version {record.get('version')} is not {JOURNAL_VERSION}")
        for field, value in self._owner.items():
            if record.get(field) != value:
                raise ValueError(f"it belongs to {field} {record.get(field)!r}, this mount is {value!r}")
        written = RangeSet(tuple(r) for r in record["written"])
        end = max((b for _, b in written.to_list()), default=0)
        if end > record["size"] or data_path.stat().st_size < end:
            raise ValueError("its data file does not hold the bytes it records")

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class _disk_errors:
    """A full cache disk becomes CacheFull (ENOSPC for the writer); nothing else changes."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CacheFull("the cache disk is full: the write was not staged") from exc
        return False
