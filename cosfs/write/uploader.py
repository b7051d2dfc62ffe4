"""Uploader: turns one state of a dirty file into a committed object.

Small files are one PUT (Content-MD5, CRC64 checked by the client). Larger ones are a multipart
upload: parts whose bytes are all untouched base data are copied server-side (Upload Part -
Copy with If-Match on the base ETag), the others are read from staging (plus base and zero
ranges) and uploaded, a bounded number at a time. The whole-object CRC64 returned by Complete
is checked against the parts' CRCs combined. On failure the multipart upload is aborted and
the staged data stays, so nothing is lost.

A file written sequentially from its start streams its parts while it is written (its live
state); its owner starts the stream (and journals its upload id) and calls `after_write`
after every change. Background work here (streamed parts, aborts) never raises into the
nursery: a failure is logged, kept in the file's `last_error`, and the part is sent again at
the commit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable

import trio

from cosfs import crashpoints
from cosfs.cos.store import (MAX_PARTS, MAX_SINGLE_COPY_BYTES, MIN_PART_BYTES, ObjectStore, PartInfo, PutResult,
                             WriteOptions)
from cosfs.errors import CosfsError, one_error
from cosfs.ranges import RangeSet
from cosfs.write.staging import DirtyFile, Snapshot

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


ReadRange = Callable[[Snapshot, int, int], Awaitable[bytes]]
UploadStarted = Callable[[DirtyFile], None]


@dataclasses.dataclass
class StreamingUpload:
    """A multipart upload that takes parts while the application is still writing.

    Invariants: `versions[n]` counts the changes to part n's byte range since the stream
    began; `parts[n] = (info, version)` says part n was uploaded from the staged bytes as they
    were at that version, so it is current while the version is unchanged and its size still
    matches the part's range. The upload belongs to `key`: it is abandoned when its file
    changes key.
    """

    key: str
    part_bytes: int
    upload_id: str
    versions: dict[int, int] = dataclasses.field(default_factory=dict)
    parts: dict[int, tuple[PartInfo, int]] = dataclasses.field(default_factory=dict)
    in_flight: dict[int, trio.Event] = dataclasses.field(default_factory=dict)
    next_part: int = 1

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
    """Commits states of dirty files, and streams parts of files written sequentially from
    the start while they are being written. An upload's state lives in its DirtyFile
    (`stream`, `upload_ids`, progress counters); the uploader holds the limiter and the
    nursery. `on_upload` is told of every multipart upload it starts (the owner journals it)."""

    def __init__(self, store: ObjectStore, read_state: ReadRange, *, part_bytes: int,
                 multipart_threshold_bytes: int, parallel_parts: int, on_upload: UploadStarted) -> None:
        self._store = store
        self._read = read_state
        self._part_bytes = part_bytes
        self._threshold = multipart_threshold_bytes
        self._limiter = trio.CapacityLimiter(parallel_parts)
        self._nursery: trio.Nursery | None = None
        self._on_upload = on_upload

    def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def _remember_upload(self, dirty: DirtyFile, key: str, upload_id: str) -> None:
        dirty.upload_ids.append((key, upload_id))
        self._on_upload(dirty)

    # --- streaming while the application writes --------------------------------------------

    def wants_stream(self, dirty: DirtyFile) -> bool:
        """A new file written from its start has just passed the multipart threshold."""
        return (dirty.stream is None and self._nursery is not None and dirty.base is None
                and dirty.size > self._threshold and dirty.written.covers(0, dirty.size)
                and dirty.size <= self._part_bytes * MAX_PARTS // 2)

    async def start_stream(self, dirty: DirtyFile) -> None:
        """Begin the multipart upload that takes the file's parts while it is written (the
        owner holds the key); on failure the file uploads at its commit instead."""
        try:
            upload_id = await self._store.create_multipart_upload(dirty.key, dirty.options)
        except CosfsError as exc:
            log.info("streaming upload of %s could not start (%s); it will upload at close", dirty.key, exc)
            return
        self._remember_upload(dirty, dirty.key, upload_id)
        dirty.stream = StreamingUpload(dirty.key, part_size_for(0, self._part_bytes), upload_id)

    def after_write(self, dirty: DirtyFile, start: int, end: int) -> None:
        """Called after every staged change (no await): feed the streaming upload."""
        stream: StreamingUpload | None = dirty.stream
        if stream is None:
            return
        stream.touch(start, end)
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

    async def _stream_part(self, dirty: DirtyFile, stream: StreamingUpload, number: int) -> None:
        try:
            if dirty.stream is stream:
                await self._upload_stream_part(dirty, stream, number)
        except CosfsError as exc:
            log.info("streamed part %d of %s failed (%s); it will be sent again at close", number, dirty.key, exc)
        except Exception as exc:  # a bug: this part is sent again at the commit, the mount stays up
            log.exception("streamed part %d of %s crashed; it will be sent again at close", number, dirty.key)
            dirty.last_error = f"streamed part {number}: {exc!r}"
        finally:
            stream.in_flight.pop(number).set()

    async def _upload_stream_part(self, dirty: DirtyFile, stream: StreamingUpload, number: int) -> None:
        async with self._limiter:
            version = stream.versions.get(number, 0)
            first, last = stream.part_range(number, dirty.size)
            if last - first != stream.part_bytes:
                return  # the file shrank under this (never last) part: it is sent again at the commit
            body = await self._read(dirty.state(), first, last)
            info = await self._store.upload_part(stream.key, stream.upload_id, number, body)
            crashpoints.reached("part-uploaded")
            stream.parts[number] = (dataclasses.replace(info, size_bytes=len(body)), version)
            dirty.uploaded += len(body)  # (status: the bytes already in COS while it is written)

    def abandon(self, dirty: DirtyFile) -> None:
        """The file's streamed upload is no longer wanted (unlink, truncate, rename...)."""
        stream: StreamingUpload | None = dirty.stream
        dirty.stream = None
        if stream is not None:
            dirty.uploaded = 0
        if stream is not None and self._nursery is not None:
            if (stream.key, stream.upload_id) in dirty.upload_ids:
                dirty.upload_ids.remove((stream.key, stream.upload_id))  # never resumed: being aborted
            self._nursery.start_soon(self._abort_stream, stream, name=f"abort {stream.key}")

    async def _abort_stream(self, stream: StreamingUpload) -> None:
        try:
            for event in list(stream.in_flight.values()):
                await event.wait()
            await self.abort(stream.key, stream.upload_id)
        except Exception:  # never raised into the nursery: the next mount aborts what is journaled
            log.exception("aborting the streamed upload of %s crashed", stream.key)

    async def abort(self, key: str, upload_id: str) -> None:
        try:
            await self._store.abort_multipart_upload(key, upload_id)
        except CosfsError as exc:
            log.warning("could not abort multipart upload %s of %s: %s", upload_id, key, exc)

    async def _finish_stream(self, dirty: DirtyFile, stream: StreamingUpload, state: Snapshot) -> PutResult:
        """Complete a streamed upload of the live `state`: send the parts missing or changed.
        Those not in flight (the last part, always) go at once, beside the streamed parts still
        in flight; a streamed part that then failed or went stale is sent after them."""
        count = max(1, -(-state.size // stream.part_bytes))
        waiting = [event for number, event in stream.in_flight.items() if number <= count]
        dirty.uploaded = sum(stream.part_range(n, state.size)[1] - stream.part_range(n, state.size)[0]
                             for n in range(1, count + 1) if stream.current(n, state.size))

        async def resend(number: int) -> None:
            async with self._limiter:
                version = stream.versions.get(number, 0)
                first, last = stream.part_range(number, state.size)
                body = await self._read(state, first, last)
                info = await self._store.upload_part(stream.key, stream.upload_id, number, body)
                crashpoints.reached("part-uploaded")
                stream.parts[number] = (dataclasses.replace(info, size_bytes=len(body)), version)
            dirty.uploaded += last - first

        with one_error():
            async with trio.open_nursery() as nursery:
                for number in range(1, count + 1):
                    if number not in stream.in_flight and not stream.current(number, state.size):
                        nursery.start_soon(resend, number)
                for event in waiting:
                    await event.wait()
        for event in list(stream.in_flight.values()):  # (started by writes meanwhile)
            await event.wait()
        with one_error():
            async with trio.open_nursery() as nursery:
                for number in range(1, count + 1):
                    if not stream.current(number, state.size):
                        nursery.start_soon(resend, number)
        parts = [stream.parts[n][0] for n in range(1, count + 1)]
        return await self._store.complete_multipart_upload(stream.key, stream.upload_id, parts)

    # --- key-level copy --------------------------------------------------------------------

    async def copy_key(self, source: str, dest: str, size: int, if_match: str | None = None,
                       content_type: str | None = None) -> str:
        """Server-side copy of an object of any size (multipart copy above the single-copy
        limit), only while the source has ETag `if_match` when one is given. With
        `content_type`, the copy takes it (its other metadata kept): a rename gives the
        object the type its new name says, as COSFS and s3fs do. Returns the copy's ETag."""
        if size <= MAX_SINGLE_COPY_BYTES:
            replace = None
            if content_type is not None:
                head = await self._store.head_object(source, if_match=if_match)
                if head.content_type != content_type:
                    replace = WriteOptions(content_type=content_type, user_meta=dict(head.user_meta),
                                           storage_class=head.storage_class)
            return (await self._store.copy_object(source, dest, source_if_match=if_match,
                                                  replace_metadata=replace)).etag
        head = await self._store.head_object(source, if_match=if_match)
        options = WriteOptions(content_type=content_type or head.content_type, user_meta=dict(head.user_meta))
        upload_id = await self._store.create_multipart_upload(dest, options)
        try:
            parts = []
            part_bytes = part_size_for(head.size_bytes, max(self._part_bytes, COPY_PART_BYTES))
            for plan in plan_parts(head.size_bytes, part_bytes, base_limit=head.size_bytes):
                parts.append(await self._store.upload_part_copy(dest, upload_id, plan.number, source,
                                                                (plan.start, plan.end - 1), source_if_match=head.etag))
            done = await self._store.complete_multipart_upload(dest, upload_id, parts)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.abort(dest, upload_id)
            raise
        return done.etag

    # --- commit ----------------------------------------------------------------------------

    async def commit(self, dirty: DirtyFile, state: Snapshot, *, live: bool) -> PutResult:
        """Upload `state` of the dirty file as its key's new object. `live`: the state is the
        file's live one (its streamed parts, if any, are of it)."""
        key = dirty.key
        dirty.uploading_total = state.size
        dirty.uploaded = 0
        stream: StreamingUpload | None = dirty.stream
        if live and stream is not None:
            dirty.stream = None
            if state.size > self._threshold and stream.key == key:
                try:
                    result = await self._finish_stream(dirty, stream, state)
                except CosfsError as exc:
                    log.info("finishing the streamed upload of %s failed (%s); uploading afresh", key, exc)
                else:
                    dirty.upload_ids.remove((stream.key, stream.upload_id))
                    await self._abort_others(dirty)
                    return result
            with trio.CancelScope(shield=True):
                await self._abort_stream(stream)
            if (stream.key, stream.upload_id) in dirty.upload_ids:
                dirty.upload_ids.remove((stream.key, stream.upload_id))
            dirty.uploaded = 0
        if state.size <= self._threshold:
            body = await self._read(state, 0, state.size)
            result = await self._store.put_object(key, body, state.options)
            dirty.uploaded = state.size
            await self._abort_others(dirty)
            return result
        return await self._multipart(dirty, state)

    async def _abort_others(self, dirty: DirtyFile, keep: str | None = None) -> None:
        """Abort the multipart uploads of ours left by earlier attempts (but the stream's)."""
        stream = dirty.stream
        for pair in list(dirty.upload_ids):
            if pair[1] == keep or (stream is not None and pair == (stream.key, stream.upload_id)):
                continue
            await self.abort(*pair)
            dirty.upload_ids.remove(pair)

    async def _multipart(self, dirty: DirtyFile, state: Snapshot) -> PutResult:
        key = dirty.key
        plans = plan_parts(state.size, part_size_for(state.size, self._part_bytes),
                           base_limit=state.base_limit if state.base is not None else 0,
                           written=RangeSet(state.written))
        resumed = await self._resumable(dirty)
        if resumed is not None:
            upload_id, kept = resumed
            log.info("resuming the multipart upload of %s: %d part(s) already in COS", key, len(kept))
        else:
            upload_id, kept = await self._store.create_multipart_upload(key, state.options), {}
            self._remember_upload(dirty, key, upload_id)
        parts: dict[int, PartInfo] = {}
        try:
            with one_error():
                async with trio.open_nursery() as nursery:
                    for plan in plans:
                        nursery.start_soon(self._one_part, dirty, state, upload_id, plan, parts, kept.get(plan.number))
            ordered = [parts[plan.number] for plan in plans]
            result = await self._store.complete_multipart_upload(key, upload_id, ordered)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.abort(key, upload_id)
            raise
        dirty.upload_ids.remove((key, upload_id))
        await self._abort_others(dirty)
        return result

    async def _resumable(self, dirty: DirtyFile) -> tuple[str, dict[int, PartInfo]] | None:
        """The newest journaled upload of ours for this key that still exists, with its
        uploaded parts (after a crash: the next mount resumes it instead of sending every
        part again; a part is kept only if its MD5 is the staged bytes')."""
        stream = dirty.stream
        for key, upload_id in reversed(dirty.upload_ids):
            if key != dirty.key or (stream is not None and upload_id == stream.upload_id):
                continue
            try:
                parts = await self._store.list_parts(key, upload_id)
            except CosfsError:
                continue
            return upload_id, {p.part_number: p for p in parts}
        return None

    async def _one_part(self, dirty: DirtyFile, state: Snapshot, upload_id: str, plan: PartPlan,
                        parts: dict[int, PartInfo], kept: PartInfo | None = None) -> None:
        base = state.base
        async with self._limiter:
            if kept is not None and not plan.copy and kept.size_bytes == plan.end - plan.start:
                # Reuse a part an interrupted upload sent, if its bytes are still these.
                body = await self._read(state, plan.start, plan.end)
                if hashlib.md5(body).hexdigest() == kept.etag.strip('"'):
                    parts[plan.number] = dataclasses.replace(kept, crc64=None)
                    dirty.uploaded += plan.end - plan.start
                    return
            if plan.copy and base is not None:
                info = await self._store.upload_part_copy(
                    dirty.key, upload_id, plan.number, base.key, (plan.start, plan.end - 1),
                    source_if_match=base.etag)
            else:
                body = await self._read(state, plan.start, plan.end)
                info = await self._store.upload_part(dirty.key, upload_id, plan.number, body)
                crashpoints.reached("part-uploaded")
            if info.size_bytes is None:
                info = dataclasses.replace(info, size_bytes=plan.end - plan.start)
            parts[plan.number] = info
            dirty.uploaded += plan.end - plan.start
