"""Pure decoding and checks of what the backends receive: Loki push (protobuf + snappy block, or JSON) and
Prometheus remote-write 1.0, following PROTOCOLS.md 6.2 and 6.3. No I/O: the sink servers call these and turn
``Rejected`` into the status code the real backend would answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import cramjam
import msgspec

from bench.wire import WIRE_LEN, WireError, as_double, fields, signed64

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LOKI_LABELS = re.compile(r'^\{\s*[a-zA-Z_:][a-zA-Z0-9_:]*\s*=\s*".*"\s*\}$', re.DOTALL)


class Rejected(Exception):
    """The request is refused; ``status`` is the HTTP code the real backend answers with."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass(slots=True)
class LokiPush:
    entries: int = 0
    streams: int = 0
    # trace_id structured-metadata values (hex), one per entry that carries one.
    trace_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RemoteWrite:
    series: int = 0
    samples: int = 0
    # Per series (its sorted label text): the newest sample timestamp in this request, for order checks.
    newest: dict[str, int] = field(default_factory=dict)


def snappy_block(body: bytes) -> bytes:
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:  # cramjam raises its own DecompressionError; any failure is a bad body
        raise Rejected(400, f"body is not snappy block format: {exc}") from exc


def loki_protobuf(body: bytes) -> LokiPush:
    """``PushRequest{streams=1: StreamAdapter{labels=1, entries=2: EntryAdapter{timestamp=1, line=2,
    structuredMetadata=3: {name=1, value=2}}}}`` in a snappy block."""
    raw = snappy_block(body)
    out = LokiPush()
    try:
        for number, wire, stream in fields(raw):
            if number != 1 or wire != WIRE_LEN:
                continue
            assert isinstance(stream, bytes)
            out.streams += 1
            labels = ""
            for n2, w2, value in fields(stream):
                if n2 == 1 and w2 == WIRE_LEN:
                    assert isinstance(value, bytes)
                    labels = value.decode("utf-8", "replace")
                elif n2 == 2 and w2 == WIRE_LEN:
                    assert isinstance(value, bytes)
                    out.entries += 1
                    _loki_entry(value, out)
            if not _LOKI_LABELS.match(labels):
                raise Rejected(400, f'stream labels {labels!r} are not of the form {{name="value", ...}}')
    except WireError as exc:
        raise Rejected(400, f"PushRequest does not decode: {exc}") from exc
    return out


def _loki_entry(entry: bytes, out: LokiPush) -> None:
    has_timestamp = False
    for number, wire, value in fields(entry):
        if number == 1 and wire == WIRE_LEN:
            has_timestamp = True
        elif number == 3 and wire == WIRE_LEN:
            assert isinstance(value, bytes)
            name = text = ""
            for n2, _w2, v2 in fields(value):
                if n2 == 1 and isinstance(v2, bytes):
                    name = v2.decode("utf-8", "replace")
                elif n2 == 2 and isinstance(v2, bytes):
                    text = v2.decode("utf-8", "replace")
            if name == "trace_id" and text:
                out.trace_ids.append(text)
    if not has_timestamp:
        raise Rejected(400, "entry without timestamp")


class _JsonStream(msgspec.Struct):
    stream: dict[str, str]
    # ["<ns>", "line"] or ["<ns>", "line", {structured metadata}]; checked entry by entry below.
    values: list[list[str | dict[str, str]]]


class _JsonPush(msgspec.Struct):
    streams: list[_JsonStream]


_json_push = msgspec.json.Decoder(_JsonPush)


def loki_json(body: bytes) -> LokiPush:
    """``{"streams": [{"stream": {...}, "values": [["<ns>", "line", {metadata}], ...]}]}``, timestamps as strings."""
    try:
        push = _json_push.decode(body)
    except msgspec.DecodeError as exc:
        raise Rejected(400, f"JSON push body: {exc}") from exc
    out = LokiPush()
    for stream in push.streams:
        if not stream.stream:
            raise Rejected(400, "stream without labels")
        out.streams += 1
        for value in stream.values:
            if len(value) not in (2, 3) or not isinstance(value[0], str) or not isinstance(value[1], str):
                raise Rejected(400, 'each value must be ["<ns>", "line"] or ["<ns>", "line", {metadata}]')
            if not value[0].isdigit():
                raise Rejected(400, f"timestamp {value[0]!r} is not a nanosecond string")
            out.entries += 1
            if len(value) == 3:
                metadata = value[2]
                if not isinstance(metadata, dict):
                    raise Rejected(400, "structured metadata must be an object of strings")
                trace_id = metadata.get("trace_id")
                if trace_id:
                    out.trace_ids.append(trace_id)
    return out


def remote_write(body: bytes, headers: dict[str, str]) -> RemoteWrite:
    """A remote-write 1.0 request: exact headers, snappy block ``WriteRequest``, sorted unique labels."""
    if headers.get("content-encoding") != "snappy":
        raise Rejected(400, "Content-Encoding must be snappy")
    if headers.get("content-type", "").split(";")[0].strip() != "application/x-protobuf":
        raise Rejected(415, "Content-Type must be application/x-protobuf")
    version = headers.get("x-prometheus-remote-write-version", "")
    if version and not version.startswith("0.1."):
        raise Rejected(415, f"remote-write version {version!r} is not 1.0 (0.1.0)")
    raw = snappy_block(body)
    out = RemoteWrite()
    try:
        for number, wire, series in fields(raw):
            if number != 1 or wire != WIRE_LEN:
                continue
            assert isinstance(series, bytes)
            _series(series, out)
    except WireError as exc:
        raise Rejected(400, f"WriteRequest does not decode: {exc}") from exc
    return out


def _series(series: bytes, out: RemoteWrite) -> None:
    labels: list[tuple[str, str]] = []
    timestamps: list[int] = []
    for number, _wire, value in fields(series):
        if number == 1 and isinstance(value, bytes):
            name = text = ""
            for n2, _w2, v2 in fields(value):
                if n2 == 1 and isinstance(v2, bytes):
                    name = v2.decode("utf-8", "replace")
                elif n2 == 2 and isinstance(v2, bytes):
                    text = v2.decode("utf-8", "replace")
            labels.append((name, text))
        elif number == 2 and isinstance(value, bytes):
            ts = 0
            for n2, _w2, v2 in fields(value):
                if n2 == 1 and isinstance(v2, int):
                    as_double(v2)  # decodes, so a truncated double is caught by the wire reader
                elif n2 == 2 and isinstance(v2, int):
                    ts = signed64(v2)
            timestamps.append(ts)
    names = [name for name, _ in labels]
    if names != sorted(names) or len(set(names)) != len(names):
        raise Rejected(400, f"labels not sorted and unique: {names}")
    metric = dict(labels).get("__name__", "")
    if not _METRIC_NAME.match(metric):
        raise Rejected(400, f"series without a valid __name__ (got {metric!r})")
    for name, text in labels:
        if name != "__name__" and not _LABEL_NAME.match(name):
            raise Rejected(400, f"invalid label name {name!r}")
        if not text:
            raise Rejected(400, f"empty value for label {name!r}")
    if timestamps != sorted(timestamps):
        raise Rejected(400, f"out of order sample in series {metric}")
    key = ",".join(f"{n}={v}" for n, v in labels)
    out.series += 1
    out.samples += len(timestamps)
    if timestamps:
        out.newest[key] = max(out.newest.get(key, timestamps[-1]), timestamps[-1])
