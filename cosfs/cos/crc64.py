"""CRC-64/XZ, which COS calls crc64ecma (`x-cos-hash-crc64ecma`), backed by anycrc (C).

`update` continues a running checksum; `combine` joins the checksums of two adjacent pieces
so that parts uploaded in parallel yield the whole object's value without re-reading it.
"""

from __future__ import annotations

import anycrc

_MODEL = anycrc.Model("CRC64-XZ")


def crc64(data: bytes | bytearray | memoryview) -> int:
    return _MODEL.calc(data)


def update(crc: int, data: bytes | bytearray | memoryview) -> int:
    """The checksum of (whatever gave `crc`) + data; update(0, b'') == 0."""
    if not data:
        return crc
    return _MODEL.calc(data, crc)


def combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """The checksum of a + b from crc(a), crc(b) and len(b)."""
    if length_b == 0:
        return crc_a
    return _MODEL.combine(crc_a, crc_b, length_b)


def parse_header(value: str | None) -> int | None:
    """The integer in an x-cos-hash-crc64ecma header, None when absent or unreadable."""
    if not value:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if 0 <= number < 1 << 64 else None
