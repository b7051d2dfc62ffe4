"""`MemoryStore`: an `ObjectStore` in memory, for fast tests of everything above the client.

The COS rules it follows are those of `cosfs.cos.rules`, which `cosfs serve` applies too:
listings (`rules.list_keys`: UTF-8 order, prefix, delimiter with common prefixes counting
towards max-keys, marker strictly after, NextMarker = last key or prefix of a truncated
page), Complete's part checks and the `<hex>-N` ETag, APPEND positions and the appendable
ETag, the self-copy rule, If-Match, key length, user metadata size, storage classes and
canned ACLs, with the errors (and HTTP statuses) of `rules.error`. What is its own: ETag = MD5
hex for simple PUT; CRC64 on every object; deleting a missing key succeeds; a range starting
at or past the end reads as empty (as `CosClient` reports a 416 there).

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
from cosfs.cos import rules
from cosfs.cos.store import (
    MAX_DELETE_KEYS,
    MAX_LIST_KEYS,
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
    acl: str | None = None

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


@dataclasses.dataclass(frozen=True)
class _Part:
    data: bytes
    etag: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclasses.dataclass
class _Upload:
    key: str
    options: WriteOptions
    initiated_s: float
    parts: dict[int, _Part] = dataclasses.field(default_factory=dict)


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
            raise rules.error("NoSuchKey", "The specified key does not exist.", key)
        if if_match is not None and not rules.etag_matches(if_match, obj.etag):
            raise rules.error("PreconditionFailed", "If-Match does not match the ETag", key)
        return obj

    @staticmethod
    def _check_write(key: str, options: WriteOptions) -> None:
        """What COS refuses in a write's key and headers, before anything changes."""
        rules.check_key(key)
        rules.check_user_meta({k.lower(): v for k, v in options.user_meta.items()})
        rules.storage_class(options.storage_class)
        if options.acl:
            rules.check_canned_acl(options.acl, for_object=True)

    def _store(self, key: str, data: bytes, options: WriteOptions, etag: str | None = None,
               appendable: bool = False, crc64: int | None = None) -> _Object:
        obj = _Object(
            data=data,
            etag=etag or _md5(data),
            crc64=crc.crc64(data) if crc64 is None else crc64,
            modified_s=self._clock(),
            content_type=options.content_type,
            user_meta={k.lower(): v for k, v in options.user_meta.items()},
            storage_class=rules.storage_class(options.storage_class),
            appendable=appendable,
            acl=options.acl,
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
        self._check_write(key, options)
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
                raise rules.error("NoSuchKey", "The specified copy source does not exist.", source_key) from None
            raise
        rules.check_copy(source_key == dest_key, replace_metadata is not None, len(source.data))
        if replace_metadata is None:
            options = WriteOptions(content_type=source.content_type, user_meta=dict(source.user_meta))
        else:
            options = replace_metadata
        self._check_write(dest_key, options)
        obj = self._store(dest_key, source.data, options, etag=source.etag)
        return CopyResult(etag=obj.etag, crc64=obj.crc64, last_modified_s=obj.modified_s)

    async def append_object(self, key: str, position: int, body: bytes,
                            options: WriteOptions = WriteOptions()) -> AppendResult:
        self._enter("append_object")
        existing = self._objects.get(key)
        rules.check_append(position, None if existing is None else len(existing.data),
                           existing is not None and existing.appendable)
        if existing is None:
            self._check_write(key, options)
            data = bytes(body)
            value = crc.crc64(data)
            obj = self._store(key, data, options, etag=rules.append_etag(value, len(data)), appendable=True,
                              crc64=value)
        else:
            existing.data += bytes(body)
            existing.crc64 = crc.crc64(existing.data)
            existing.etag = rules.append_etag(existing.crc64, len(existing.data))
            existing.modified_s = self._clock()
            obj = existing
        return AppendResult(next_position=len(obj.data), etag=obj.etag, crc64=obj.crc64)

    async def list_objects(self, prefix: str = "", *, delimiter: str = "", marker: str = "",
                           max_keys: int = MAX_LIST_KEYS) -> ListPage:
        self._enter("list_objects")
        if not 1 <= max_keys <= MAX_LIST_KEYS:
            raise ValueError(f"max_keys must be 1..{MAX_LIST_KEYS}")
        result = rules.list_keys(sorted(self._objects), prefix, delimiter, marker, max_keys)
        entries = []
        for key in result.keys:
            obj = self._objects[key]
            entries.append(ListEntry(key, len(obj.data), obj.etag, obj.modified_s, obj.storage_class))
        return ListPage(tuple(entries), tuple(result.common_prefixes), result.is_truncated, result.next_marker)

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
        self._check_write(key, options)
        upload_id = f"memory-upload-{next(self._upload_ids)}"
        self._uploads[upload_id] = _Upload(key, options, self._clock())
        return upload_id

    def _upload(self, key: str, upload_id: str) -> _Upload:
        upload = self._uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise rules.error("NoSuchUpload", "The specified upload does not exist.", key)
        return upload

    async def upload_part(self, key: str, upload_id: str, part_number: int, body: bytes) -> PartInfo:
        self._enter("upload_part")
        upload = self._upload(key, upload_id)
        rules.check_part_number(part_number)
        data = bytes(body)
        upload.parts[part_number] = _Part(data, _md5(data))
        return PartInfo(part_number, _md5(data), len(data), crc.crc64(data))

    async def upload_part_copy(self, key: str, upload_id: str, part_number: int, source_key: str,
                               source_range: tuple[int, int] | None = None, *,
                               source_if_match: str | None = None) -> PartInfo:
        self._enter("upload_part_copy")
        upload = self._upload(key, upload_id)
        rules.check_part_number(part_number)
        source = self._get(source_key, source_if_match)
        if source_range is not None and source_range[1] >= len(source.data):
            raise rules.error("InvalidArgument", "copy source range is outside the object", key)
        data = self._slice(source, source_range)
        upload.parts[part_number] = _Part(data, _md5(data))
        return PartInfo(part_number, _md5(data), len(data), crc.crc64(data))

    async def complete_multipart_upload(self, key: str, upload_id: str, parts: Sequence[PartInfo]) -> PutResult:
        self._enter("complete_multipart_upload")
        upload = self._upload(key, upload_id)
        chosen = rules.check_complete(upload.parts, [(p.part_number, p.etag) for p in parts])
        etag = rules.multipart_etag([part.etag for part in chosen])
        obj = self._store(key, b"".join(part.data for part in chosen), upload.options, etag=etag)
        del self._uploads[upload_id]
        return PutResult(etag=obj.etag, crc64=obj.crc64)

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        self._enter("abort_multipart_upload")
        self._upload(key, upload_id)
        del self._uploads[upload_id]

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        self._enter("list_parts")
        upload = self._upload(key, upload_id)
        return [PartInfo(n, part.etag, part.size, crc.crc64(part.data)) for n, part in sorted(upload.parts.items())]

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
