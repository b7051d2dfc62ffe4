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
import logging
import math
from collections.abc import Awaitable, Callable

import trio

from cosfs.blocks import ObjectRef
from cosfs.cos.store import MAX_PARTS, MIN_PART_BYTES, ObjectStore, PartInfo, PutResult
from cosfs.errors import CosfsError
from cosfs.staging import DirtyFile

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# Upload Part - Copy needs at least this much (COS documents 5 MB for copied parts).
MIN_COPY_PART_BYTES = 5 * MiB


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


def plan_parts(dirty: DirtyFile, part_bytes: int) -> list[PartPlan]:
    """Cut [0, size) into parts; a part is copied when it is wholly untouched base data."""
    plans = []
    for number, start in enumerate(range(0, dirty.size, part_bytes), start=1):
        end = min(start + part_bytes, dirty.size)
        copy = (
            dirty.base is not None
            and end <= dirty.base_limit
            and end - start >= MIN_COPY_PART_BYTES
            and not dirty.written.overlaps(start, end)
        )
        plans.append(PartPlan(number, start, end, copy))
    return plans


ReadRange = Callable[[DirtyFile, int, int], Awaitable[bytes]]


class Uploader:
    """Commits dirty files. Stateless between commits apart from its limiter: the state of
    a commit in flight lives in the DirtyFile (for status) and on the stack."""

    def __init__(self, store: ObjectStore, read_range: ReadRange, *, part_bytes: int, multipart_threshold_bytes: int,
                 parallel_parts: int) -> None:
        self._store = store
        self._read = read_range
        self._part_bytes = part_bytes
        self._threshold = multipart_threshold_bytes
        self._limiter = trio.CapacityLimiter(parallel_parts)

    async def commit(self, dirty: DirtyFile) -> PutResult:
        """Upload the dirty file's current content as its key's new object."""
        dirty.uploading_total = dirty.size
        dirty.uploaded = 0
        if dirty.size <= self._threshold:
            body = await self._read(dirty, 0, dirty.size)
            result = await self._store.put_object(dirty.key, body, dirty.options)
            dirty.uploaded = dirty.size
            return result
        return await self._multipart(dirty)

    async def _multipart(self, dirty: DirtyFile) -> PutResult:
        plans = plan_parts(dirty, part_size_for(dirty.size, self._part_bytes))
        upload_id = await self._store.create_multipart_upload(dirty.key, dirty.options)
        parts: dict[int, PartInfo] = {}
        base = dirty.base
        try:
            async with trio.open_nursery() as nursery:
                for plan in plans:
                    nursery.start_soon(self._one_part, dirty, upload_id, plan, base, parts)
            ordered = [parts[plan.number] for plan in plans]
            return await self._store.complete_multipart_upload(dirty.key, upload_id, ordered)
        except BaseException:
            with trio.CancelScope(shield=True):
                try:
                    await self._store.abort_multipart_upload(dirty.key, upload_id)
                except CosfsError as exc:
                    log.warning("could not abort multipart upload of %s: %s", dirty.key, exc)
            raise

    async def _one_part(self, dirty: DirtyFile, upload_id: str, plan: PartPlan, base: ObjectRef | None,
                        parts: dict[int, PartInfo]) -> None:
        async with self._limiter:
            if plan.copy and base is not None:
                info = await self._store.upload_part_copy(
                    dirty.key, upload_id, plan.number, base.key, (plan.start, plan.end - 1),
                    source_if_match=base.etag)
            else:
                body = await self._read(dirty, plan.start, plan.end)
                info = await self._store.upload_part(dirty.key, upload_id, plan.number, body)
            if info.size_bytes is None:
                info = dataclasses.replace(info, size_bytes=plan.end - plan.start)
            parts[plan.number] = info
            dirty.uploaded += plan.end - plan.start
