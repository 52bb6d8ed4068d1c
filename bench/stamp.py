"""Send-time stamps written into trace ids, so sinks measure end-to-end latency without a lookup.

Every trace id of a load unit is ``stamp (8 bytes, big-endian time_ns of the send) + suffix (8 random bytes fixed
when the unit was built)``. Re-sending a unit therefore sends new traces (the stamp differs), the W3C randomness
(the low 56 bits) stays random, and a sink reads the send time back from any span or log record it receives.
Stamping is one copy of the encoded request plus one 8-byte (protobuf) or 16-character (OTLP/JSON hex) slice
write per span or record: the id positions are found once, when the unit is encoded.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from bench.workload import Unit
from pipeline import otlpjson
from pipeline.model import Signal

TRANSPORTS = ("grpc", "http", "http_json")


@dataclass(frozen=True, slots=True)
class Encoded:
    """One request of a unit as it goes on the wire, with the positions of its trace ids' stamp bytes."""

    signal: Signal
    payload: bytes
    offsets: array  # type: ignore[type-arg]  # array('I') of stamp positions
    items: int
    json: bool

    def stamped(self, stamp_ns: int) -> bytes:
        buf = bytearray(self.payload)
        mark = f"{stamp_ns:016x}".encode() if self.json else stamp_ns.to_bytes(8, "big")
        width = len(mark)
        for off in self.offsets:
            buf[off : off + width] = mark
        return bytes(buf)


def stamp_of(trace_id: bytes) -> int:
    """The send time (ns since the epoch) a stamped trace id carries."""
    return int.from_bytes(trace_id[:8], "big")


def _offsets(payload: bytes, suffixes: list[bytes], json: bool, expected: int) -> array:  # type: ignore[type-arg]
    out = array("I")
    width = 16 if json else 8
    for suffix in suffixes:
        needle = suffix.hex().encode() if json else suffix
        pos = payload.find(needle)
        while pos != -1:
            if pos >= width:
                out.append(pos - width)
            pos = payload.find(needle, pos + 1)
    if len(out) != expected:
        # A suffix found elsewhere (or missed) would stamp the wrong bytes: refuse rather than send garbage.
        raise ValueError(f"found {len(out)} trace-id positions, expected {expected}")
    out = array("I", sorted(out))
    return out


def encode(unit: Unit, transport: str) -> tuple[Encoded | None, Encoded | None]:
    """The unit's traces and logs requests encoded for ``transport`` (grpc and http: protobuf; http_json)."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r} (known: {', '.join(TRANSPORTS)})")
    json = transport == "http_json"
    suffixes = [info.suffix for info in unit.infos]
    out: list[Encoded | None] = []
    for signal, message, items, ids in (
        (Signal.TRACES, unit.traces, unit.span_count, unit.span_count),
        (Signal.LOGS, unit.logs, unit.log_count, unit.log_count - unit.orphan_logs),
    ):
        if message is None or items == 0:
            out.append(None)
            continue
        payload = otlpjson.encode(signal, message) if json else message.SerializeToString()
        out.append(Encoded(signal, payload, _offsets(payload, suffixes, json, ids), items, json))
    return out[0], out[1]
