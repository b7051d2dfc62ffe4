"""Journal: what the next mount must finish, on the local disk beside the staged data.

Two kinds of record, both under `<cache_dir>/staging/`, written atomically (temp file,
fsync, rename, directory fsync):

- `<id>.json`: the acknowledged state of one dirty file (by its id, not its key): its key,
  the data file of its sealed snapshot, base, sizes, written ranges and object options. It is
  written only at an acknowledgement point, under the key's lock, after the snapshot's data
  is durable, and is the only thing recovery commits. A rename rewrites it with the new key
  (one atomic replace: no lineage to get wrong). Two records that name one key can exist
  only for the moment of a rename over a staged file: the newer (higher `seq`) wins.
- `<id>.uploads.json`: the multipart uploads of ours that a crash could leave behind (key,
  upload id), and the commit token of the upload attempt in flight. It implies no content:
  recovery aborts these uploads (or resumes one for an acknowledged state, keeping only the
  parts whose MD5 is the staged bytes'), and reads the token to recognise an attempt that
  landed although the mount never saw it finish.

Records name the bucket and endpoint they belong to and are never replayed into another.
Records of version 2 (one per key hash, before the ids) are read too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from cosfs.blocks import ObjectRef
from cosfs.cos.store import WriteOptions
from cosfs.durable import private_dir, write_json_durably
from cosfs.write.staging import DirtyFile, Snapshot

log = logging.getLogger(__name__)

VERSION = 3


@dataclasses.dataclass
class Record:
    """An acknowledged state found on disk."""

    file_id: str
    key: str
    seq: int
    snapshot: Snapshot
    generation: int
    path: Path
    refused: str = ""


@dataclasses.dataclass
class Uploads:
    """Multipart uploads of ours found on disk, and the commit token of an attempt."""

    file_id: str
    uploads: list[tuple[str, str]]
    attempt_token: str | None
    path: Path


class Journal:
    """Owner of the records (see the module docstring)."""

    def __init__(self, directory: Path, owner: dict[str, str] | None = None) -> None:
        self.dir = directory
        self._owner = dict(owner or {})  # bucket and endpoint, checked at recovery
        self._seq = 0

    def _next_seq(self) -> int:
        self._seq = max(self._seq + 1, time.time_ns())
        return self._seq

    def record_path(self, file_id: str) -> Path:
        return self.dir / f"{file_id}.json"

    def uploads_path(self, file_id: str) -> Path:
        return self.dir / f"{file_id}.uploads.json"

    # --- writing (callers hold the key's lock) -------------------------------------------

    def save(self, dirty: DirtyFile) -> None:
        """Record the dirty file's sealed snapshot under its current key."""
        snapshot = dirty.sealed
        assert snapshot is not None, dirty.key
        private_dir(self.dir)
        write_json_durably(self.record_path(dirty.id), {
            "version": VERSION,
            **self._owner,
            "seq": self._next_seq(),
            "id": dirty.id,
            "key": dirty.key,
            "data": snapshot.data_path.name,
            "base": None if snapshot.base is None else [snapshot.base.key, snapshot.base.etag,
                                                          snapshot.base.size_bytes],
            "base_limit": snapshot.base_limit,
            "size": snapshot.size,
            "written": [list(r) for r in snapshot.written],
            "content_type": snapshot.options.content_type,
            "user_meta": dict(snapshot.options.user_meta),
            "mtime_ns": snapshot.mtime_ns,
            # COS refused this state for good: the next mount keeps it staged, not retried.
            "refused": dirty.refused if dirty.refused and dirty.refused_generation == dirty.sealed_generation else "",
        })

    def save_uploads(self, dirty: DirtyFile, attempt_token: str | None = None) -> None:
        """Record the file's multipart uploads (and the token of the attempt about to start)."""
        if not dirty.upload_ids and attempt_token is None:
            self.uploads_path(dirty.id).unlink(missing_ok=True)
            return
        private_dir(self.dir)
        write_json_durably(self.uploads_path(dirty.id), {
            "version": VERSION, **self._owner, "id": dirty.id,
            "uploads": [list(pair) for pair in dirty.upload_ids], "attempt_token": attempt_token,
        })

    def delete(self, file_id: str) -> None:
        """The file is committed, discarded or unlinked: nothing of it is left to finish."""
        self.record_path(file_id).unlink(missing_ok=True)
        self.uploads_path(file_id).unlink(missing_ok=True)

    # --- recovery ------------------------------------------------------------------------

    def load(self) -> tuple[list[Record], list[Uploads]]:
        """The acknowledged states to finish (one per key: the newest) and the multipart
        uploads to resume or abort. Unreadable records, and records of another bucket or
        endpoint, are left in place for inspection and never replayed."""
        if not self.dir.exists():
            return [], []
        records: dict[str, Record] = {}
        uploads: list[Uploads] = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
                self._check_owner(document)
                if path.name.endswith(".uploads.json"):
                    uploads.append(Uploads(document["id"], [tuple(p) for p in document["uploads"]],
                                           document.get("attempt_token"), path))
                    continue
                record = self._record(document, path)
                if document["version"] == 2 and document.get("upload_ids"):
                    uploads.append(Uploads(record.file_id, [(record.key, u) for u in document["upload_ids"]], None,
                                           self.uploads_path(record.file_id)))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("staging journal %s is not replayed (%s); kept for inspection", path, exc)
                continue
            kept = records.get(record.key)
            if kept is None or kept.seq < record.seq:
                if kept is not None:
                    self._superseded(kept)
                records[record.key] = record
            else:
                self._superseded(record)
        for leftover in self.dir.glob("*.json.tmp"):
            leftover.unlink(missing_ok=True)
        return list(records.values()), uploads

    def _superseded(self, record: Record) -> None:
        """A record replaced by a rename over its key that a crash interrupted."""
        record.path.unlink(missing_ok=True)

    def _check_owner(self, document: dict) -> None:
        if document.get("version") not in (2, VERSION):
            raise ValueError(f"journal version {document.get('version')} is not {VERSION}")
        for field, value in self._owner.items():
            if document.get(field) != value:
                raise ValueError(f"it belongs to {field} {document.get(field)!r}, this mount is {value!r}")

    def _record(self, document: dict, path: Path) -> Record:
        if document["version"] == 2:  # one record per key hash, its data beside it
            file_id, data_path, generation = path.stem, path.with_suffix(".data"), 0
        else:
            file_id, data_path = document["id"], self.dir / document["data"]
            generation = int(data_path.stem.rsplit("-", 1)[1])
        written = tuple((int(a), int(b)) for a, b in document["written"])
        end = max((b for _, b in written), default=0)
        if end > document["size"] or data_path.stat().st_size < end:
            raise ValueError("its data file does not hold the bytes it records")
        base = ObjectRef(*document["base"]) if document["base"] else None
        snapshot = Snapshot(data_path, base, document["base_limit"], document["size"], written,
                            WriteOptions(content_type=document["content_type"], user_meta=document["user_meta"]),
                            document["mtime_ns"])
        self._seq = max(self._seq, document["seq"])
        return Record(file_id, document["key"], document["seq"], snapshot, generation, path,
                      str(document.get("refused") or ""))
