"""The object store interface: the only door to COS.

`CosClient` (HTTP) and an in-memory store implement `ObjectStore`. Everything above this layer
speaks these frozen value types and the exceptions of `cosfs.errors`, never HTTP.

Conventions: keys are str without a leading '/'; ETags are given without quotes; byte ranges
are (first, last) inclusive as in HTTP; times are Unix seconds (float) in `*_s` fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

MIN_PART_BYTES = 1024 * 1024
MAX_PART_BYTES = 5 * 1024**3
MAX_PARTS = 10_000
MAX_SINGLE_PUT_BYTES = 5 * 1024**3
MAX_SINGLE_COPY_BYTES = 5 * 1024**3
MAX_KEY_BYTES = 850
MAX_DELETE_KEYS = 1000
MAX_LIST_KEYS = 1000


@dataclasses.dataclass(frozen=True)
class ObjectMeta:
    """What HEAD (or GET) says about an object."""

    key: str
    size_bytes: int
    etag: str
    last_modified_s: float
    content_type: str = "application/octet-stream"
    crc64: int | None = None
    # x-cos-meta-* headers, suffix lower-cased without the prefix: {"mode": "33188"}
    user_meta: Mapping[str, str] = dataclasses.field(default_factory=dict)
    storage_class: str = "STANDARD"
    appendable: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ListEntry:
    """One <Contents> of a listing."""

    key: str
    size_bytes: int
    etag: str
    last_modified_s: float
    storage_class: str = "STANDARD"


@dataclasses.dataclass(frozen=True)
class ListPage:
    entries: tuple[ListEntry, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_marker: str | None


@dataclasses.dataclass(frozen=True)
class PutResult:
    etag: str
    crc64: int | None
    # The server's Last-Modified of the new object when the store learnt it (a HEAD after
    # Complete on S3 servers), else None.
    last_modified_s: float | None = None


@dataclasses.dataclass(frozen=True)
class AppendResult:
    next_position: int
    etag: str
    crc64: int | None


@dataclasses.dataclass(frozen=True)
class CopyResult:
    etag: str
    crc64: int | None
    last_modified_s: float


@dataclasses.dataclass(frozen=True)
class PartInfo:
    """An uploaded part, from Upload Part, Upload Part - Copy or List Parts."""

    part_number: int
    etag: str
    size_bytes: int | None = None
    crc64: int | None = None


@dataclasses.dataclass(frozen=True)
class UploadInfo:
    """An unfinished multipart upload, from List Multipart Uploads."""

    key: str
    upload_id: str
    initiated_s: float


@dataclasses.dataclass(frozen=True)
class DeleteFailure:
    key: str
    code: str
    message: str


@dataclasses.dataclass(frozen=True)
class DeleteResult:
    deleted: tuple[str, ...]
    failed: tuple[DeleteFailure, ...]


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    """Headers that become the object's stored metadata on PUT, initiate and copy-replace."""

    content_type: str = "application/octet-stream"
    user_meta: Mapping[str, str] = dataclasses.field(default_factory=dict)
    storage_class: str | None = None
    server_side_encryption: str | None = None  # "AES256" for SSE-COS
    acl: str | None = None


class ObjectStore(Protocol):
    """Asynchronous access to one bucket. Every method raises `cosfs.errors` exceptions."""

    async def head_bucket(self) -> None: ...

    async def head_object(self, key: str, *, if_match: str | None = None) -> ObjectMeta: ...

    async def get_object(
        self,
        key: str,
        *,
        byte_range: tuple[int, int] | None = None,
        if_match: str | None = None,
    ) -> tuple[ObjectMeta, bytes]:
        """Small reads: the body whole. A whole-object read is CRC64-checked."""
        ...

    def open_object(
        self,
        key: str,
        *,
        byte_range: tuple[int, int] | None = None,
        if_match: str | None = None,
    ) -> AbstractAsyncContextManager[tuple[ObjectMeta, AsyncIterator[bytes]]]:
        """Streaming reads: `async with store.open_object(k) as (meta, chunks)`. A whole-object
        stream raises IntegrityError at its end if the CRC64 does not match. A chunk handed
        out is the caller's: the store never reads or writes it again (a bytearray chunk may
        be kept as it is)."""
        ...

    async def put_object(self, key: str, body: bytes, options: WriteOptions = WriteOptions()) -> PutResult: ...

    async def delete_object(self, key: str) -> None:
        """Deleting a missing key succeeds, as in COS."""
        ...

    async def delete_objects(self, keys: Sequence[str]) -> DeleteResult:
        """Batches of MAX_DELETE_KEYS are sent as needed."""
        ...

    async def copy_object(
        self,
        source_key: str,
        dest_key: str,
        *,
        replace_metadata: WriteOptions | None = None,
        source_if_match: str | None = None,
    ) -> CopyResult:
        """Server-side copy. With `replace_metadata` the destination takes those headers
        (metadata directive Replaced), which is how metadata is changed in place."""
        ...

    async def append_object(self, key: str, position: int, body: bytes,
                            options: WriteOptions = WriteOptions()) -> AppendResult: ...

    async def list_objects(
        self,
        prefix: str = "",
        *,
        delimiter: str = "",
        marker: str = "",
        max_keys: int = MAX_LIST_KEYS,
    ) -> ListPage: ...

    def list_all(self, prefix: str = "", *, delimiter: str = "") -> AsyncIterator[ListPage]:
        """Every page of a listing, following NextMarker."""
        ...

    async def create_multipart_upload(self, key: str, options: WriteOptions = WriteOptions()) -> str: ...

    async def upload_part(self, key: str, upload_id: str, part_number: int, body: bytes) -> PartInfo: ...

    async def upload_part_copy(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        source_key: str,
        source_range: tuple[int, int] | None = None,
        *,
        source_if_match: str | None = None,
    ) -> PartInfo: ...

    async def complete_multipart_upload(self, key: str, upload_id: str, parts: Sequence[PartInfo]) -> PutResult: ...

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None: ...

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]: ...

    async def list_multipart_uploads(self, prefix: str = "") -> list[UploadInfo]: ...
