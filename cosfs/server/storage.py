"""File-backed buckets for `cosfs serve`: atomic objects, multipart staging, safe key mapping.

Layout under ``--root``::

    ROOT/.cosfs-serve-root                                  marks a root this server made
    ROOT/<bucket>/objects/<h0h1>/<h2h3>/<sha256(key) hex>   one file per object
    ROOT/<bucket>/uploads/<upload id>/upload.json           a multipart upload's final headers
    ROOT/<bucket>/uploads/<upload id>/<part number>         one file per uploaded part
    ROOT/<bucket>/tmp/                                      files being written (wiped at startup)
    ROOT/<bucket>/bucket.json                               the bucket's ACL and CORS rules

**Whose files.** A root is used only if it is new, empty or carries the marker, so pointing
``--root`` at a directory of other files fails instead of deleting them. Even in its own root
the server deletes at startup only names it makes: temp files (`TEMP_NAME`) and
``.deleted-<bucket>`` directories.

**Key mapping.** A key never becomes a path: the object file is named by the SHA-256 of the
key's UTF-8 bytes, two fan-out directories deep. Any legal key (``..``, ``//``, a trailing
``/``, unicode, control characters, 850 bytes) maps to a fixed-length name inside the
bucket's ``objects/`` directory, so nothing escapes the root and names never exceed 255 bytes.
The key itself is stored inside the file, and every read compares it, so even a SHA-256
collision could not serve one key's data for another (it would read as missing).

**One file per version.** An object file holds the body followed by its metadata::

    body bytes | metadata JSON (UTF-8) | 8-byte big-endian JSON length | magic b"COSFSOB1"

Data and metadata are written together into a temp file under ``tmp/``, fsynced, and then
renamed over the object path. A rename is atomic, so a reader (who opens the file once and
reads both body and metadata through that one descriptor) always sees a complete, matching
version; a kill -9 at any point leaves either the old file or the new one, plus perhaps a
temp file that the next start removes. Uploaded parts use the same format. Received chunks
of zeros are left as holes, and copies (multipart Complete, copy-object) keep them holes, so a
sparse object costs the disk only its data.

**Index.** Each bucket keeps an in-memory dict key -> `ObjectRecord` and a sorted key list
(sorted by code point, which equals UTF-8 byte order), rebuilt at startup by reading the
trailers. Renames and index updates happen together on the trio thread with no await in
between, so the index always names the file that is on disk. Blocking work (writing, hashing,
fsync, copying) runs in `trio.to_thread.run_sync`.

**What it acknowledges, it keeps.** A write is validated in the same synchronous step that
installs it (`Bucket.commit`'s `check`), never checked, awaited on, then installed: of two
APPENDs at one position one wins and the other gets AppendPositionErr. An upload's parts
change only under its lock, which Complete holds from choosing the parts to installing the
object. Files, and the directory entries they depend on (fan-out directories made for them,
renames into place, unlinks, uploads, buckets, bucket.json), are fsynced before the answer.

**Bucket configuration.** ``ROOT/<bucket>/bucket.json`` holds the bucket's ACL and CORS rules
(replaced atomically); an object's own ACL is part of its metadata trailer.

The COS rules themselves are not here: listing, part checks and append positions are in
`cosfs.cos.rules`, shared with the in-memory store; ACL and CORS semantics in the server's
`acl` and `cors`. This module is the on-disk format.
"""

from __future__ import annotations

import base64
import bisect
import builtins
import dataclasses
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Literal

import trio

from cosfs.cos import crc64, rules
from cosfs.errors import CosError
from cosfs.server.acl import Acl
from cosfs.server.cors import CorsRule

ROOT_MARKER = ".cosfs-serve-root"
# The names this module gives temp files and directories under tmp/, and upload ids.
TEMP_NAME = re.compile(r"[0-9a-f]+-[0-9a-f]{16}|(?:upload|aborted|done)-[0-9a-f]+")
UPLOAD_ID = re.compile(r"[0-9a-f]+")
MAGIC = b"COSFSOB1"
TRAILER = struct.Struct(">Q8s")
COPY_CHUNK = 64 * 1024 * 1024
WRITE_BATCH_BYTES = 4 * 1024 * 1024
# Received file pages of zeros are stored as holes: a sparse upload (a disk image, the
# benchmark's 8 GiB object) takes no more disk than its data.
HOLE_PAGE = 4096
_ZERO_PAGE = bytes(HOLE_PAGE)


