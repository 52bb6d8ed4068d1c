"""Bounded decompression of HTTP request bodies.

The size limit holds after decompression, and a bomb (a few KiB that inflate to GiBs) is never inflated past
the limit: zlib is asked for at most ``limit + 1`` bytes, so memory stays O(limit) whatever the input.
"""

from __future__ import annotations

import zlib

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS


class TooLarge(Exception):
    """The body inflates past the limit."""


class CorruptBody(ValueError):
    """The body is not valid data in its declared encoding."""


class UnsupportedEncoding(ValueError):
    """A Content-Encoding this receiver does not speak."""


def decode_body(body: bytes, content_encoding: str, limit: int) -> bytes:
    """Undo ``content_encoding`` (gzip, deflate, identity) with the output bounded by ``limit`` bytes."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity") or not body:
        if len(body) > limit:
            raise TooLarge
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, _GZIP_WBITS, limit)
    if encoding == "deflate":
        # RFC 9110 "deflate" is the zlib format, but some clients send raw deflate: accept both, like browsers.
        return _inflate(body, _ZLIB_WBITS if _has_zlib_header(body) else _RAW_DEFLATE_WBITS, limit)
    raise UnsupportedEncoding(f"unsupported Content-Encoding {content_encoding[:64]!r} (use gzip, deflate or none)")


def _has_zlib_header(data: bytes) -> bool:
    """RFC 1950: compression method 8 in the low nibble, and the first two bytes a multiple of 31."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            # limit - total + 1 >= 1 here; zlib treats 0 as "no limit", which must never be passed.
            out = inflater.decompress(rest, limit - total + 1)
        except zlib.error as exc:
            raise CorruptBody(f"invalid compressed body: {exc}") from None
        total += len(out)
        if total > limit:
            raise TooLarge
        parts.append(out)
        if not inflater.eof:
            raise CorruptBody("truncated compressed body")
        rest = inflater.unused_data
        # gzip allows several members back to back (RFC 1952); zlib and raw deflate streams stand alone.
        if not rest or wbits != _GZIP_WBITS:
            break
    if rest:
        raise CorruptBody("trailing data after the compressed body")
    return parts[0] if len(parts) == 1 else b"".join(parts)
