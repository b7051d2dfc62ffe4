"""What S3-compatible servers (not COS) answer where COS would not, and how the client
reads it: kept apart from `cosfs.cos.client` so that COS's own operations read as COS
defines them, and each workaround says which server taught it.

- Copies a server did not take for copies: a server that does not know the copy headers
  stores the empty request body at the destination and answers as to an upload (no
  CopyObjectResult, ETag the MD5 of nothing). That is never success (`copy_result`), and
  the error says when the destination may have been emptied (logged at ERROR then).
- rclone answers a copy onto itself with an empty `<CopyObjectResult>`: the copy was done,
  and a HEAD tells the version it made (`version_of_empty_copy`).
- Servers without Upload Part - Copy (rclone) take one for an upload of an empty part:
  `PartCopy` asks once per client, in an upload of its own, and copies parts by a GET
  pinned to the source ETag and an Upload Part where the server has none.
- After Complete, an S3 server may answer an ETag that HEAD and GET do not repeat (rclone:
  `<md5>-N`, then the whole object's MD5), or none at all: the committed version is HEAD's
  (`committed_version`), as reads pin versions by ETag.

Logs under "cosfs.cos.client", as the rest of the client does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import trio

from cosfs.cos import xml as cosxml
from cosfs.cos.codecs import etag_of
from cosfs.cos.endpoint import EMPTY_MD5
from cosfs.cos.engine import Call, Reply, RequestEngine
from cosfs.cos.store import CopyResult, ObjectMeta, PartInfo, PutResult
from cosfs.errors import CosfsError, ProtocolError, Unsupported

log = logging.getLogger("cosfs.cos.client")

# A part copy done by GET and Upload Part holds the part in memory: bigger parts are refused.
MAX_PART_COPY_BY_HAND_BYTES = 64 * 1024 * 1024

HeadObject = Callable[[str], Awaitable[ObjectMeta]]


def copy_result(engine: RequestEngine, call: Call, reply: Reply, source_if_match: str | None, *,
                etag_optional: bool = False, source_empty: bool | None = None) -> CopyResult:
    """The copy result of a copy's 200 reply, or the error that it is none (see the module
    docstring). `source_empty` (default: told by `source_if_match`) lets an empty ETag be
    refused."""
    try:
        result = cosxml.parse_copy_result(reply.body or b"", etag_optional=etag_optional)
    except ProtocolError as exc:
        raise lost_copy(engine, call, reply, str(exc)) from None
    if source_empty is None:
        source_empty = source_if_match.strip('"') == EMPTY_MD5 if source_if_match else None
    if result.etag == EMPTY_MD5 and source_empty is False:
        raise lost_copy(engine, call, reply, f"the copy's ETag is {EMPTY_MD5} (no bytes) but the source has bytes")
    return result


def lost_copy(engine: RequestEngine, call: Call, reply: Reply, problem: str, *,
              emptied: bool | None = None) -> CosfsError:
    """The error for a copy the server did not make; at ERROR when the destination may now
    be empty (a part is harmless until Complete)."""
    etag = etag_of(reply.response)
    emptied = etag == EMPTY_MD5 if emptied is None else emptied
    text = (f"{call.what()}: the server did not answer as to a copy ({problem}; status "
            f"{reply.response.status_code}, ETag {etag or '-'})")
    if emptied and call.op == "upload_part_copy":
        text += "; it took the part copy for an upload of an empty part"
    elif emptied:
        text += ("; it may have stored an EMPTY object at the destination instead of the copy "
                 "(a server that does not understand the copy headers)")
    failure = ProtocolError(text)
    if emptied and call.op != "upload_part_copy":
        failure.log_level = logging.ERROR
    return engine.final_error(call, failure, None, reply.attempts, reply.response.status_code)


async def version_of_empty_copy(engine: RequestEngine, head: HeadObject, call: Call, reply: Reply,
                                source_if_match: str | None, result: CopyResult) -> CopyResult:
    """An empty `<CopyObjectResult>` (rclone, a copy onto itself): the version HEAD shows,
    unless the object is now empty while its source was not."""
    meta = await head(call.key or "")
    if meta.etag == EMPTY_MD5 and source_if_match and source_if_match.strip('"') != EMPTY_MD5:
        raise lost_copy(engine, call, reply, f"the object is now empty (ETag {EMPTY_MD5})", emptied=True)
    return CopyResult(etag=meta.etag, crc64=result.crc64 if result.crc64 is not None else meta.crc64,
                      last_modified_s=meta.last_modified_s)


async def committed_version(head: HeadObject, call: Call, done: PutResult, parts: Sequence[PartInfo]) -> PutResult:
    """After Complete on an S3 server: the version HEAD shows, if HEAD shows our object (its
    size is the parts'). If not (another writer's object landed in between, or HEAD failed),
    Complete's ETag stays: the mount then sees the other version as another writer's, which
    it is."""
    sizes = [p.size_bytes for p in parts if p.size_bytes is not None]
    try:
        meta = await head(call.key or "")
    except CosfsError as exc:
        log.warning("%s: could not HEAD the completed object (%s); keeping ETag %s from Complete",
                    call.what(), exc, done.etag)
        return done
    if len(sizes) == len(parts) and meta.size_bytes != sum(sizes):
        log.warning("%s: the object after Complete has %d bytes, the parts %d: another writer's; "
                    "keeping ETag %s from Complete", call.what(), meta.size_bytes,
                    sum(sizes), done.etag)
        return done
    if meta.crc64 is not None and done.crc64 is not None and meta.crc64 != done.crc64:
        log.warning("%s: the object after Complete has another CRC64: another writer's; keeping ETag %s "
                    "from Complete", call.what(), done.etag)
        return done
    if meta.etag != done.etag:
        log.debug("%s: Complete answered ETag %s, HEAD %s: the version is HEAD's", call.what(), done.etag, meta.etag)
    return PutResult(etag=meta.etag or done.etag, crc64=done.crc64, last_modified_s=meta.last_modified_s)


class _Multipart(Protocol):
    """What `PartCopy` needs of the client."""

    async def create_multipart_upload(self, key: str) -> str: ...

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None: ...

    async def get_object(self, key: str, *, byte_range: tuple[int, int] | None = None,
                         if_match: str | None = None) -> tuple[ObjectMeta, bytes]: ...

    async def upload_part(self, key: str, upload_id: str, part_number: int, body: bytes) -> PartInfo: ...


SendPartCopy = Callable[[str, str, int, str, tuple[int, int], str | None], Awaitable[Reply]]


class PartCopy:
    """Whether the server has Upload Part - Copy (COS has; an S3 server is asked once, before
    the first ranged part copy), and the copy by GET + Upload Part where it has not. Safe to
    share between trio tasks."""

    def __init__(self, client: _Multipart, send_part_copy: SendPartCopy, *, known: bool | None) -> None:
        self._client = client
        self._send = send_part_copy
        self._works = known
        self._lock = trio.Lock()

    async def available(self, key: str, source_key: str, first: int, source_if_match: str | None) -> bool:
        if self._works is None:
            async with self._lock:
                if self._works is None:
                    self._works = await self._probe(key, source_key, first, source_if_match)
        return self._works

    async def _probe(self, key: str, source_key: str, first: int, source_if_match: str | None) -> bool:
        """A server without it will not let the empty part it made be replaced (the upload is
        lost), so the question is asked in an upload of its own: one byte of the source is
        part-copied, the reply checked, and that upload aborted (an upload never changes the
        key's object)."""
        upload_id = await self._client.create_multipart_upload(key)
        try:
            reply = await self._send(key, upload_id, 1, source_key, (first, first), source_if_match)
            try:
                works = cosxml.parse_copy_result(reply.body or b"").etag != EMPTY_MD5
            except ProtocolError:
                works = False
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(CosfsError):
                await self._client.abort_multipart_upload(key, upload_id)
        if not works:
            log.info("this server has no Upload Part - Copy (it answered one with status %d, ETag %s, no copy "
                     "result): parts are copied with a GET and an Upload Part", reply.response.status_code,
                     etag_of(reply.response) or "-")
        return works

    async def by_hand(self, key: str, upload_id: str, part_number: int, source_key: str,
                      source_range: tuple[int, int], source_if_match: str | None) -> PartInfo:
        """Upload Part - Copy for a server without it: the range is read (pinned to
        `source_if_match`) and uploaded as the part."""
        first, last = source_range
        if last - first + 1 > MAX_PART_COPY_BY_HAND_BYTES:
            raise Unsupported(f"upload_part_copy {key!r}: this server has no Upload Part - Copy, and part "
                              f"{part_number} ({last - first + 1} bytes) is too big to copy through memory")
        _, body = await self._client.get_object(source_key, byte_range=source_range, if_match=source_if_match)
        if len(body) != last - first + 1:
            raise ProtocolError(f"upload_part_copy {key!r}: bytes {first}-{last} of {source_key!r} are past "
                                f"its end ({len(body)} bytes read)")
        return await self._client.upload_part(key, upload_id, part_number, body)
