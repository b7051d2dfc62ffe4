"""HTTP/1.1 framing for the client, sans I/O: a request head out, a response framed in.

Pure: bytes in, values and events out, so that every framing a server may send (a head split
anywhere, chunked bodies split inside a size line or a CRLF, 100 Continue first, trailers,
chunk extensions, a body delimited by the connection's end) is tested with fixed inputs
(tests/cos/test_http1.py), whatever drives the socket.

Rules (RFC 9112):
- Request heads are built from our own names and values; a value holding CR, LF or NUL
  (which could smuggle a header) is refused, as is a method or target that is not one token.
- A response to HEAD, and any 1xx, 204 or 304, has no body whatever its headers say. 1xx
  heads are skipped. Otherwise `Transfer-Encoding: chunked` (last coding) frames the body,
  else `Content-Length` (repeated values must agree), else the body runs to the connection's
  end (and the connection is not reused).
- A connection is reusable after a response only when the response said HTTP/1.1 without
  `Connection: close`, its body was framed by length or chunks and read to its end, and no
  bytes followed it.
"""

from __future__ import annotations

import dataclasses
import re

MAX_HEAD_BYTES = 64 * 1024
MAX_LINE_BYTES = 8 * 1024  # a chunk-size line or trailer line

_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: (.*))?")
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\0]")


class FramingError(Exception):
    """The peer's bytes are not a well-framed HTTP/1.1 response (or ours would not be)."""


def request_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    """`METHOD target HTTP/1.1`, the headers, and the blank line."""
    if not _TOKEN.fullmatch(method.encode("ascii", "replace")):
        raise FramingError(f"invalid method {method!r}")
    if not target or any(c in target for c in " \r\n\0\t"):
        raise FramingError(f"invalid request target {target!r}")
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers:
        if not _TOKEN.fullmatch(name.encode("ascii", "replace")):
            raise FramingError(f"invalid header name {name!r}")
        if _FORBIDDEN_IN_VALUE.search(value):
            raise FramingError(f"header {name} holds CR, LF or NUL")
        lines.append(f"{name}: {value.strip()}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclasses.dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    reason: str
    http_minor: int  # HTTP/1.x
    headers: list[tuple[bytes, bytes]]  # names lower-cased, values stripped, in order


def parse_head(block: bytes) -> ResponseHead:
    """A response head (without its final blank line)."""
    lines = block.split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise FramingError(f"bad status line {lines[0][:80]!r}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise FramingError("obsolete line folding in a response head")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise FramingError(f"bad header line {line[:80]!r}")
        headers.append((name.lower(), value.strip(b" \t")))
    return ResponseHead(int(match[2]), (match[3] or b"").decode("latin-1"), int(match[1]), headers)


def _values(head: ResponseHead, name: bytes) -> list[bytes]:
    return [value for key, value in head.headers if key == name]


class ResponseReader:
    """Frames one response to a request of `method`. `feed(data)` as bytes arrive (b"" for
    the connection's end); `head` is set once the final head is in; `body` collects the body;
    `done` once it is complete. Raises FramingError on bytes that cannot be this response."""

    def __init__(self, method: str) -> None:
        self._method = method
        self._buffer = bytearray()
        self.head: ResponseHead | None = None
        self.body = bytearray()
        self.done = False
        self.until_close = False
        self.leftover = b""  # bytes after the response's end
        self._state = "head"
        self._left = 0  # bytes of body (or of the current chunk) still to come

    @property
    def reusable(self) -> bool:
        head = self.head
        return (self.done and head is not None and head.http_minor == 1 and not self.until_close
                and not self.leftover and not any(b"close" in v.lower() for v in _values(head, b"connection")))

    def feed(self, data: bytes) -> None:
        if self.done:
            self.leftover += data
            return
        if not data:
            self._end_of_stream()
            return
        self._buffer += data
        while not self.done and self._step():
            pass
        if self.done and self._buffer:
            self.leftover = bytes(self._buffer)
            self._buffer.clear()

    def _end_of_stream(self) -> None:
        if self._state == "until_close":
            self.done = True
            return
        if self._state == "head" and not self._buffer and self.head is None:
            raise FramingError("the server closed the connection without a response")
        raise FramingError(f"the server closed the connection in the middle of the response ({self._state})")

    def _step(self) -> bool:
        """Consume what the buffer allows in the current state; False when it needs more."""
        buffer = self._buffer
        if self._state == "head":
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise FramingError(f"response head longer than {MAX_HEAD_BYTES} bytes")
                return False
            head = parse_head(bytes(buffer[:end]))
            del buffer[:end + 4]
            if 100 <= head.status < 200:
                return True  # 100 Continue and the like: the real answer follows
            self.head = head
            self._frame(head)
            return True
        if self._state == "length":
            take = min(self._left, len(buffer))
            self.body += buffer[:take]
            del buffer[:take]
            self._left -= take
            if self._left == 0:
                self.done = True
            return bool(buffer) and not self.done
        if self._state == "until_close":
            self.body += buffer
            buffer.clear()
            return False
        if self._state == "chunk_size":
            line = self._line()
            if line is None:
                return False
            size_text = line.split(b";", 1)[0].strip(b" \t")
            if not size_text or not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
                raise FramingError(f"bad chunk size line {line[:80]!r}")
            self._left = int(size_text, 16)
            self._state = "chunk_data" if self._left else "trailers"
            return True
        if self._state == "chunk_data":
            take = min(self._left, len(buffer))
            self.body += buffer[:take]
            del buffer[:take]
            self._left -= take
            if self._left == 0:
                self._state = "chunk_end"
                return True
            return False
        if self._state == "chunk_end":
            if len(buffer) < 2:
                return False
            if buffer[:2] != b"\r\n":
                raise FramingError("a chunk is not followed by CRLF")
            del buffer[:2]
            self._state = "chunk_size"
            return True
        if self._state == "trailers":
            line = self._line()
            if line is None:
                return False
            if not line:
                self.done = True
            return True
        raise AssertionError(self._state)

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE_BYTES:
                raise FramingError(f"a chunk or trailer line longer than {MAX_LINE_BYTES} bytes")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 2]
        return line

    def _frame(self, head: ResponseHead) -> None:
        if self._method == "HEAD" or head.status in (204, 304):
            self.done = True
            return
        codings = b",".join(_values(head, b"transfer-encoding")).lower()
        if codings:
            if codings.split(b",")[-1].strip() != b"chunked":
                self._state = "until_close"  # RFC 9112 6.3: read until the connection closes
                self.until_close = True
            else:
                self._state = "chunk_size"
            return
        lengths = {value for value in _values(head, b"content-length")}
        if len(lengths) > 1:
            raise FramingError(f"conflicting Content-Length values {sorted(lengths)}")
        if lengths:
            text = lengths.pop()
            if not text.isdigit():
                raise FramingError(f"bad Content-Length {text[:40]!r}")
            self._left = int(text)
            self._state = "length"
            if self._left == 0:
                self.done = True
            return
        self._state = "until_close"
        self.until_close = True
