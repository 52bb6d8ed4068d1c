"""A minimal protobuf wire-format reader for the sinks' Loki and remote-write bodies.

Those messages (Loki ``PushRequest``, Prometheus ``WriteRequest``) have no Python package here; the sinks only
need a few fields, so they walk the wire format directly: varints, fixed 64-bit and length-delimited fields.
Malformed input raises ``WireError`` (the sink answers 400, as the real backends do).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from pipeline.protowire import WireError, decode_varint

__all__ = ["WIRE_I32", "WIRE_I64", "WIRE_LEN", "WIRE_VARINT", "WireError", "as_double", "fields", "signed64"]


WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_I32 = 0, 1, 2, 5


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field: ints for varint/fixed, bytes for length-delimited."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = decode_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == WIRE_VARINT:
            value, pos = decode_varint(buf, pos)
            yield number, wire, value
        elif wire == WIRE_LEN:
            size, pos = decode_varint(buf, pos)
            if pos + size > end:
                raise WireError("length-delimited field runs past the end")
            yield number, wire, buf[pos : pos + size]
            pos += size
        elif wire == WIRE_I64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            yield number, wire, int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == WIRE_I32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            yield number, wire, int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire}")


def as_double(bits: int) -> float:
    value: float = struct.unpack("<d", bits.to_bytes(8, "little"))[0]
    return value


def signed64(value: int) -> int:
    """A varint read as int64 (negative values are 10-byte two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value
