"""Protobuf varints, for the code that reads or writes request bytes directly instead of through the protobuf
API: the pii processor's wire walk and splice, tail sampling's request framing, the benchmark's sinks.

Pure functions. Hot loops still read a one-byte length inline and call ``decode_varint`` for longer ones.
"""

from __future__ import annotations


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def decode_varint(buf: bytes, i: int) -> tuple[int, int]:
    """The varint at ``i`` and the index after it."""
    result = 0
    shift = 0
    while True:
        if i >= len(buf):
            raise WireError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


_ONE_BYTE = tuple(bytes((i,)) for i in range(0x80))


def encode_varint(value: int) -> bytes:
    """``value`` (non-negative) as a varint."""
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:  # every string and most spans of a typical request
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
