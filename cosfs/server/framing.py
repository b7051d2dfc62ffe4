"""Re-framed responses for `cosfs serve --fault frame=MODES`: the same answers, written the
ways deployed servers, proxies and CDNs write them, so that a client is tested against every
framing it may meet (pure: bytes out, the sending is the connection's).

MODES, joined with `+`:
- ``chunked``     bodies as Transfer-Encoding: chunked (chunks of random sizes), no Content-Length
- ``extensions``  with chunked: chunk extensions (``;ext=v``) and trailer fields
- ``split``       every response written in pieces cut at random points (inside the status
                  line, a header, a chunk-size line, a CRLF), the body always after a pause
                  that follows the head
- ``continue``    a ``100 Continue`` interim response before the final one
- ``close``       ``Connection: close`` on every response, and the connection closed after it
- ``idle-close``  the connection closed after every response without saying so (what an idle
                  keep-alive timeout of a server or load balancer does)

HEAD responses and 204/304 keep their Content-Length and never carry a body.
"""

from __future__ import annotations

import random

MODES = frozenset({"chunked", "extensions", "split", "continue", "close", "idle-close"})


def frame(status: int, reason: str, headers: list[tuple[str, str]], body: bytes, *, bodiless: bool,
          modes: frozenset[str], rng: random.Random) -> tuple[list[bytes], bool]:
    """(the pieces to send, one pause between each two; whether to close afterwards)."""
    chunked = "chunked" in modes and not bodiless
    out_headers = [(n, v) for n, v in headers if not (chunked and n.lower() == "content-length")]
    if chunked:
        out_headers.append(("Transfer-Encoding", "chunked"))
    if "close" in modes:
        out_headers = [(n, v) for n, v in out_headers if n.lower() != "connection"] + [("Connection", "close")]
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in out_headers) + "\r\n"
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" if "continue" in modes else b""
    head_bytes = interim + head.encode("latin-1")
    if bodiless:
        body_bytes = b""
    elif chunked:
        body_bytes = _chunked(body, "extensions" in modes, rng)
    else:
        body_bytes = body
    close = "close" in modes or "idle-close" in modes
    if "split" not in modes:
        return [head_bytes + body_bytes] if body_bytes else [head_bytes], close
    return _split(head_bytes, rng) + _split(body_bytes, rng), close


def _chunked(body: bytes, extensions: bool, rng: random.Random) -> bytes:
    pieces = []
    at = 0
    while at < len(body):
        size = min(len(body) - at, rng.choice([1, 7, 100, 4096, 65536, 1 << 20]))
        ext = f";ext{rng.randrange(10)}=v" if extensions and rng.random() < 0.5 else ""
        pieces.append(f"{size:x}{ext}\r\n".encode() + body[at:at + size] + b"\r\n")
        at += size
    trailers = b"X-Cos-Trailer: 1\r\nX-Other-Trailer: two\r\n" if extensions else b""
    pieces.append(b"0" + (b";last=1" if extensions else b"") + b"\r\n" + trailers + b"\r\n")
    return b"".join(pieces)


def _split(data: bytes, rng: random.Random) -> list[bytes]:
    """`data` cut at a few random points, most in its first KiB (where the status line,
    headers, first chunk-size lines and their CRLFs are): over many responses, a cut falls
    at every kind of boundary."""
    if len(data) < 2:
        return [data] if data else []
    cuts = {rng.randrange(1, min(len(data), 1024)) for _ in range(rng.randint(1, 6))}
    cuts |= {rng.randrange(1, len(data)) for _ in range(rng.randint(0, 2))}
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]
