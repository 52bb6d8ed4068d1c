"""The disk queue's record format: round trip, checksums, resync after corruption, torn tails, acks."""

from __future__ import annotations

import pytest

from pipeline.exporters.queue import records
from pipeline.model import Signal


def record(body: bytes, items: int = 3, metadata: dict[str, tuple[str, ...]] | None = None) -> bytes:
    _, parts = records.encode(Signal.LOGS, items, metadata or {}, body)
    return b"".join(parts)


def test_round_trip_with_metadata() -> None:
    data = record(b"payload", 7, {"x-scope-orgid": ("t1",)})
    header = records.decode_header(data)
    assert header is not None
    assert (header.signal, header.items, header.body_len) == (Signal.LOGS, 7, 7)
    meta = data[records.HEADER_SIZE : records.HEADER_SIZE + header.meta_len]
    body = data[records.HEADER_SIZE + header.meta_len :]
    assert records.decode_payload(header, meta, body) == {"x-scope-orgid": ("t1",)}
    assert body == b"payload"


def test_payload_checksum_catches_a_flipped_bit() -> None:
    data = bytearray(record(b"abcdef"))
    data[-1] ^= 1
    header = records.decode_header(bytes(data))
    assert header is not None  # the header itself is fine
    with pytest.raises(records.CorruptRecord, match="checksum"):
        records.decode_payload(header, b"", bytes(data[records.HEADER_SIZE :]))


def test_scan_resyncs_after_a_garbled_header_and_reports_a_torn_tail() -> None:
    a, b, c = record(b"a" * 50), record(b"b" * 60), record(b"c" * 70)
    garbled = bytearray(b)
    garbled[10] ^= 0xFF  # inside the header: its CRC fails, lengths cannot be trusted
    data = a + bytes(garbled) + c + c[:40]  # the last record was cut short by a crash
    found = list(records.scan(data))
    kinds = [(type(e).__name__, e.offset) for e in found]
    assert kinds == [("Found", 0), ("Skipped", len(a)), ("Found", len(a) + len(b)), ("Skipped", len(a + b + c))]
    skipped_middle, torn = found[1], found[3]
    assert isinstance(skipped_middle, records.Skipped)
    assert not skipped_middle.torn
    assert skipped_middle.length == len(b)
    assert isinstance(torn, records.Skipped)
    assert torn.torn
    assert torn.length == 40


def test_acks_ignore_torn_and_garbled_entries() -> None:
    data = records.encode_ack(0) + records.encode_ack(4096)
    garbled = bytearray(records.encode_ack(8192))
    garbled[0] ^= 1
    assert records.decode_acks(data + bytes(garbled) + b"\x01\x02\x03") == {0, 4096}
