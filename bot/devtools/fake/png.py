"""A tiny valid PNG built with zlib and struct: a QR-looking pattern derived from a seed."""

from __future__ import annotations

import hashlib
import struct
import zlib

MODULES = 21  # a version-1 QR code is 21×21 modules
SCALE = 4
QUIET = 2


def qr_png(seed: str) -> bytes:
    """A grayscale PNG whose dark modules follow the seed's hash (not a scannable code)."""
    bits = _bits(seed)
    side = (MODULES + 2 * QUIET) * SCALE
    rows = []
    for y in range(side):
        row = bytes(_pixel(bits, x // SCALE - QUIET, y // SCALE - QUIET) for x in range(side))
        rows.append(b"\x00" + row)  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _chunk(b"IEND", b"")
    )


def _bits(seed: str) -> list[bool]:
    digest = b""
    counter = 0
    while len(digest) * 8 < MODULES * MODULES:
        digest += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return [bool(digest[i // 8] >> (i % 8) & 1) for i in range(MODULES * MODULES)]


def _pixel(bits: list[bool], x: int, y: int) -> int:
    if not (0 <= x < MODULES and 0 <= y < MODULES):
        return 255
    if _finder(x, y) is not None:
        return 0 if _finder(x, y) else 255
    return 0 if bits[y * MODULES + x] else 255


def _finder(x: int, y: int) -> bool | None:
    """The three corner squares every QR code has (None outside them)."""
    for ox, oy in ((0, 0), (MODULES - 7, 0), (0, MODULES - 7)):
        dx, dy = x - ox, y - oy
        if 0 <= dx < 7 and 0 <= dy < 7:
            ring = min(dx, dy, 6 - dx, 6 - dy)
            return ring != 1
    return None


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