class ForeignRoot(Exception):
    """The --root directory holds files this server did not make."""


@dataclasses.dataclass(frozen=True)
class ObjectRecord:
    """Everything stored about one object version (or one uploaded part)."""

    key: str
    size: int
    etag: str  # without quotes: md5 hex, or "<hex>-N" for multipart
    crc64: int
    last_modified: float
    content_type: str = "application/octet-stream"
    # stored standard headers (cache-control, content-disposition, ...) and x-cos-meta-*,
    # names lower-cased
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    storage_class: str = "STANDARD"
    appendable: bool = False
    parts: int = 0
    # the object's own ACL (Acl.to_json()); None: as the bucket says ("default")
    acl: Mapping | None = None

    @property
    def object_acl(self) -> Acl | None:
        return Acl.from_json(self.acl)

    def to_json(self) -> bytes:
        doc = dataclasses.asdict(self)
        doc["headers"] = dict(self.headers)
        return json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "ObjectRecord":
        doc = json.loads(data)
        return cls(**doc)


@dataclasses.dataclass
class Upload:
    """A multipart upload in progress: the final object's headers and its parts so far."""

    upload_id: str
    key: str
    initiated: float
    content_type: str
    headers: dict[str, str]
    storage_class: str
    parts: dict[int, ObjectRecord] = dataclasses.field(default_factory=dict)
    acl: dict | None = None  # the final object's ACL (Acl.to_json()), None: default
    # held by Complete from checking the parts to installing the object, and by every part's
    # installation and Abort: parts never change under Complete
    lock: trio.Lock = dataclasses.field(default_factory=trio.Lock, repr=False, compare=False)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def object_relpath(key: str) -> str:
    """The path of a key's object file relative to the bucket's objects/ directory."""
    digest = key_digest(key)
    return f"{digest[0:2]}/{digest[2:4]}/{digest}"


def _write_all(fd: int, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]


