"""The disk queue's record format, and scanning a segment for records. Pure: bytes in, facts out.

A segment file is a sequence of records, each:

    offset  size  field
    0       4     magic b"\\xf0OTQ" (a resync point after corruption)
    4       1     format version (1)
    5       1     signal (0 traces, 1 logs, 2 metrics)
    6       2     reserved (0)
    8       4     items in the request (so nothing is decoded to count them again)
    12      4     metadata length (msgpack map of client metadata, usually 0)
    16      4     body length (the serialized OTLP export request)
    20      4     CRC-32 of metadata + body
    24      4     CRC-32 of bytes 0..23 (the header itself)
    28      ...   metadata, then body

All integers little-endian. A header whose own CRC fails cannot be trusted for its lengths, so the scanner
looks for the next magic with a valid header (resync) and reports the bytes in between as corrupt. A header that
is valid but runs past the end of the file is a torn tail: the write of a request that was never acknowledged.
The payload CRC is checked when the record is read for sending; a mismatch skips that record alone.

An acknowledgement file lists the offsets of records that are done, 8 bytes each: offset and the CRC-32 of
the offset's bytes, so a torn or garbled entry is ignored (the record is then sent again: a duplicate, never a
loss).
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from pipeline.model import EMPTY_METADATA, Metadata, Signal

MAGIC = b"\xf0OTQ"
VERSION = 1
HEADER = struct.Struct("<4sBBHIIII")  # up to and including the payload CRC
HEADER_SIZE = HEADER.size + 4  # plus the header CRC
ACK = struct.Struct("<II")
MAX_PART = 2**32 - 1

_SIGNAL_CODE = {Signal.TRACES: 0, Signal.LOGS: 1, Signal.METRICS: 2}
_CODE_SIGNAL = {v: k for k, v in _SIGNAL_CODE.items()}
_CRC = struct.Struct("<I")
_META_ENCODER = msgspec.msgpack.Encoder()
_META_DECODER = msgspec.msgpack.Decoder(dict[str, tuple[str, ...]])


# Whole segments are scanned through mmap at recovery, so nothing is copied that is not a record header.
Buffer = bytes | mmap.mmap


class CorruptRecord(ValueError):
    """A record whose checksum, framing or metadata is wrong."""


@dataclass(frozen=True, slots=True)
class Header:
    signal: Signal
    items: int
    meta_len: int
    body_len: int
    payload_crc: int

    @property
    def record_len(self) -> int:
        return HEADER_SIZE + self.meta_len + self.body_len


def encode(signal: Signal, items: int, metadata: Metadata, body: bytes) -> tuple[Header, list[bytes]]:
    """The record's header, and the record as parts for one ``os.writev`` (the body is not copied)."""
    meta = _META_ENCODER.encode(dict(metadata)) if metadata else b""
    if len(body) > MAX_PART or len(meta) > MAX_PART or items > MAX_PART:
        raise ValueError("a queue record is limited to 4 GiB and 2**32 items")
    crc = zlib.crc32(body, zlib.crc32(meta))
    head = HEADER.pack(MAGIC, VERSION, _SIGNAL_CODE[signal], 0, items, len(meta), len(body), crc)
    head += _CRC.pack(zlib.crc32(head))
    header = Header(signal, items, len(meta), len(body), crc)
    return header, ([head, meta, body] if meta else [head, body])


def decode_header(data: Buffer, offset: int = 0) -> Header | None:
    """The header at ``offset`` if its magic, version, signal and CRC are right; None otherwise."""
    if len(data) - offset < HEADER_SIZE:
        return None
    fixed = bytes(data[offset : offset + HEADER.size])
    magic, version, code, _reserved, items, meta_len, body_len, payload_crc = HEADER.unpack(fixed)
    if magic != MAGIC or version != VERSION or code not in _CODE_SIGNAL:
        return None
    (header_crc,) = _CRC.unpack_from(data, offset + HEADER.size)
    if zlib.crc32(fixed) != header_crc:
        return None
    return Header(_CODE_SIGNAL[code], items, meta_len, body_len, payload_crc)


def decode_payload(header: Header, meta: bytes, body: bytes) -> Metadata:
    """Check the payload read after ``header`` and decode its metadata; raises CorruptRecord."""
    if len(meta) != header.meta_len or len(body) != header.body_len:
        raise CorruptRecord("the record is shorter than its header says")
    if zlib.crc32(body, zlib.crc32(meta)) != header.payload_crc:
        raise CorruptRecord("payload checksum mismatch")
    if not meta:
        return EMPTY_METADATA
    try:
        return _META_DECODER.decode(meta)
    except msgspec.DecodeError as exc:
        raise CorruptRecord(f"unreadable metadata: {exc}") from None


@dataclass(frozen=True, slots=True)
class Found:
    """One record found by ``scan``: where it is and what its header says."""

    offset: int
    header: Header


@dataclass(frozen=True, slots=True)
class Skipped:
    """Bytes that hold no valid record: ``torn`` when they are an incomplete last record."""

    offset: int
    length: int
    torn: bool


def scan(data: Buffer) -> Iterator[Found | Skipped]:
    """Walk a whole segment's bytes: every record with a valid header, and every stretch that is not one."""
    offset, size = 0, len(data)
    while offset < size:
        header = decode_header(data, offset)
        if header is not None and offset + header.record_len <= size:
            yield Found(offset, header)
            offset += header.record_len
            continue
        if header is not None or size - offset < HEADER_SIZE:
            # A valid header running past the end, or a few bytes too short for one: an interrupted write.
            resync = _resync(data, offset + 1)
            if resync == size:
                yield Skipped(offset, size - offset, torn=True)
                return
        else:
            resync = _resync(data, offset + 1)
        yield Skipped(offset, resync - offset, torn=False)
        offset = resync


def _resync(data: Buffer, start: int) -> int:
    """The offset of the next valid header at or after ``start``, or the end of ``data``."""
    pos = start
    while True:
        pos = data.find(MAGIC, pos)
        if pos < 0:
            return len(data)
        if decode_header(data, pos) is not None:
            return pos
        pos += 1


def encode_ack(offset: int) -> bytes:
    return ACK.pack(offset, zlib.crc32(_CRC.pack(offset)))


def decode_acks(data: bytes) -> set[int]:
    """Offsets acknowledged in an ack file; torn or garbled entries are ignored."""
    done: set[int] = set()
    for i in range(0, len(data) - len(data) % ACK.size, ACK.size):
        offset, crc = ACK.unpack_from(data, i)
        if zlib.crc32(_CRC.pack(offset)) == crc:
            done.add(offset)
    return done
