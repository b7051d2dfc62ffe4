"""Uploader: turns a dirty file into a committed object.

Small files are one PUT (Content-MD5, CRC64 checked by the client). Larger ones are a multipart
upload: parts whose bytes are all untouched base data are copied server-side (Upload Part -
Copy with If-Match on the base ETag), the others are read from staging (plus base and zero
ranges) and uploaded, a bounded number at a time. The whole-object CRC64 returned by Complete
is checked against the parts' CRCs combined. On failure the multipart upload is aborted and
the staged data stays, so nothing is lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable

import trio

from cosfs import crashpoints
from cosfs.blocks import ObjectRef
from cosfs.cos.store import (MAX_PARTS, MAX_SINGLE_COPY_BYTES, MIN_PART_BYTES, ObjectStore, PartInfo, PutResult,
                             WriteOptions)
from cosfs.errors import CosfsError, one_error
from cosfs.ranges import RangeSet
from cosfs.staging import DirtyFile

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# Upload Part - Copy needs at least this much (COS documents 5 MB for copied parts).
MIN_COPY_PART_BYTES = 5 * MiB
# Multipart copies (renames of objects over 5 GB) move 512 MiB per Upload Part - Copy.
COPY_PART_BYTES = 512 * MiB


@dataclasses.dataclass(frozen=True)
class PartPlan:
    number: int
    start: int
    end: int
    copy: bool  # True: copy [start, end) from the base object server-side


def part_size_for(size_bytes: int, preferred_bytes: int) -> int:
    """The part size: the preferred one, grown (in whole MiB) so the object fits in
    MAX_PARTS parts; never below COS's 1 MiB minimum."""
    needed = math.ceil(size_bytes / MAX_PARTS) if size_bytes else 0
    size = max(preferred_bytes, MIN_PART_BYTES, needed)
    return math.ceil(size / MiB) * MiB


def plan_parts(size: int, part_bytes: int, *, base_limit: int = 0, written: RangeSet | None = None) -> list[PartPlan]:
    """Cut [0, size) into parts; a part is copied from the base object when it lies below
    `base_limit` (0: no base), is big enough to copy, and holds no written byte."""
    plans = []
    for number, start in enumerate(range(0, size, part_bytes), start=1):
        end = min(start + part_bytes, size)
        copy = (
            end <= base_limit
            and end - start >= MIN_COPY_PART_BYTES
            and not (written is not None and written.overlaps(start, end))
        )
        plans.append(PartPlan(number, start, end, copy))
    return plans


ReadRange = Callable[[DirtyFile, int, int], Awaitable[bytes]]


