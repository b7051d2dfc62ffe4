"""`CosClient`: the `ObjectStore` over HTTP (httpx on trio): COS's operations, with
end-to-end integrity checks and the rules for ambiguous results.

The modules under it: `cosfs.cos.codecs` (what headers and bodies mean, pure),
`cosfs.cos.engine` (signing, sending, retries, error mapping; every request goes through one
`RequestEngine`) and `cosfs.cos.streams` (GET bodies, ranges and resumes). All log under this
module's name, "cosfs.cos.client".

Non-idempotent operations and ambiguous failures: when an attempt may have taken effect (the
connection broke after the request was sent) the retry can fail with a code that actually
means "done": DELETE of a missing key always counts as success; Abort after a retry accepts
`NoSuchUpload`; APPEND after a retry that gets `AppendPositionErr` HEADs the object and
accepts it when its size is position + len(body); Complete after a retry that gets
`NoSuchUpload` HEADs the key and accepts it when the CRC64 (or, without CRCs, the `-N` ETag
suffix) matches the parts.

Integrity: PUT, APPEND and the XML bodies carry Content-MD5 (unless `config.content_md5` is
"never"), Upload Part too with "always", and with "auto" (the default) until a part's reply
has shown the server returns CRC64: MD5 costs ~1.4 s of CPU per GiB, and a part whose CRC64
differs is refused (and sent again) before Complete can make it visible. PUT and Upload Part
compare the returned CRC64 with the local one; whole-object GETs and streams are checked against
`x-cos-hash-crc64ecma`; Complete checks the returned CRC64 against the combination of the
parts' CRCs when all are known.
A server without CRC64 (S3-compatible, not COS) is never failed for it: an MD5-shaped ETag
of a PUT or part must then be the MD5 of the bytes sent (unless the object is encrypted),
and GETs go unchecked.

Range reads (`cosfs.cos.streams`): a 416 for a range whose first byte is at or beyond the
object's size (one HEAD tells) is an empty read, not an error.

Dialects (`endpoint.Dialect`): SigV4 mounts speak S3 (the engine renames the headers, see
`cosfs.cos.engine`), and replies are read under either prefix (`x-amz-meta-*` and
`x-cos-meta-*` are both user metadata). What S3 servers answer where COS would not (copies
not taken for copies, no Upload Part - Copy, Complete ETags HEAD does not repeat) is read by
`cosfs.cos.s3_servers`.

Listings: keys and common prefixes outside the prefix asked for, or not after the marker,
are dropped with one warning per listing, so that no caller walks (or renames) names a
listing cannot contain. Every paginated listing (objects, uploads, parts) follows its
markers through one loop, which refuses a truncated page that does not advance.

Encryption (COSFS's use_sse): SSE-COS and SSE-KMS headers go on the requests that create an
object (PUT, Initiate, Copy, first Append); an SSE-C key goes on those, on every part, GET and
HEAD, and as the copy source's key on copies. ahbe_conf headers join the creating requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

import httpx

from cosfs.cos import crc64, s3_servers
from cosfs.cos import xml as cosxml
from cosfs.cos.codecs import (
    bytes_spec,
    combined_crc,
    etag_contradicts_md5,
    etag_of,
    extra_headers,
    md5_b64,
    object_meta,
    quote_etag,
    reply_crc64,
    reply_headers,
    reply_shape,
    sse_headers,
    stray_names,
)
from cosfs.cos.endpoint import Addressing, Dialect
from cosfs.cos.engine import Call, Reply, RequestEngine, compute_hash
from cosfs.cos.store import (
    MAX_DELETE_KEYS,
    MAX_LIST_KEYS,
    AppendResult,
    CopyResult,
    DeleteFailure,
    DeleteResult,
    ListPage,
    ObjectMeta,
    PartInfo,
    PutResult,
    UploadInfo,
    WriteOptions,
)
from cosfs.cos.streams import EmptyStream, ObjectStream
from cosfs.errors import (
    CosError,
    IntegrityError,
    InvalidName,
    NotFound,
    ProtocolError,
    TransientError,
)

if TYPE_CHECKING:
    from cosfs.config import CosConfig
    from cosfs.credentials import CredentialProvider

log = logging.getLogger(__name__)


class _Page(Protocol):
    @property
    def is_truncated(self) -> bool: ...


_PageT = TypeVar("_PageT", bound=_Page)
_Marker = TypeVar("_Marker", int, str, tuple[str, str])


async def _paginate(fetch: Callable[[_Marker], Awaitable[_PageT]], start: _Marker,
                    next_marker: Callable[[_PageT], _Marker],
                    stalled: Callable[[_Marker], str]) -> AsyncIterator[_PageT]:
    """The pages of a listing, from marker `start` on: `fetch(marker)` gets one page,
    `next_marker(page)` names where the next one starts. A truncated page whose next marker
    is not past its own is a ProtocolError (`stalled(marker)` its message), never a loop."""
    marker = start
    while True:
        page = await fetch(marker)
        yield page
        if not page.is_truncated:
            return
        following = next_marker(page)
        if following <= marker:
            raise ProtocolError(stalled(marker))
        marker = following


def _parsed(call: Call, parser, body: bytes | None):
    """`parser(body)`, its ProtocolError naming the call."""
    try:
        return parser(body or b"")
    except ProtocolError as exc:
        raise ProtocolError(f"{call.what()}: {exc}") from None


class CosClient:
    """One bucket over HTTP; implements `cosfs.cos.store.ObjectStore`.

    State: the request engine (the httpx pool, the learnt clock offset, `stats`) and whether
    the server has Upload Part - Copy. All are safe to share between trio tasks.
    """

    def __init__(
        self,
        config: CosConfig,
        credentials: CredentialProvider,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._engine = RequestEngine(config, credentials, clock=clock, transport=transport,
                                     rng=rng or random.Random())
        self.stats = self._engine.stats
        self._sse = sse_headers(config)
        # Whether the server has Upload Part - Copy: COS has; in the S3 dialect a probe tells.
        self._part_copy = s3_servers.PartCopy(self, self._send_part_copy,
                                              known=None if self._engine.dialect.name == "s3" else True)
        # content_md5 "auto": parts go without Content-MD5 once a part's reply has carried a
        # CRC64 (then compared with ours); a reply without one turns it back on.
        self._parts_have_crc64 = False

    @property
    def addressing(self) -> Addressing:
        return self._engine.addressing

    @property
    def dialect(self) -> Dialect:
        return self._engine.dialect

    @property
    def _transport(self) -> httpx.AsyncBaseTransport:
        """The engine's transport (tests/compat reach the mock transport through it)."""
        return self._engine.transport

    async def aclose(self) -> None:
        await self._engine.aclose()

    async def __aenter__(self) -> CosClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    def _write_headers(self, options: WriteOptions, key: str) -> dict[str, str]:
        """Headers of a request that creates `key`: type, metadata, class, encryption, and
        the ahbe_conf headers that match the key (which win over the others)."""
        headers = {"content-type": options.content_type or "application/octet-stream"}
        for name, value in options.user_meta.items():
            if not value.isascii() or not name.isascii() or "\n" in value or "\r" in value:
                raise InvalidName(f"metadata {name!r} must be printable ASCII (URL-encode other text)")
            headers[f"x-cos-meta-{name.lower()}"] = value
        storage_class = options.storage_class or self._config.storage_class
        if storage_class:
            headers["x-cos-storage-class"] = storage_class
        if options.server_side_encryption:
            headers["x-cos-server-side-encryption"] = options.server_side_encryption
        else:
            headers.update(self._sse.write)
        if options.acl:
            headers["x-cos-acl"] = options.acl
        headers.update(extra_headers(self._config.extra_headers, key))
        return headers

    # --- bucket ---------------------------------------------------------------------------

    async def head_bucket(self) -> None:
        await self._engine.send(Call("head_bucket", "HEAD", None))

    # --- reads ----------------------------------------------------------------------------

    def _get_call(self, op: str, key: str, byte_range: tuple[int, int] | None, if_match: str | None) -> Call:
        headers: dict[str, str] = dict(self._sse.read)
        if byte_range is not None:
            headers["range"] = bytes_spec(byte_range)
        if if_match:
            headers["if-match"] = quote_etag(if_match)
        return Call(op, "GET", key, headers=headers)

    async def head_object(self, key: str, *, if_match: str | None = None) -> ObjectMeta:
        headers = dict(self._sse.read)
        if if_match:
            headers["if-match"] = quote_etag(if_match)
        reply = await self._engine.send(Call("head_object", "HEAD", key, headers=headers))
        return object_meta(key, reply.response, self._engine.dialect)

    async def _empty_range(self, key: str, byte_range: tuple[int, int], if_match: str | None,
                           error: CosError) -> ObjectMeta:
        """After a 416: the object's meta if the range starts at or past its end, else raise."""
        meta = await self.head_object(key, if_match=if_match)
        if byte_range[0] >= meta.size_bytes:
            return meta
        raise error

    async def get_object(
        self,
        key: str,
        *,
        byte_range: tuple[int, int] | None = None,
        if_match: str | None = None,
    ) -> tuple[ObjectMeta, bytes]:
        if byte_range is not None:
            # Streamed, so that a server which ignores Range is read only up to the slice.
            async with self._open("get_object", key, byte_range, if_match) as (meta, chunks):
                return meta, b"".join([chunk async for chunk in chunks])
        call = self._get_call("get_object", key, None, if_match)
        reply = await self._engine.send(call)
        response, body = reply.response, reply.body or b""
        _, problem = reply_shape(response, 0, None, len(body))
        if problem:
            raise self._engine.final_error(call, ProtocolError(f"{call.what()}: {problem}"), None,
                                           reply.attempts, response.status_code)
        meta = object_meta(key, response, self._engine.dialect, size=len(body))
        await self._check_crc(call, meta.crc64, body)
        return meta, body

    async def _check_crc(self, call: Call, expected: int | None, body: bytes) -> None:
        if expected is None:
            return
        actual = await compute_hash(body, lambda: crc64.crc64(body))
        if actual != expected:
            raise self._engine.final_error(
                call, IntegrityError(f"{call.what()}: CRC64 mismatch: server says {expected}, body has {actual}"),
                None, 1, 200,
            )

    def open_object(
        self,
        key: str,
        *,
        byte_range: tuple[int, int] | None = None,
        if_match: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[tuple[ObjectMeta, AsyncIterator[bytes]]]:
        return self._open("open_object", key, byte_range, if_match)

    @contextlib.asynccontextmanager
    async def _open(
        self, op: str, key: str, byte_range: tuple[int, int] | None, if_match: str | None
    ) -> AsyncIterator[tuple[ObjectMeta, AsyncIterator[bytes]]]:
        call = self._get_call(op, key, byte_range, if_match)
        reply = await self._engine.send(call, stream=True, accept_codes={"InvalidRange"} if byte_range else frozenset())
        if reply.error is not None:
            assert byte_range is not None
            meta = await self._empty_range(key, byte_range, if_match, reply.error)
            yield meta, EmptyStream()
            return
        try:
            stream = ObjectStream(self._engine, call, reply.response, byte_range)
        except BaseException:
            await reply.response.aclose()
            raise
        try:
            yield stream.meta, stream
        finally:
            await stream.aclose()

    # --- writes ---------------------------------------------------------------------------

    async def put_object(self, key: str, body: bytes, options: WriteOptions = WriteOptions()) -> PutResult:
        headers = self._write_headers(options, key)
        md5, local_crc, sha = await self._engine.digests(body)
        if self._config.content_md5 != "never":
            headers["content-md5"] = md5
        call = Call("put_object", "PUT", key, headers=headers, body=body, payload_sha256=sha)
        reply = await self._engine.send(call)
        etag = etag_of(reply.response)
        sse = options.server_side_encryption or self._config.server_side_encryption
        self._check_stored(call, reply.response, local_crc, md5, encrypted=bool(sse))
        return PutResult(etag=etag, crc64=local_crc)

    def _check_stored(self, call: Call, response: httpx.Response, local_crc: int, md5: str | None, *,
                      encrypted: bool) -> None:
        """After a PUT or part: the server's CRC64 must be ours. A server without CRC64 (not
        COS) has checked Content-MD5; if its ETag is an MD5 it must be ours too, except for
        encrypted objects, whose ETags need not be MD5s of the data. `md5` may be None only
        when the reply has a CRC64 (the MD5 is not needed then)."""
        server_crc = reply_crc64(response)
        if server_crc is not None:
            self._compare_crc(call, server_crc, local_crc)
            return
        assert md5 is not None, "callers compute the MD5 when the reply has no CRC64"
        if not encrypted and etag_contradicts_md5(etag_of(response), md5):
            raise self._engine.final_error(call, IntegrityError(
                f"{call.what()}: no CRC64 in the reply, and ETag {etag_of(response)} is not the MD5 of the "
                f"bytes sent"), None, 1, response.status_code)

    def _compare_crc(self, call: Call, server_crc: int | None, local_crc: int | None) -> None:
        if server_crc is not None and local_crc is not None and server_crc != local_crc:
            raise self._engine.final_error(
                call,
                IntegrityError(f"{call.what()}: CRC64 mismatch: sent {local_crc}, server stored {server_crc}"),
                None, 1, 200,
            )

    async def delete_object(self, key: str) -> None:
        await self._engine.send(Call("delete_object", "DELETE", key), accept_codes={"NoSuchKey"})

    async def delete_objects(self, keys: Sequence[str]) -> DeleteResult:
        deleted: list[str] = []
        failed: list[DeleteFailure] = []
        keys = list(keys)
        for start in range(0, len(keys), MAX_DELETE_KEYS):
            batch = keys[start: start + MAX_DELETE_KEYS]
            body = cosxml.build_delete(batch, quiet=False)
            md5, _, sha = await self._engine.digests(body)
            headers = {"content-type": "application/xml", "content-md5": md5}
            call = Call("delete_objects", "POST", None, params=[("delete", "")], headers=headers, body=body,
                        payload_sha256=sha)
            reply = await self._engine.send(call, check_200=True)
            result = _parsed(call, cosxml.parse_delete_result, reply.body)
            deleted.extend(result.deleted)
            failed.extend(result.failed)
        return DeleteResult(deleted=tuple(deleted), failed=tuple(failed))

    async def copy_object(
        self,
        source_key: str,
        dest_key: str,
        *,
        replace_metadata: WriteOptions | None = None,
        source_if_match: str | None = None,
    ) -> CopyResult:
        headers = {"x-cos-copy-source": self._copy_source(source_key), **self._sse.copy_source}
        if replace_metadata is not None:
            headers["x-cos-metadata-directive"] = "Replaced"
            headers.update(self._write_headers(replace_metadata, dest_key))
        else:
            headers["x-cos-metadata-directive"] = "Copy"
            if self._config.storage_class:
                headers["x-cos-storage-class"] = self._config.storage_class
            headers.update(self._sse.write)
        if source_if_match:
            headers["x-cos-copy-source-if-match"] = quote_etag(source_if_match)
        call = Call("copy_object", "PUT", dest_key, headers=headers)
        reply = await self._engine.send(call, check_200=True)
        result = s3_servers.copy_result(self._engine, call, reply, source_if_match, etag_optional=True)
        if result.crc64 is None:
            header_crc = reply_crc64(reply.response)
            if header_crc is not None:
                result = dataclasses.replace(result, crc64=header_crc)
        if not result.etag:
            result = await s3_servers.version_of_empty_copy(self._engine, self.head_object, call, reply,
                                                            source_if_match, result)
        return result

    def _copy_source(self, key: str) -> str:
        return self._engine.addressing.copy_source(key, s3=self._engine.dialect.name == "s3")

    async def append_object(self, key: str, position: int, body: bytes,
                            options: WriteOptions = WriteOptions()) -> AppendResult:
        headers = self._write_headers(options, key) if position == 0 else {}
        md5, _, sha = await self._engine.digests(body)
        if self._config.content_md5 != "never":
            headers["content-md5"] = md5
        call = Call("append_object", "POST", key, params=[("append", ""), ("position", str(position))],
                    headers=headers, body=body, payload_sha256=sha)
        reply = await self._engine.send(call, accept_after_retry={"AppendPositionErr"})
        if reply.error is not None:
            # An earlier attempt may have appended already: accept it if the length says so.
            meta = await self.head_object(key)
            if meta.size_bytes == position + len(body):
                return AppendResult(next_position=meta.size_bytes, etag=meta.etag, crc64=meta.crc64)
            raise reply.error
        next_text = reply_headers(reply.response).get("x-cos-next-append-position", "").strip()
        next_position = int(next_text) if next_text.isdigit() else position + len(body)
        return AppendResult(next_position=next_position, etag=etag_of(reply.response),
                            crc64=reply_crc64(reply.response))

    # --- listing --------------------------------------------------------------------------

    async def list_objects(
        self,
        prefix: str = "",
        *,
        delimiter: str = "",
        marker: str = "",
        max_keys: int = MAX_LIST_KEYS,
    ) -> ListPage:
        if not 1 <= max_keys <= MAX_LIST_KEYS:
            raise ValueError(f"max_keys must be 1..{MAX_LIST_KEYS}")
        params = []
        if delimiter:
            params.append(("delimiter", delimiter))
        params.append(("encoding-type", "url"))
        if marker:
            params.append(("marker", marker))
        params.append(("max-keys", str(max_keys)))
        if prefix:
            params.append(("prefix", prefix))
        call = Call("list_objects", "GET", None, params=params)
        reply = await self._engine.send(call)
        page, stray = stray_names(_parsed(call, cosxml.parse_list_bucket, reply.body), prefix, marker)
        if stray:
            log.warning("%s: ignored %d name(s) outside prefix %r or not after marker %r, e.g. %r",
                        call.what(), len(stray), prefix, marker, stray[0])
        return page

    def list_all(self, prefix: str = "", *, delimiter: str = "") -> AsyncIterator[ListPage]:
        def next_marker(page: ListPage) -> str:
            if page.next_marker:
                return page.next_marker
            candidates = [e.key for e in page.entries[-1:]] + list(page.common_prefixes[-1:])
            return max(candidates) if candidates else ""

        return _paginate(
            lambda marker: self.list_objects(prefix, delimiter=delimiter, marker=marker), "", next_marker,
            lambda marker: f"listing of {prefix!r} is truncated but does not advance past {marker!r}",
        )

    # --- multipart ------------------------------------------------------------------------

    async def create_multipart_upload(self, key: str, options: WriteOptions = WriteOptions()) -> str:
        call = Call("create_multipart_upload", "POST", key, params=[("uploads", "")],
                    headers=self._write_headers(options, key))
        reply = await self._engine.send(call, check_200=True)
        return _parsed(call, cosxml.parse_initiate_result, reply.body)

    async def upload_part(self, key: str, upload_id: str, part_number: int, body: bytes) -> PartInfo:
        with_md5 = self._config.content_md5 == "always" or (self._config.content_md5 == "auto"
                                                             and not self._parts_have_crc64)
        md5, local_crc, sha = await self._engine.digests(body, md5=with_md5)
        headers = dict(self._sse.part)
        if md5 is not None:
            headers["content-md5"] = md5
        call = Call("upload_part", "PUT", key,
                    params=[("partNumber", str(part_number)), ("uploadId", upload_id)],
                    headers=headers, body=body, payload_sha256=sha)
        reply = await self._engine.send(call)
        if reply_crc64(reply.response) is not None:
            self._parts_have_crc64 = True
        elif md5 is None:  # no CRC64 after all: check the ETag as a server without one
            self._parts_have_crc64 = False
            md5 = await compute_hash(body, lambda: md5_b64(body))
        self._check_stored(call, reply.response, local_crc, md5, encrypted=bool(self._config.server_side_encryption))
        etag = etag_of(reply.response)
        if not etag:
            raise ProtocolError(f"{call.what()}: part {part_number} uploaded without an ETag in the reply")
        return PartInfo(part_number=part_number, etag=etag, size_bytes=len(body), crc64=local_crc)

    async def upload_part_copy(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        source_key: str,
        source_range: tuple[int, int] | None = None,
        *,
        source_if_match: str | None = None,
    ) -> PartInfo:
        if source_range is not None and not await self._part_copy.available(key, source_key, source_range[0],
                                                                             source_if_match):
            return await self._part_copy.by_hand(key, upload_id, part_number, source_key, source_range,
                                                 source_if_match)
        call = self._part_copy_call(key, upload_id, part_number, source_key, source_range, source_if_match)
        reply = await self._engine.send(call, check_200=True)
        # A server without Upload Part - Copy (rclone) takes it for an upload of an empty part.
        source_empty = False if source_range is not None else None  # a range holds a byte at least
        result = s3_servers.copy_result(self._engine, call, reply, source_if_match, source_empty=source_empty)
        crc = result.crc64
        if crc is None:
            crc = reply_crc64(reply.response)
        size = source_range[1] - source_range[0] + 1 if source_range is not None else None
        return PartInfo(part_number=part_number, etag=result.etag, size_bytes=size, crc64=crc)

    def _part_copy_call(self, key: str, upload_id: str, part_number: int, source_key: str,
                        source_range: tuple[int, int] | None, source_if_match: str | None) -> Call:
        headers = {"x-cos-copy-source": self._copy_source(source_key), **self._sse.part, **self._sse.copy_source}
        if source_range is not None:
            headers["x-cos-copy-source-range"] = bytes_spec(source_range)
        if source_if_match:
            headers["x-cos-copy-source-if-match"] = quote_etag(source_if_match)
        return Call("upload_part_copy", "PUT", key,
                    params=[("partNumber", str(part_number)), ("uploadId", upload_id)], headers=headers)

    async def _send_part_copy(self, key: str, upload_id: str, part_number: int, source_key: str,
                              source_range: tuple[int, int], source_if_match: str | None) -> Reply:
        call = self._part_copy_call(key, upload_id, part_number, source_key, source_range, source_if_match)
        return await self._engine.send(call, check_200=True)

    async def complete_multipart_upload(self, key: str, upload_id: str, parts: Sequence[PartInfo]) -> PutResult:
        ordered = sorted(parts, key=lambda p: p.part_number)
        body = cosxml.build_complete(ordered)
        md5, _, sha = await self._engine.digests(body)
        headers = {"content-type": "application/xml"}
        if self._config.content_md5 != "never":
            headers["content-md5"] = md5
        call = Call("complete_multipart_upload", "POST", key, params=[("uploadId", upload_id)],
                    headers=headers, body=body, payload_sha256=sha, timeout=self._engine.complete_timeout)
        expected = combined_crc(ordered)
        try:
            reply = await self._engine.send(call, check_200=True, accept_after_retry={"NoSuchUpload"})
            if reply.error is not None:
                raise reply.error
            result = _parsed(call, cosxml.parse_complete_result, reply.body)
        except (TransientError, ProtocolError, CosError) as exc:
            # An ambiguous end (a timeout, a cut or unreadable reply, NoSuchUpload after an
            # attempt that may have landed): what the object shows decides, never a guess.
            if isinstance(exc, CosError) and exc.code != "NoSuchUpload":
                raise
            landed = await self._completed_anyway(key, ordered, expected)
            if landed is None:
                raise
            log.info("%s: the reply was lost (%s) but the object is the parts': completed", call.what(), exc)
            return landed
        server_crc = reply_crc64(reply.response)
        if server_crc is None:
            server_crc = result.crc64
        self._compare_crc(call, server_crc, expected)
        done = PutResult(etag=result.etag, crc64=server_crc if server_crc is not None else expected)
        if self._engine.dialect.name == "s3" or not done.etag:
            # S3 servers may answer an ETag HEAD does not repeat; some answer none at all.
            return await s3_servers.committed_version(self.head_object, call, done, ordered)
        return done

    async def _completed_anyway(self, key: str, parts: Sequence[PartInfo],
                                expected_crc: int | None) -> PutResult | None:
        """After an ambiguous Complete: the object, if it is these parts joined (their size,
        and their combined CRC64, or without CRCs an ETag of as many parts), else None."""
        try:
            meta = await self.head_object(key)
        except NotFound:
            return None
        sizes = [p.size_bytes for p in parts if p.size_bytes is not None]
        if len(sizes) == len(parts) and meta.size_bytes != sum(sizes):
            return None
        if expected_crc is not None and meta.crc64 is not None:
            done = meta.crc64 == expected_crc
        else:
            done = meta.etag.endswith(f"-{len(parts)}")
        return PutResult(etag=meta.etag, crc64=meta.crc64, last_modified_s=meta.last_modified_s) if done else None

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        call = Call("abort_multipart_upload", "DELETE", key, params=[("uploadId", upload_id)])
        await self._engine.send(call, accept_after_retry={"NoSuchUpload"})

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        async def fetch(marker: int) -> cosxml.PartsPage:
            params = [("max-parts", "1000")]
            if marker:
                params.append(("part-number-marker", str(marker)))
            params.append(("uploadId", upload_id))
            call = Call("list_parts", "GET", key, params=params)
            return _parsed(call, cosxml.parse_list_parts, (await self._engine.send(call)).body)

        pages = _paginate(
            fetch, 0,
            lambda page: page.next_part_number_marker or (page.parts[-1].part_number if page.parts else 0),
            lambda _: f"list_parts {key!r}: part listing is truncated but does not advance",
        )
        return [part async for page in pages for part in page.parts]

    async def list_multipart_uploads(self, prefix: str = "") -> list[UploadInfo]:
        async def fetch(markers: tuple[str, str]) -> cosxml.UploadsPage:
            key_marker, upload_id_marker = markers
            params = [("encoding-type", "url")]
            if key_marker:
                params.append(("key-marker", key_marker))
            params.append(("max-uploads", "1000"))
            if prefix:
                params.append(("prefix", prefix))
            if upload_id_marker:
                params.append(("upload-id-marker", upload_id_marker))
            params.append(("uploads", ""))
            call = Call("list_multipart_uploads", "GET", None, params=params)
            return _parsed(call, cosxml.parse_list_uploads, (await self._engine.send(call)).body)

        def next_markers(page: cosxml.UploadsPage) -> tuple[str, str]:
            return (page.next_key_marker or (page.uploads[-1].key if page.uploads else ""),
                    page.next_upload_id_marker or (page.uploads[-1].upload_id if page.uploads else ""))

        pages = _paginate(fetch, ("", ""), next_markers,
                          lambda _: "list_multipart_uploads: upload listing is truncated but does not advance")
        return [upload async for page in pages for upload in page.uploads]
