"""`MemoryStore`: an `ObjectStore` in memory, for fast tests of everything above the client.

Semantics follow COS as the client sees it: ETag = MD5 hex for simple PUT/APPEND, an opaque
`<hex>-N` for multipart; CRC64 on every object; listings in UTF-8 order with prefix,
delimiter (common prefixes count towards max-keys), marker (strictly after; a common prefix
is listed only if it sorts after the marker) and NextMarker = the last key or prefix of a
truncated page; deleting a missing key succeeds; 412 on If-Match mismatch; a range starting
at or past the end reads as empty (as `CosClient` reports a 416 there); multipart parts must be
>= 1 MiB except the last and be completed in ascending order; a self-copy needs Replaced.

Test hooks: `counts` (a Counter of operation names, e.g. `counts["head_object"]`) and
`fail_next(op, exc, times=1)`, which makes the next `times` calls of `op` raise `exc`
(counted, but without effect).

Invariant: `_objects` maps key -> _Object; `_uploads` maps upload id -> _Upload. No await
happens inside a mutation, so every operation is atomic with respect to other trio tasks.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence

from cosfs.cos import crc64 as crc
from cosfs.cos.store import (
    MAX_DELETE_KEYS,
    MAX_LIST_KEYS,
    MIN_PART_BYTES,
    AppendResult,
    CopyResult,
    DeleteResult,
    ListEntry,
    ListPage,
    ObjectMeta,
    PartInfo,
    PutResult,
    UploadInfo,
    WriteOptions,
)
from cosfs.errors import cos_error


@dataclasses.dataclass
class _Object:
    data: bytes
    etag: str
    crc64: int
    modified_s: float
    content_type: str
    user_meta: dict[str, str]
    storage_class: str
    appendable: bool = False

    def meta(self, key: str) -> ObjectMeta:
        return ObjectMeta(
            key=key,
            size_bytes=len(self.data),
            etag=self.etag,
            last_modified_s=self.modified_s,
            content_type=self.content_type,
            crc64=self.crc64,
            user_meta=dict(self.user_meta),
            storage_class=self.storage_class,
            appendable=self.appendable,
        )


@dataclasses.dataclass
class _Upload:
    key: str
    options: WriteOptions
    initiated_s: float
    parts: dict[int, tuple[bytes, str]] = dataclasses.field(default_factory=dict)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class MemoryStore:
    """An in-memory bucket implementing `ObjectStore` (see the module docstring)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, bucket: str = "memory-1250000000") -> None:
        self.bucket = bucket
        self.counts: collections.Counter[str] = collections.Counter()
        self._clock = clock
        self._objects: dict[str, _Object] = {}
        self._uploads: dict[str, _Upload] = {}
        self._failures: dict[str, list[BaseException]] = collections.defaultdict(list)
        self._upload_ids = itertools.count(1)

    # --- test hooks -------------------------------------------------------------------------

    def fail_next(self, op: str, exc: BaseException, times: int = 1) -> None:
        """Make the next `times` calls of operation `op` raise `exc`."""
        self._failures[op].extend([exc] * times)

    def _enter(self, op: str) -> None:
        self.counts[op] += 1
        pending = self._failures.get(op)
        if pending:
            raise pending.pop(0)

    def keys(self) -> list[str]:
        return sorted(self._objects)

    def pending_uploads(self) -> int:
        return len(self._uploads)

    # --- helpers ----------------------------------------------------------------------------

    def _get(self, key: str, if_match: str | None = None) -> _Object:
        obj = self._objects.get(key)
        if obj is None:
            raise cos_error(404, "NoSuchKey", "The specified key does not exist.", resource=key)
        if if_match is not None and if_match.strip('"') != obj.etag:
            raise cos_error(412, "PreconditionFailed", "If-Match does not match the ETag", resource=key)
        return obj

    def _store(self, key: str, data: bytes, options: WriteOptions, etag: str | None = None,
               appendable: bool = False) -> _Object:
        obj = _Object(
            data=data,
            etag=etag or _md5(data),
            crc64=crc.crc64(data),
            modified_s=self._clock(),
            content_type=options.content_type,
            user_meta={k.lower(): v for k, v in options.user_meta.items()},
            storage_class=options.storage_class or "STANDARD",
            appendable=appendable,
        )
        self._objects[key] = obj
        return obj

    @staticmethod
    def _slice(obj: _Object, byte_range: tuple[int, int] | None) -> bytes:
        if byte_range is None:
            return obj.data
        first, last = byte_range
        if first < 0 or last < first:
            raise ValueError(f"bad byte range {byte_range}")
        return obj.data[first: last + 1]

    # --- ObjectStore ------------------------------------------------------------------------

    async def head_bucket(self) -> None:
        self._enter("head_bucket")

    async def head_object(self, key: str, *, if_match: str | None = None) -> ObjectMeta:
        self._enter("head_object")
        return self._get(key, if_match).meta(key)

    async def get_object(self, key: str, *, byte_range: tuple[int, int] | None = None,
                         if_match: str | None = None) -> tuple[ObjectMeta, bytes]:
        self._enter("get_object")
        obj = self._get(key, if_match)
        return obj.meta(key), self._slice(obj, byte_range)

    @contextlib.asynccontextmanager
    async def open_object(self, key: str, *, byte_range: tuple[int, int] | None = None,
                          if_match: str | None = None) -> AsyncIterator[tuple[ObjectMeta, AsyncIterator[bytes]]]:
        self._enter("open_object")
        obj = self._get(key, if_match)
        data = self._slice(obj, byte_range)
        yield obj.meta(key), _Chunks(data)

    async def put_object(self, key: str, body: bytes, options: WriteOptions = WriteOptions()) -> PutResult:
        self._enter("put_object")
        obj = self._store(key, bytes(body), options)
        return PutResult(etag=obj.etag, crc64=obj.crc64)

    async def delete_object(self, key: str) -> None:
        self._enter("delete_object")
        self._objects.pop(key, None)

    async def delete_objects(self, keys: Sequence[str]) -> DeleteResult:
        deleted: list[str] = []
        keys = list(keys)
        for start in range(0, len(keys), MAX_DELETE_KEYS):
            self._enter("delete_objects")
            for key in keys[start: start + MAX_DELETE_KEYS]:
                self._objects.pop(key, None)
                deleted.append(key)
        return DeleteResult(deleted=tuple(deleted), failed=())

    async def copy_object(self, source_key: str, dest_key: str, *, replace_metadata: WriteOptions | None = None,
                          source_if_match: str | None = None) -> CopyResult:
        self._enter("copy_object")
        try:
            source = self._get(source_key, source_if_match)
        except Exception as exc:
            if getattr(exc, "code", "") == "NoSuchKey":
                raise cos_error(404, "NoSuchKey", "The specified copy source does not exist.",
                                resource=source_key) from None
            raise
        if source_key == dest_key and replace_metadata is None:
            raise cos_error(400, "InvalidRequest", "copying an object onto itself needs metadata directive Replaced",
                            resource=dest_key)
        if replace_metadata is None:
            options = WriteOptions(content_type=source.content_type, user_meta=dict(source.user_meta))
        else:
            options = replace_metadata
        obj = self._store(dest_key, source.data, options, etag=source.etag)
        return CopyResult(etag=obj.etag, crc64=obj.crc64, last_modified_s=obj.modified_s)

    async def append_object(self, key: str, position: int, body: bytes,
                            options: WriteOptions = WriteOptions()) -> AppendResult:
        self._enter("append_object")
        existing = self._objects.get(key)
        if existing is None:
            if position != 0:
                raise cos_error(409, "AppendPositionErr", "position does not match the object length", resource=key)
            obj = self._store(key, bytes(body), options, appendable=True)
        else:
            if not existing.appendable:
                raise cos_error(409, "ObjectNotAppendable", "the object is not appendable", resource=key)
            if position != len(existing.data):
                raise cos_error(409, "AppendPositionErr", "position does not match the object length", resource=key)
            existing.data += bytes(body)
            existing.etag = _md5(existing.data)
            existing.crc64 = crc.crc64(existing.data)
            existing.modified_s = self._clock()
            obj = existing
        return AppendResult(next_position=len(obj.data), etag=obj.etag, crc64=obj.crc64)

    async def list_objects(self, prefix: str = "", *, delimiter: str = "", marker: str = "",
                           max_keys: int = MAX_LIST_KEYS) -> ListPage:
        self._enter("list_objects")
        if not 1 <= max_keys <= MAX_LIST_KEYS:
            raise ValueError(f"max_keys must be 1..{MAX_LIST_KEYS}")
        entries: list[ListEntry] = []
        prefixes: list[str] = []
        last = ""
        truncated = False
        for key in sorted(self._objects, key=lambda k: k.encode("utf-8")):
            if not key.startswith(prefix) or key.encode() <= marker.encode():
                continue
            common = None
            if delimiter:
                cut = key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = key[: cut + len(delimiter)]
            if common is not None and (common.encode() <= marker.encode() or (prefixes and prefixes[-1] == common)):
                continue
            if len(entries) + len(prefixes) >= max_keys:
                truncated = True
                break
            if common is not None:
                prefixes.append(common)
                last = common
            else:
                obj = self._objects[key]
                entries.append(ListEntry(key, len(obj.data), obj.etag, obj.modified_s, obj.storage_class))
                last = key
        return ListPage(tuple(entries), tuple(prefixes), truncated, last if truncated else None)

    async def list_all(self, prefix: str = "", *, delimiter: str = "") -> AsyncIterator[ListPage]:
        marker = ""
        while True:
            page = await self.list_objects(prefix, delimiter=delimiter, marker=marker)
            yield page
            if not page.is_truncated or not page.next_marker:
                return
            marker = page.next_marker

    async def create_multipart_upload(self, key: str, options: WriteOptions = WriteOptions()) -> str:
        self._enter("create_multipart_upload")
        upload_id = f"memory-upload-{next(self._upload_ids)}"
        self._uploads[upload_id] = _Upload(key, options, self._clock())
        return upload_id

    def _upload(self, key: str, upload_id: str) -> _Upload:
        upload = self._uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise cos_error(404, "NoSuchUpload", "The specified upload does not exist.", resource=key)
        return upload

    async def upload_part(self, key: str, upload_id: str, part_number: int, body: bytes) -> PartInfo:
        self._enter("upload_part")
        upload = self._upload(key, upload_id)
        if not 1 <= part_number <= 10_000:
            raise cos_error(400, "InvalidArgument", "part number must be 1..10000", resource=key)
        data = bytes(body)
        upload.parts[part_number] = (data, _md5(data))
        return PartInfo(part_number, _md5(data), len(data), crc.crc64(data))

    async def upload_part_copy(self, key: str, upload_id: str, part_number: int, source_key: str,
                               source_range: tuple[int, int] | None = None, *,
                               source_if_match: str | None = None) -> PartInfo:
        self._enter("upload_part_copy")
        upload = self._upload(key, upload_id)
        source = self._get(source_key, source_if_match)
        if source_range is not None and source_range[1] >= len(source.data):
            raise cos_error(400, "InvalidArgument", "copy source range is outside the object", resource=key)
        data = self._slice(source, source_range)
        upload.parts[part_number] = (data, _md5(data))
        return PartInfo(part_number, _md5(data), len(data), crc.crc64(data))

    async def complete_multipart_upload(self, key: str, upload_id: str, parts: Sequence[PartInfo]) -> PutResult:
        self._enter("complete_multipart_upload")
        upload = self._upload(key, upload_id)
        numbers = [p.part_number for p in parts]
        if not parts:
            raise cos_error(400, "MalformedXML", "no parts given", resource=key)
        if numbers != sorted(set(numbers)):
            raise cos_error(400, "InvalidPartOrder", "parts must be in ascending order", resource=key)
        chunks = []
        for index, part in enumerate(parts):
            stored = upload.parts.get(part.part_number)
            if stored is None or stored[1] != part.etag.strip('"'):
                raise cos_error(400, "InvalidPart", f"part {part.part_number} is missing or its ETag differs",
                                resource=key)
            if index < len(parts) - 1 and len(stored[0]) < MIN_PART_BYTES:
                raise cos_error(400, "EntityTooSmall", f"part {part.part_number} is smaller than 1 MiB", resource=key)
            chunks.append(stored[0])
        digest = hashlib.md5(b"".join(bytes.fromhex(upload.parts[n][1]) for n in numbers)).hexdigest()
        obj = self._store(key, b"".join(chunks), upload.options, etag=f"{digest}-{len(parts)}")
        del self._uploads[upload_id]
        return PutResult(etag=obj.etag, crc64=obj.crc64)

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        self._enter("abort_multipart_upload")
        self._upload(key, upload_id)
        del self._uploads[upload_id]

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        self._enter("list_parts")
        upload = self._upload(key, upload_id)
        return [PartInfo(n, etag, len(data), crc.crc64(data)) for n, (data, etag) in sorted(upload.parts.items())]

    async def list_multipart_uploads(self, prefix: str = "") -> list[UploadInfo]:
        self._enter("list_multipart_uploads")
        found = [UploadInfo(u.key, uid, u.initiated_s) for uid, u in self._uploads.items() if u.key.startswith(prefix)]
        return sorted(found, key=lambda u: (u.key.encode(), u.upload_id))


class _Chunks:
    """Chunks of at most 64 KiB of an in-memory body."""

    CHUNK = 64 * 1024

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        if self._offset >= len(self._data):
            raise StopAsyncIteration
        chunk = self._data[self._offset: self._offset + self.CHUNK]
        self._offset += len(chunk)
        return chunk