@dataclasses.dataclass
class StreamingUpload:
    """A multipart upload that takes parts while the application is still writing.

    Invariants: `versions[n]` counts the changes to part n's byte range since the stream
    began; `parts[n] = (info, version)` says part n was uploaded from the staged bytes as they
    were at that version, so it is current while the version is unchanged and its size still
    matches the part's range. `started` is set once `upload_id` is known (or initiation failed,
    then `failed` holds why and the commit falls back to a fresh upload).
    """

    key: str
    part_bytes: int
    upload_id: str | None = None
    started: trio.Event = dataclasses.field(default_factory=trio.Event)
    versions: dict[int, int] = dataclasses.field(default_factory=dict)
    parts: dict[int, tuple[PartInfo, int]] = dataclasses.field(default_factory=dict)
    in_flight: dict[int, trio.Event] = dataclasses.field(default_factory=dict)
    next_part: int = 1
    failed: BaseException | None = None

    def part_range(self, number: int, size: int) -> tuple[int, int]:
        start = (number - 1) * self.part_bytes
        return start, min(start + self.part_bytes, size)

    def touch(self, start: int, end: int) -> None:
        """Bytes [start, end) changed: parts over them must be uploaded again."""
        if end <= start:
            return
        for number in range(start // self.part_bytes + 1, (end - 1) // self.part_bytes + 2):
            self.versions[number] = self.versions.get(number, 0) + 1

    def current(self, number: int, size: int) -> bool:
        uploaded = self.parts.get(number)
        if uploaded is None:
            return False
        info, version = uploaded
        start, end = self.part_range(number, size)
        return version == self.versions.get(number, 0) and info.size_bytes == end - start


class Uploader:
    """Commits dirty files, and streams parts of files written sequentially from the start
    while they are being written. The state of an upload lives in its DirtyFile (`stream`,
    progress counters); the uploader itself only holds the limiter and the nursery."""

    def __init__(self, store: ObjectStore, read_range: ReadRange, *, part_bytes: int, multipart_threshold_bytes: int,
                 parallel_parts: int, on_upload_id: Callable[[DirtyFile], None] | None = None) -> None:
        self._store = store
        self._read = read_range
        self._part_bytes = part_bytes
        self._threshold = multipart_threshold_bytes
        self._limiter = trio.CapacityLimiter(parallel_parts)
        self._nursery: trio.Nursery | None = None
        self._on_upload_id = on_upload_id

    def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def _remember_upload(self, dirty: DirtyFile, upload_id: str) -> None:
        """Journal the id, so a crash cannot leave an upload of ours behind unaborted."""
        dirty.upload_ids.append(upload_id)
        if self._on_upload_id is not None:
            self._on_upload_id(dirty)

    # --- streaming while the application writes --------------------------------------------

    def after_write(self, dirty: DirtyFile, start: int, end: int) -> None:
        """Called after every staged change (no await): start or feed the streaming upload."""
        stream: StreamingUpload | None = dirty.stream
        if stream is not None:
            stream.touch(start, end)
        elif (self._nursery is not None and dirty.base is None and dirty.size > self._threshold
              and dirty.written.covers(0, dirty.size)
              and dirty.size <= self._part_bytes * MAX_PARTS // 2):
            stream = dirty.stream = StreamingUpload(dirty.key, part_size_for(0, self._part_bytes))
            self._nursery.start_soon(self._initiate, dirty, stream, name=f"initiate {dirty.key}")
        if stream is None or stream.failed is not None:
            return
        # Parts that are complete and not the last can go now.
        while stream.next_part * stream.part_bytes < dirty.size:
            number = stream.next_part
            first, last = stream.part_range(number, dirty.size)
            if not dirty.written.covers(first, last):
                break
            stream.next_part += 1
            assert self._nursery is not None
            stream.in_flight[number] = trio.Event()
            self._nursery.start_soon(self._stream_part, dirty, stream, number, name=f"part {number} of {dirty.key}")

    async def _initiate(self, dirty: DirtyFile, stream: StreamingUpload) -> None:
        try:
            stream.upload_id = await self._store.create_multipart_upload(dirty.key, dirty.options)
            self._remember_upload(dirty, stream.upload_id)
        except CosfsError as exc:
            stream.failed = exc
            log.info("streaming upload of %s could not start (%s); it will upload at close", dirty.key, exc)
        finally:
            stream.started.set()

    async def _stream_part(self, dirty: DirtyFile, stream: StreamingUpload, number: int) -> None:
        try:
            await stream.started.wait()
            if stream.failed is None and dirty.stream is stream:
                await self._upload_stream_part(dirty, stream, number)
        except CosfsError as exc:
            log.info("streamed part %d of %s failed (%s); it will be sent again at close", number, dirty.key, exc)
        finally:
            stream.in_flight.pop(number).set()

    async def _upload_stream_part(self, dirty: DirtyFile, stream: StreamingUpload, number: int) -> None:
        async with self._limiter:
            assert stream.upload_id is not None
            version = stream.versions.get(number, 0)
            first, last = stream.part_range(number, dirty.size)
            body = await self._read(dirty, first, last)
            info = await self._store.upload_part(dirty.key, stream.upload_id, number, body)
            crashpoints.reached("part-uploaded")
            stream.parts[number] = (dataclasses.replace(info, size_bytes=len(body)), version)

    def abandon(self, dirty: DirtyFile) -> None:
        """The file's streamed upload is no longer wanted (unlink, truncate to zero...)."""
        stream: StreamingUpload | None = dirty.stream
        dirty.stream = None
        if stream is not None and self._nursery is not None:
            if stream.upload_id in dirty.upload_ids:
                dirty.upload_ids.remove(stream.upload_id)  # never resumed: it is being aborted
            self._nursery.start_soon(self._abort_stream, stream, name=f"abort {stream.key}")

    async def _abort_stream(self, stream: StreamingUpload) -> None:
        await stream.started.wait()
        for event in list(stream.in_flight.values()):
            await event.wait()
        if stream.upload_id is not None:
            await self.abort(stream.key, stream.upload_id)

    async def abort(self, key: str, upload_id: str) -> None:
        try:
            await self._store.abort_multipart_upload(key, upload_id)
        except CosfsError as exc:
            log.warning("could not abort multipart upload %s of %s: %s", upload_id, key, exc)

    async def _finish_stream(self, dirty: DirtyFile, stream: StreamingUpload) -> PutResult:
        """Complete a streamed upload: send the parts that are missing or changed since."""
        await stream.started.wait()
        for event in list(stream.in_flight.values()):
            await event.wait()
        if stream.failed is not None or stream.upload_id is None:
            raise stream.failed or CosfsError("streaming upload never started")
        count = max(1, -(-dirty.size // stream.part_bytes))
        dirty.uploaded = sum(stream.part_range(n, dirty.size)[1] - stream.part_range(n, dirty.size)[0]
                             for n in range(1, count + 1) if stream.current(n, dirty.size))

        async def resend(number: int) -> None:
            await self._upload_stream_part(dirty, stream, number)
            first, last = stream.part_range(number, dirty.size)
            dirty.uploaded += last - first

        with one_error():
            async with trio.open_nursery() as nursery:
                for number in range(1, count + 1):
                    if not stream.current(number, dirty.size):
                        nursery.start_soon(resend, number)
        parts = [stream.parts[n][0] for n in range(1, count + 1)]
        return await self._store.complete_multipart_upload(dirty.key, stream.upload_id, parts)

    # --- key-level copy --------------------------------------------------------------------

    async def copy_key(self, source: str, dest: str, size: int, if_match: str | None = None) -> None:
        """Server-side copy of an object of any size (multipart copy above the single-copy
        limit), only while the source has ETag `if_match` when one is given."""
        if size <= MAX_SINGLE_COPY_BYTES:
            await self._store.copy_object(source, dest, source_if_match=if_match)
            return
        head = await self._store.head_object(source, if_match=if_match)
        options = WriteOptions(content_type=head.content_type, user_meta=dict(head.user_meta))
        upload_id = await self._store.create_multipart_upload(dest, options)
        try:
            parts = []
            part_bytes = part_size_for(head.size_bytes, max(self._part_bytes, COPY_PART_BYTES))
            for plan in plan_parts(head.size_bytes, part_bytes, base_limit=head.size_bytes):
                parts.append(await self._store.upload_part_copy(dest, upload_id, plan.number, source,
                                                                (plan.start, plan.end - 1), source_if_match=head.etag))
            await self._store.complete_multipart_upload(dest, upload_id, parts)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.abort(dest, upload_id)
            raise

    # --- commit ----------------------------------------------------------------------------

    def single_put(self, dirty: DirtyFile) -> bool:
        """Whether `commit` would send the file as one PUT and nothing else (no multipart
        upload, streamed or earlier, to finish or abort)."""
        return dirty.size <= self._threshold and dirty.stream is None and not dirty.upload_ids

    async def commit(self, dirty: DirtyFile) -> PutResult:
        """Upload the dirty file's current content as its key's new object."""
        dirty.uploading_total = dirty.size
        dirty.uploaded = 0
        stream: StreamingUpload | None = dirty.stream
        if stream is not None:
            dirty.stream = None
            if dirty.size > self._threshold and stream.failed is None:
                try:
                    return await self._finish_stream(dirty, stream)
                except CosfsError as exc:
                    log.info("finishing the streamed upload of %s failed (%s); uploading afresh", dirty.key, exc)
            with trio.CancelScope(shield=True):
                await self._abort_stream(stream)
            dirty.uploaded = 0
        if dirty.size <= self._threshold:
            body = await self._read(dirty, 0, dirty.size)
            result = await self._store.put_object(dirty.key, body, dirty.options)
            dirty.uploaded = dirty.size
            for upload_id in dirty.upload_ids:  # left by earlier, larger versions of the file
                await self.abort(dirty.key, upload_id)
            return result
        return await self._multipart(dirty)

    async def _multipart(self, dirty: DirtyFile) -> PutResult:
        plans = plan_parts(dirty.size, part_size_for(dirty.size, self._part_bytes),
                           base_limit=dirty.base_limit if dirty.base is not None else 0, written=dirty.written)
        resumed = await self._resumable(dirty)
        if resumed is not None:
            upload_id, kept = resumed
            log.info("resuming the multipart upload of %s: %d part(s) already in COS", dirty.key, len(kept))
        else:
            upload_id, kept = await self._store.create_multipart_upload(dirty.key, dirty.options), {}
            self._remember_upload(dirty, upload_id)
        parts: dict[int, PartInfo] = {}
        base = dirty.base
        try:
            with one_error():
                async with trio.open_nursery() as nursery:
                    for plan in plans:
                        nursery.start_soon(self._one_part, dirty, upload_id, plan, base, parts, kept.get(plan.number))
            ordered = [parts[plan.number] for plan in plans]
            result = await self._store.complete_multipart_upload(dirty.key, upload_id, ordered)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.abort(dirty.key, upload_id)
            raise
        for other in dirty.upload_ids:
            if other != upload_id:
                await self.abort(dirty.key, other)
        return result

    async def _resumable(self, dirty: DirtyFile) -> tuple[str, dict[int, PartInfo]] | None:
        """The newest journaled upload of ours that still exists, with its uploaded parts
        (after a crash: the next mount resumes it instead of sending every part again)."""
        for upload_id in reversed(dirty.upload_ids):
            try:
                parts = await self._store.list_parts(dirty.key, upload_id)
            except CosfsError:
                continue
            return upload_id, {p.part_number: p for p in parts}
        return None

    async def _one_part(self, dirty: DirtyFile, upload_id: str, plan: PartPlan, base: ObjectRef | None,
                        parts: dict[int, PartInfo], kept: PartInfo | None = None) -> None:
        async with self._limiter:
            if kept is not None and not plan.copy and kept.size_bytes == plan.end - plan.start:
                # Reuse a part an interrupted upload sent, if its bytes are still these.
                body = await self._read(dirty, plan.start, plan.end)
                if hashlib.md5(body).hexdigest() == kept.etag.strip('"'):
                    parts[plan.number] = dataclasses.replace(kept, crc64=None)
                    dirty.uploaded += plan.end - plan.start
                    return
            if plan.copy and base is not None:
                info = await self._store.upload_part_copy(
                    dirty.key, upload_id, plan.number, base.key, (plan.start, plan.end - 1),
                    source_if_match=base.etag)
            else:
                body = await self._read(dirty, plan.start, plan.end)
                info = await self._store.upload_part(dirty.key, upload_id, plan.number, body)
                crashpoints.reached("part-uploaded")
            if info.size_bytes is None:
                info = dataclasses.replace(info, size_bytes=plan.end - plan.start)
            parts[plan.number] = info
            dirty.uploaded += plan.end - plan.start