def _write_sparse(fd: int, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
    """Append chunks at the file position, leaving holes where a chunk holds whole file pages
    of zeros (the file grows when the next write or the trailer lands past a hole)."""
    for chunk in chunks:
        if not isinstance(chunk, (bytes, bytearray)):
            _write_all(fd, [chunk])
            continue
        position = os.lseek(fd, 0, os.SEEK_CUR)  # the file offset of chunk[0]
        written = search = 0
        while (start := chunk.find(_ZERO_PAGE, search)) >= 0:
            end = start + HOLE_PAGE
            while chunk.startswith(_ZERO_PAGE, end):
                end += HOLE_PAGE
            hole_start = start + (-(position + start)) % HOLE_PAGE  # whole pages of the file only
            hole_end = end - (position + end) % HOLE_PAGE
            if hole_end > hole_start:
                _write_all(fd, [memoryview(chunk)[written:hole_start]])
                os.lseek(fd, hole_end - hole_start, os.SEEK_CUR)
                written = hole_end
            search = end
        _write_all(fd, [memoryview(chunk)[written:]])


def read_record(fd: int, file_size: int | None = None) -> ObjectRecord:
    """The metadata trailer of an object or part file open at `fd`."""
    if file_size is None:
        file_size = os.fstat(fd).st_size
    if file_size < TRAILER.size:
        raise ValueError("file too short for a trailer")
    meta_len, magic = TRAILER.unpack(os.pread(fd, TRAILER.size, file_size - TRAILER.size))
    if magic != MAGIC or meta_len > file_size - TRAILER.size:
        raise ValueError("bad trailer")
    meta = os.pread(fd, meta_len, file_size - TRAILER.size - meta_len)
    record = ObjectRecord.from_json(meta)
    if record.size != file_size - TRAILER.size - meta_len:
        raise ValueError("size does not match the trailer")
    return record


def _trailer(record: ObjectRecord) -> bytes:
    meta = record.to_json()
    return meta + TRAILER.pack(len(meta), MAGIC)


def _copy_range(src_fd: int, dst_fd: int, offset: int, length: int) -> None:
    """Append `length` bytes of src at `offset` to dst at its file position (kernel copy
    when possible), keeping the source's holes holes."""
    end = offset + length
    while offset < end:
        try:
            data = min(os.lseek(src_fd, offset, os.SEEK_DATA), end)
        except OSError as exc:  # ENXIO: only a hole is left before the end of the file
            if exc.errno != errno.ENXIO:
                raise
            data = end
        if data > offset:
            os.lseek(dst_fd, data - offset, os.SEEK_CUR)
            offset = data
            continue
        hole = min(os.lseek(src_fd, offset, os.SEEK_HOLE), end)
        _copy_data(src_fd, dst_fd, offset, hole - offset)
        offset = hole


def _copy_data(src_fd: int, dst_fd: int, offset: int, length: int) -> None:
    while length > 0:
        try:
            n = os.copy_file_range(src_fd, dst_fd, min(length, COPY_CHUNK), offset)
        except OSError:
            n = 0
        if n <= 0:
            data = os.pread(src_fd, min(length, COPY_CHUNK), offset)
            if not data:
                raise OSError("source shorter than expected")
            _write_all(dst_fd, [data])
            n = len(data)
        offset += n
        length -= n


def _crc_of_range(fd: int, offset: int, length: int) -> tuple[int, str]:
    crc = 0
    md5 = hashlib.md5()
    while length > 0:
        data = os.pread(fd, min(length, 8 * 1024 * 1024), offset)
        if not data:
            raise OSError("source shorter than expected")
        crc = crc64.update(crc, data)
        md5.update(data)
        offset += len(data)
        length -= len(data)
    return crc, md5.hexdigest()


class TempFile:
    """A file being written in a bucket's tmp/ area, hashed (MD5, CRC64) as it grows."""

    def __init__(self, tmp_dir: Path) -> None:
        self.path = tmp_dir / f"{time.time_ns():x}-{secrets.token_hex(8)}"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.md5 = hashlib.md5()
        self.crc = 0
        self.size = 0
        self.sha256: "hashlib._Hash | None" = None
        self._closed = False

    def hash(self, chunks: list[bytes]) -> None:
        """Update MD5/CRC64 (and SHA-256 if wanted) with chunks (blocking; releases the GIL)."""
        for chunk in chunks:
            self.md5.update(chunk)
            self.crc = crc64.update(self.crc, chunk)
            if self.sha256 is not None:
                self.sha256.update(chunk)

    def write(self, chunks: list[bytes]) -> None:
        """Append chunks to the file (blocking); runs of zeros become holes."""
        _write_sparse(self.fd, chunks)
        self.size += sum(len(chunk) for chunk in chunks)

    def append_from(self, src_fd: int, offset: int, length: int, crc: int | None = None) -> None:
        """Copy a range of another file (blocking). The MD5 is not maintained by this path."""
        _copy_range(src_fd, self.fd, offset, length)
        if crc is None:
            crc, _ = _crc_of_range(src_fd, offset, length)
        self.crc = crc64.combine(self.crc, crc, length) if self.size else crc
        self.size += length

    def finish(self, record: ObjectRecord, durable: bool = True) -> None:
        """Append the trailer and (unless durable=False) make the file durable (blocking)."""
        _write_all(self.fd, [_trailer(record)])
        if durable:
            os.fsync(self.fd)
        os.close(self.fd)
        self._closed = True

    def discard(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                os.close(self.fd)
            except OSError:
                pass
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


async def absorb_stream(temp: TempFile, chunks: AsyncIterator[bytes], limit: int | None) -> None:
    """Write an async stream of chunks to `temp`.

    Three things overlap: receiving the next batch (trio thread), hashing one batch (MD5 runs
    at roughly 700 MB/s here) and writing one batch (page-cache writes run at roughly
    400 MB/s); hashing and writing each get their own worker thread, fed batch by batch.
    """
    hash_send, hash_receive = trio.open_memory_channel[list[bytes]](2)
    write_send, write_receive = trio.open_memory_channel[list[bytes]](2)

    async def worker(receive, step) -> None:
        async with receive:
            async for batch in receive:
                await trio.to_thread.run_sync(step, batch)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker, hash_receive, temp.hash, name="put-hasher")
            nursery.start_soon(worker, write_receive, temp.write, name="put-writer")
            async with hash_send, write_send:
                batch: list[bytes] = []
                batch_bytes = 0
                total = 0
                async for chunk in chunks:
                    total += len(chunk)
                    if limit is not None and total > limit:
                        raise rules.error("EntityTooLarge",
                                          "Your proposed upload exceeds the maximum allowed object size.")
                    batch.append(chunk)
                    batch_bytes += len(chunk)
                    if batch_bytes >= WRITE_BATCH_BYTES:
                        await hash_send.send(batch)
                        await write_send.send(batch)
                        batch, batch_bytes = [], 0
                if batch:
                    await hash_send.send(batch)
                    await write_send.send(batch)
    except BaseExceptionGroup as group:
        # trio wraps what the receiving loop raised (the client left, sent a bad chunk, took too
        # long, sent too much) in a group; the workers were merely cancelled. Raise the error
        # itself so that the handlers answer it as they do when it is raised outside a nursery.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def _fsync_dir(path: Path) -> None:
    """Make the entries of directory `path` durable (blocking)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dirs(paths: Iterable[Path]) -> None:
    for path in dict.fromkeys(paths):
        _fsync_dir(path)


def make_dirs_durable(path: Path, within: Path | None = None) -> None:
    """mkdir -p `path`, then fsync the parent of every directory it created, deepest last, so
    that what is later renamed into `path` survives a power cut (blocking). With `within`,
    only directories below it are made: if it is gone (a deleted bucket), FileNotFoundError."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        if within is not None and probe == within:
            raise FileNotFoundError(f"{within} is gone")
        missing.append(probe)
        probe = probe.parent
    if not missing:
        return
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            pass
    _fsync_dirs(created.parent for created in reversed(missing))


def write_file_durable(path: Path, data: bytes, tmp_dir: Path) -> None:
    """Replace `path` with `data` atomically and durably: temp file in `tmp_dir`, fsync,
    rename, fsync of the directory (blocking)."""
    temp = tmp_dir / f"{time.time_ns():x}-{secrets.token_hex(8)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, [data])
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def no_such_upload() -> CosError:
    return rules.error("NoSuchUpload", "The specified upload does not exist.")


class Bucket:
    """One bucket directory and its in-memory index.

    Invariants: `records` and `sorted_keys` hold the same keys; each record describes the file
    at `object_path(key)`. Both change only in `_install` and `delete`, synchronously on the
    trio thread, so a check made in the same synchronous step (see `commit`'s `check`) still
    holds when the file is renamed: no check-then-await-then-install. An upload's parts change
    under `Upload.lock`, which Complete holds from checking the parts to installing the object.

    Durability: an answer is sent only after the file and every directory entry it depends on
    are fsynced: object and upload files, the fan-out directories created for them, renames
    into place, unlinks (a deleted object must not come back), bucket creation and removal.
    Parts are the exception (see `commit_part`).
    """

    CONFIG = "bucket.json"

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.objects_dir = path / "objects"
        self.uploads_dir = path / "uploads"
        self.tmp_dir = path / "tmp"
        self.records: dict[str, ObjectRecord] = {}
        self.sorted_keys: list[str] = []
        self.uploads: dict[str, Upload] = {}
        self.created = time.time()
        self.acl = Acl("private")
        self.cors: tuple[CorsRule, ...] | None = None
        self.config_lock = trio.Lock()
        self.deleted = False

    # --- startup --------------------------------------------------------------------

    def load(self) -> None:
        """Create the directories, wipe temp files, rebuild the index from disk (blocking)."""
        for directory in (self.objects_dir, self.uploads_dir, self.tmp_dir):
            make_dirs_durable(directory)
        for leftover in self.tmp_dir.iterdir():
            if not TEMP_NAME.fullmatch(leftover.name):
                continue
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        try:
            self.created = self.path.stat().st_mtime
        except OSError:
            pass
        self._load_config()
        for dirpath, _dirnames, filenames in os.walk(self.objects_dir):
            for filename in filenames:
                file_path = Path(dirpath) / filename
                try:
                    fd = os.open(file_path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        record = read_record(fd)
                    finally:
                        os.close(fd)
                except (OSError, ValueError, TypeError, KeyError):
                    continue
                if self.object_path(record.key) == file_path:
                    self.records[record.key] = record
        self.sorted_keys = sorted(self.records)
        for upload_dir in self.uploads_dir.iterdir():
            if not UPLOAD_ID.fullmatch(upload_dir.name):
                continue
            try:
                doc = json.loads((upload_dir / "upload.json").read_bytes())
                upload = Upload(
                    upload_id=upload_dir.name,
                    key=doc["key"],
                    initiated=doc["initiated"],
                    content_type=doc["content_type"],
                    headers=doc["headers"],
                    storage_class=doc["storage_class"],
                    acl=doc.get("acl"),
                )
            except (OSError, ValueError, KeyError):
                continue  # uploads are renamed into place with their upload.json: not ours (or damaged)
            for part_file in upload_dir.iterdir():
                if not part_file.name.isdigit():
                    continue
                try:
                    fd = os.open(part_file, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        upload.parts[int(part_file.name)] = read_record(fd)
                    finally:
                        os.close(fd)
                except (OSError, ValueError, TypeError, KeyError):
                    continue
            self.uploads[upload.upload_id] = upload

    # --- bucket configuration (ACL, CORS) -------------------------------------------

    def _load_config(self) -> None:
        try:
            doc = json.loads((self.path / self.CONFIG).read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            return
        acl = Acl.from_json(doc.get("acl"))
        if acl is not None:
            self.acl = acl
        cors = doc.get("cors")
        self.cors = tuple(CorsRule.from_json(rule) for rule in cors) if cors else None

    async def save_config(self, acl: Acl | None = None,
                          cors: tuple[CorsRule, ...] | None | Literal[False] = False) -> None:
        """Change the ACL and/or the CORS rules (cors=None removes them; False keeps them) and
        write bucket.json durably before the change shows."""
        async with self.config_lock:
            new_acl = acl if acl is not None else self.acl
            new_cors = self.cors if cors is False else cors
            doc = {"acl": new_acl.to_json(),
                   "cors": [rule.to_json() for rule in new_cors] if new_cors else None}
            data = json.dumps(doc, ensure_ascii=True, sort_keys=True).encode()
            await trio.to_thread.run_sync(write_file_durable, self.path / self.CONFIG, data, self.tmp_dir)
            self.acl = new_acl
            self.cors = new_cors

    # --- objects --------------------------------------------------------------------

    def object_path(self, key: str) -> Path:
        return self.objects_dir / object_relpath(key)

    def head(self, key: str) -> ObjectRecord | None:
        return self.records.get(key)

    def open_object(self, key: str) -> tuple[int, ObjectRecord] | None:
        """An open descriptor and the record of exactly that version (caller closes fd)."""
        try:
            fd = os.open(self.object_path(key), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            record = read_record(fd)
        except (OSError, ValueError, TypeError, KeyError):
            os.close(fd)
            return None
        if record.key != key:
            os.close(fd)
            return None
        return fd, record

    def new_temp(self) -> TempFile:
        return TempFile(self.tmp_dir)

    async def commit(self, temp: TempFile, record: ObjectRecord,
                     check: Callable[[ObjectRecord | None], None] | None = None) -> ObjectRecord:
        """Seal `temp` with `record` and make it the current version of record.key.

        `check(current record or None)`, if given, runs in the same synchronous step as the
        rename (no await between them), so what it validates still holds when the new version
        lands; it raises to refuse, and the temp file is discarded.
        """
        target = self.object_path(record.key)
        try:
            await trio.to_thread.run_sync(temp.finish, record)
            try:
                # (never re-creates the directories of a bucket deleted meanwhile)
                await trio.to_thread.run_sync(make_dirs_durable, target.parent, self.objects_dir)
            except FileNotFoundError:
                if self.deleted:
                    raise rules.error("NoSuchBucket", "The specified bucket does not exist.") from None
                raise
            # --- no await from here to the rename ---
            if self.deleted:
                raise rules.error("NoSuchBucket", "The specified bucket does not exist.")
            if check is not None:
                check(self.records.get(record.key))
            self._install(temp.path, target, record)
        except BaseException:
            temp.discard()
            raise
        await trio.to_thread.run_sync(_fsync_dir, target.parent)
        return record

    def _install(self, source: Path, target: Path, record: ObjectRecord) -> None:
        # no await here: the file on disk and the index change together
        os.rename(source, target)
        if record.key not in self.records:
            bisect.insort(self.sorted_keys, record.key)
        self.records[record.key] = record

    def _unlink(self, key: str) -> Path:
        # no await here: the file and the index entry go together
        path = self.object_path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        if key in self.records:
            del self.records[key]
            index = bisect.bisect_left(self.sorted_keys, key)
            if index < len(self.sorted_keys) and self.sorted_keys[index] == key:
                del self.sorted_keys[index]
        return path.parent

    async def delete(self, *keys: str) -> None:
        """Delete objects (missing ones too) and make the deletions durable."""
        directories = [self._unlink(key) for key in keys]
        await trio.to_thread.run_sync(_fsync_existing_dirs, directories)

    def list(self, prefix: str, delimiter: str, marker: str, max_keys: int) -> rules.ListResult:
        return rules.list_keys(self.sorted_keys, prefix, delimiter, marker, max_keys)

    async def copy_object(
        self, source: "Bucket", source_key: str, record_for: Callable[[ObjectRecord], ObjectRecord]
    ) -> ObjectRecord:
        """Copy source's current version into a new version built by record_for(source_record)."""
        opened = source.open_object(source_key)
        if opened is None:
            raise rules.error("NoSuchKey", "The specified key does not exist.")
        fd, src = opened
        temp = self.new_temp()
        try:
            record = record_for(src)
            await trio.to_thread.run_sync(temp.append_from, fd, 0, src.size, src.crc64)
        except BaseException:
            temp.discard()
            raise
        finally:
            os.close(fd)
        return await self.commit(temp, record)

    async def set_object_acl(self, key: str, acl: Acl) -> ObjectRecord:
        """Rewrite the object's trailer with a new ACL (same data, ETag and times), unless it
        changed meanwhile (then NoSuchKey if it is gone, else try again)."""
        for _ in range(8):
            opened = self.open_object(key)
            if opened is None:
                raise rules.error("NoSuchKey", "The specified key does not exist.")
            fd, current = opened
            temp = self.new_temp()
            try:
                await trio.to_thread.run_sync(temp.append_from, fd, 0, current.size, current.crc64)
            except BaseException:
                temp.discard()
                raise
            finally:
                os.close(fd)
            record = dataclasses.replace(current, acl=acl.to_json())

            def unchanged(now: ObjectRecord | None, current=current) -> None:
                if now != current:
                    raise _Changed()

            try:
                return await self.commit(temp, record, unchanged)
            except _Changed:
                continue
        raise rules.error("PathConflict", "The object kept changing; try again.")

    async def append(self, key: str, position: int, body: AsyncIterator[bytes],
                     make_record: Callable[[ObjectRecord | None, TempFile], ObjectRecord]) -> ObjectRecord:
        """APPEND Object: a new version = old data + body (the old one stays until the rename).

        The position is checked against the current version before the body is read, and
        again, with the version the data was copied from, in the step that installs the new
        one: of two appends at the same position, one wins and the other is refused."""
        opened = self.open_object(key)
        temp = self.new_temp()
        base: ObjectRecord | None = None
        try:
            if opened is None:
                rules.check_append(position, None, False)
            else:
                fd, base = opened
                try:
                    rules.check_append(position, base.size, base.appendable)
                    await trio.to_thread.run_sync(temp.append_from, fd, 0, base.size, base.crc64)
                finally:
                    os.close(fd)
            await absorb_stream(temp, body, rules.MAX_OBJECT_BYTES - position)
            record = make_record(base, temp)
        except BaseException:
            temp.discard()
            raise

        def same_base(current: ObjectRecord | None) -> None:
            if current != base:
                rules.check_append(position, current.size if current else None,
                                   current.appendable if current else False)
                raise rules.error("AppendPositionErr", "The object changed during the append.")

        return await self.commit(temp, record, same_base)

    # --- multipart ------------------------------------------------------------------

    async def create_upload(self, key: str, content_type: str, headers: dict[str, str], storage_class: str,
                            acl: Acl | None = None) -> Upload:
        upload_id = f"{int(time.time() * 1000):x}{secrets.token_hex(12)}"
        acl_doc = acl.to_json() if acl is not None else None
        upload = Upload(upload_id, key, time.time(), content_type, headers, storage_class, acl=acl_doc)
        doc = json.dumps(
            {"key": key, "initiated": upload.initiated, "content_type": content_type, "headers": headers,
             "storage_class": storage_class, "acl": acl_doc}
        ).encode()

        def write() -> None:
            staging = self.tmp_dir / f"upload-{upload_id}"
            staging.mkdir()
            with open(staging / "upload.json", "wb") as f:
                f.write(doc)
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(staging)
            os.rename(staging, self.uploads_dir / upload_id)
            _fsync_dir(self.uploads_dir)

        await trio.to_thread.run_sync(write)
        if self.deleted:
            raise rules.error("NoSuchBucket", "The specified bucket does not exist.")
        self.uploads[upload_id] = upload
        return upload

    def get_upload(self, upload_id: str, key: str) -> Upload:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise no_such_upload()
        return upload

    async def commit_part(self, upload: Upload, number: int, temp: TempFile, record: ObjectRecord) -> ObjectRecord:
        """Install a part, under the upload's lock: not while Complete is choosing and reading
        the parts, and not after it (or Abort) ended the upload.

        Parts are not fsynced one by one: Complete copies them into the object, which is.
        A process crash (kill -9) loses nothing; only an OS crash can lose parts of an
        upload that was never completed, which the client then sends again."""
        try:
            await trio.to_thread.run_sync(temp.finish, record, False)
            async with upload.lock:
                if self.uploads.get(upload.upload_id) is not upload:
                    raise no_such_upload()
                # no await: part file and the in-memory part table change together
                os.rename(temp.path, self.uploads_dir / upload.upload_id / str(number))
                upload.parts[number] = record
        except BaseException:
            temp.discard()
            raise
        return record

    async def abort_upload(self, upload: Upload) -> None:
        async with upload.lock:
            if self.uploads.get(upload.upload_id) is not upload:
                raise no_such_upload()
            await self._end_upload(upload, "aborted")

    async def _end_upload(self, upload: Upload, how: str) -> None:
        """Forget an upload and remove its directory (durably: it must not come back)."""
        self.uploads.pop(upload.upload_id, None)
        doomed = self.tmp_dir / f"{how}-{upload.upload_id}"
        try:
            os.rename(self.uploads_dir / upload.upload_id, doomed)
        except OSError:
            return

        def remove() -> None:
            _fsync_dir(self.uploads_dir)
            shutil.rmtree(doomed, ignore_errors=True)

        await trio.to_thread.run_sync(remove)

    async def complete_upload(self, upload: Upload, wanted: builtins.list[tuple[int, str]],
                              make_record: Callable[[builtins.list[ObjectRecord]], ObjectRecord]) -> ObjectRecord:
        """Check the chosen parts, concatenate them (kernel copies, CRCs combined) into the
        final object, install it and end the upload, all under the upload's lock: a part
        uploaded meanwhile waits, then finds the upload gone (NoSuchUpload)."""
        async with upload.lock:
            if self.uploads.get(upload.upload_id) is not upload:
                raise no_such_upload()
            numbers = [number for number, _ in wanted]
            parts = rules.check_complete(upload.parts, wanted)
            record = make_record(parts)
            temp = self.new_temp()
            part_dir = self.uploads_dir / upload.upload_id

            def assemble() -> None:
                for number, part in zip(numbers, parts):
                    fd = os.open(part_dir / str(number), os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        temp.append_from(fd, 0, part.size, part.crc64)
                    finally:
                        os.close(fd)

            try:
                await trio.to_thread.run_sync(assemble)
            except BaseException:
                temp.discard()
                raise

            def still_open(_current: ObjectRecord | None) -> None:
                if self.uploads.get(upload.upload_id) is not upload:
                    raise no_such_upload()
                del self.uploads[upload.upload_id]

            result = await self.commit(temp, record, still_open)
            await self._end_upload(upload, "done")
            return result


class _Changed(Exception):
    """The object changed between reading it and installing its new version (retry)."""


def _fsync_existing_dirs(paths: Iterable[Path]) -> None:
    for path in dict.fromkeys(paths):
        try:
            _fsync_dir(path)
        except FileNotFoundError:
            pass  # a fan-out directory never made: nothing was there to delete


class Storage:
    """All buckets under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.buckets: dict[str, Bucket] = {}
        self._create_lock = trio.Lock()

    def load(self, bucket_pattern) -> None:
        """Open every bucket directory under the root (blocking; at startup).

        A missing or empty root is made ours with the marker; any other root without it raises
        ForeignRoot before anything in it is touched.
        """
        make_dirs_durable(self.root)
        marker = self.root / ROOT_MARKER
        if not marker.exists():
            if any(self.root.iterdir()):
                raise ForeignRoot(f"{self.root} is not empty and was not made by cosfs serve (no {ROOT_MARKER}); "
                                  f"use a new or empty directory")
            with open(marker, "w") as f:
                f.write("This directory holds the buckets of `cosfs serve`.\n")
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(self.root)
        for entry in sorted(self.root.iterdir()):
            if (entry.is_dir() and entry.name.startswith(".deleted-")
                    and bucket_pattern.fullmatch(entry.name.removeprefix(".deleted-"))):
                shutil.rmtree(entry, ignore_errors=True)  # a DELETE Bucket cut short by a crash
                continue
            if entry.is_dir() and bucket_pattern.fullmatch(entry.name):
                bucket = Bucket(entry.name, entry)
                bucket.load()
                self.buckets[entry.name] = bucket

    async def put_bucket(self, name: str) -> Bucket:
        """PUT Bucket: create it (durably), or BucketAlreadyOwnedByYou — one at a time, and
        shown in `buckets` only once its directories are made."""
        async with self._create_lock:
            if name in self.buckets:
                raise rules.error("BucketAlreadyOwnedByYou",
                                  "The bucket you tried to create already exists and you own it.")
            bucket = Bucket(name, self.root / name)
            await trio.to_thread.run_sync(bucket.load)
            self.buckets[name] = bucket
            return bucket

    def create_bucket(self, name: str) -> tuple[Bucket, bool]:
        """The bucket, and whether it was created now (blocking, for startup; durable when it
        returns)."""
        existing = self.buckets.get(name)
        if existing is not None:
            return existing, False
        bucket = Bucket(name, self.root / name)
        bucket.load()
        self.buckets[name] = bucket
        return bucket, True

    async def delete_bucket(self, bucket: Bucket) -> None:
        """Remove an empty bucket: gone from the index and (durably) from the root at once."""
        if bucket.records or bucket.uploads:
            raise rules.error("BucketNotEmpty", "The bucket you tried to delete is not empty.")
        doomed = bucket.path.with_name(f".deleted-{bucket.name}")
        os.rename(bucket.path, doomed)
        self.buckets.pop(bucket.name, None)
        bucket.deleted = True

        def remove() -> None:
            _fsync_dir(self.root)
            shutil.rmtree(doomed, ignore_errors=True)

        await trio.to_thread.run_sync(remove)

    def get(self, name: str) -> Bucket | None:
        return self.buckets.get(name)


def md5_base64_matches(header_value: str, hex_digest: str) -> bool | None:
    """True/False for a Content-MD5 header against a digest; None if the header is malformed."""
    try:
        raw = base64.b64decode(header_value.strip(), validate=True)
    except (ValueError, TypeError):
        return None
    if len(raw) != 16:
        return None
    return raw.hex() == hex_digest
