"""Varints as the protobuf runtime writes and reads them."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.protowire import WireError, decode_varint, encode_varint


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**35 + 7, 2**63])
def test_encode_matches_protobuf_and_decodes_back(value: int) -> None:
    # AnyValue.int_value is field 3, varint: tag 0x18, then the value exactly as protobuf encodes it.
    wire = AnyValue(int_value=value if value < 2**63 else -(2**63)).SerializeToString()
    assert wire[1:] == encode_varint(value)
    assert decode_varint(b"x" + wire[1:] + b"y", 1) == (value, len(wire))


def test_truncated_and_overlong_varints_are_errors() -> None:
    with pytest.raises(WireError, match="truncated"):
        decode_varint(b"\x80\x80", 0)
    with pytest.raises(WireError, match="longer than 10 bytes"):
        decode_varint(b"\xff" * 11, 0)
