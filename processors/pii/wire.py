"""Map bulk-pass hits (byte ranges in a serialized export request) back to the values that hold them.

The walk reads the protobuf wire format of the request just deep enough: it skips every field that no hit
touches (one tag and one length per span, no Python object per span) and descends only into the fields that a
hit overlaps, down to the attribute (KeyValue), string field or log body that holds it. What it returns are
*targets* (a field's byte range and the message holding it) and *frames* (every message entered: where its
length sits, so splice.py can rewrite it). Schemas come from the message descriptors, so field numbers cannot
drift from the generated code.

Every string a backend stores is covered: resource, scope, span, event and link attributes, span names,
status messages, event names, log bodies and attributes, metric data point and exemplar attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf.descriptor import Descriptor
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Exemplar,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from pipeline.model import Signal
from pipeline.protowire import WireError, decode_varint

# What a schema field holds.
MSG = 0  # a message to descend into
KVS = 1  # a repeated KeyValue (attributes): each occurrence is a target
STR = 2  # a string to scan (span name, status message, event name)
ANY = 3  # an AnyValue (log body)

# (kind, frame of the message holding the field, where the field's tag starts, start and end of the field's
# content, first and last+1 index of the hits overlapping it). Without hits (first == last), a target is only
# there for its key (``every`` mode).
Target = tuple[int, int, int, int, int, int, int]
# A length-delimited message the walk entered: (where its length varint starts, where its content starts,
# where it ends, the frame holding it or -1 for the request itself). Frames are numbered in the order they are
# entered, so a frame's number is always above its parent's: splice.py fixes lengths from the last one back.
Frame = tuple[int, int, int, int]


# What the walk does with a field, by its wire type: read a length-delimited field (descend or report it when it is
# listed in the schema and a hit overlaps it, else skip it), or skip a scalar of each wire type.
_LEN, _SKIP_VARINT, _SKIP_FIXED64, _SKIP_FIXED32, _BAD = range(5)
_BY_WIRE_TYPE = {2: _LEN, 0: _SKIP_VARINT, 1: _SKIP_FIXED64, 5: _SKIP_FIXED32}
# Past every hit: the position of "the next hit" once there is none.
_NO_HIT = 1 << 62


class Node:
    """The fields of one message type that the walk cares about."""

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[int, tuple[int, Node | None]]) -> None:
        # field number -> (kind, child node for MSG)
        self.fields = dict(fields)


def action(tag: int) -> int:
    return _BY_WIRE_TYPE.get(tag & 7, _BAD)


# The action for each one-byte tag (field numbers up to 15, which covers every OTLP field the walk meets), so the
# hot loop decodes nothing but the length.
_ACTIONS = tuple(action(tag) for tag in range(0x80))


def _node(descriptor: Descriptor, spec: Mapping[str, int | Node]) -> Node:
    fields: dict[int, tuple[int, Node | None]] = {}
    for name, what in spec.items():
        f = descriptor.fields_by_name[name]
        if f.type != f.TYPE_MESSAGE and f.type != f.TYPE_STRING:
            raise TypeError(f"{descriptor.name}.{name} is not length-delimited")
        fields[f.number] = (MSG, what) if isinstance(what, Node) else (what, None)
    return Node(fields)


_RESOURCE = _node(Resource.DESCRIPTOR, {"attributes": KVS})
_SCOPE = _node(InstrumentationScope.DESCRIPTOR, {"attributes": KVS})
_EVENT = _node(Span.Event.DESCRIPTOR, {"name": STR, "attributes": KVS})
_LINK = _node(Span.Link.DESCRIPTOR, {"attributes": KVS})
_STATUS = _node(Status.DESCRIPTOR, {"message": STR})
_SPAN = _node(Span.DESCRIPTOR, {"name": STR, "attributes": KVS, "events": _EVENT, "links": _LINK, "status": _STATUS})
_TRACES = _node(
    ExportTraceServiceRequest.DESCRIPTOR,
    {
        "resource_spans": _node(
            ResourceSpans.DESCRIPTOR,
            {"resource": _RESOURCE, "scope_spans": _node(ScopeSpans.DESCRIPTOR, {"scope": _SCOPE, "spans": _SPAN})},
        )
    },
)
_LOGS = _node(
    ExportLogsServiceRequest.DESCRIPTOR,
    {
        "resource_logs": _node(
            ResourceLogs.DESCRIPTOR,
            {
                "resource": _RESOURCE,
                "scope_logs": _node(
                    ScopeLogs.DESCRIPTOR,
                    {"scope": _SCOPE, "log_records": _node(LogRecord.DESCRIPTOR, {"body": ANY, "attributes": KVS})},
                ),
            },
        )
    },
)
_EXEMPLAR = _node(Exemplar.DESCRIPTOR, {"filtered_attributes": KVS})
_NUMBER_DP = _node(NumberDataPoint.DESCRIPTOR, {"attributes": KVS, "exemplars": _EXEMPLAR})
_METRIC = _node(
    Metric.DESCRIPTOR,
    {
        "gauge": _node(Gauge.DESCRIPTOR, {"data_points": _NUMBER_DP}),
        "sum": _node(Sum.DESCRIPTOR, {"data_points": _NUMBER_DP}),
        "histogram": _node(
            Histogram.DESCRIPTOR,
            {"data_points": _node(HistogramDataPoint.DESCRIPTOR, {"attributes": KVS, "exemplars": _EXEMPLAR})},
        ),
        "exponential_histogram": _node(
            ExponentialHistogram.DESCRIPTOR,
            {
                "data_points": _node(
                    ExponentialHistogramDataPoint.DESCRIPTOR, {"attributes": KVS, "exemplars": _EXEMPLAR}
                )
            },
        ),
        "summary": _node(Summary.DESCRIPTOR, {"data_points": _node(SummaryDataPoint.DESCRIPTOR, {"attributes": KVS})}),
        "metadata": KVS,
    },
)
_METRICS = _node(
    ExportMetricsServiceRequest.DESCRIPTOR,
    {
        "resource_metrics": _node(
            ResourceMetrics.DESCRIPTOR,
            {
                "resource": _RESOURCE,
                "scope_metrics": _node(ScopeMetrics.DESCRIPTOR, {"scope": _SCOPE, "metrics": _METRIC}),
            },
        )
    },
)

SCHEMAS: Mapping[Signal, Node] = {Signal.TRACES: _TRACES, Signal.LOGS: _LOGS, Signal.METRICS: _METRICS}


def locate(
    signal: Signal, buf: bytes, starts: Sequence[int], ends: Sequence[int], every: bool = False
) -> tuple[list[Target], list[Frame]]:
    """Targets whose bytes overlap a hit [starts[k], ends[k]) (sorted, non-overlapping), in byte order; with
    ``every``, also every attribute that no hit touches (for key rules that no literal can prefilter). And the
    frames of the messages entered on the way, which the targets refer to."""
    try:
        return _walk(buf, SCHEMAS[signal], starts, ends, every)
    except IndexError:
        raise WireError("truncated message") from None


def _walk(
    buf: bytes, node: Node, starts: Sequence[int], ends: Sequence[int], every: bool
) -> tuple[list[Target], list[Frame]]:
    """The walk, one loop with a stack of the messages entered (no Python call per span). Fields are visited in
    byte order, so ``h``, the first hit that may still overlap what comes next, only moves forward."""
    out: list[Target] = []
    frames: list[Frame] = []
    stack: list[tuple[int, Node, int]] = []  # (end, node, frame) of each enclosing message
    n = len(starts)
    actions, fields = _ACTIONS, node.fields
    hi = len(buf)
    frame = -1
    h = 0
    # Where the next hit starts: a field ending at or before it holds nothing to find, whatever it is (most
    # fields of a span: ids, times, attributes before the one hit). In ``every`` mode, every listed field.
    nxt = -1 if every else (starts[0] if n else _NO_HIT)
    i = 0
    while True:
        if i >= hi or nxt >= hi:  # the message ends, or the next hit starts after it
            if i > hi:
                raise WireError("field runs past its message")
            if not stack:
                return out, frames
            i = hi
            hi, node, frame = stack.pop()
            fields = node.fields
            if not every:
                # Hits that end inside the message left cannot reach the next field.
                while h < n and ends[h] <= i:
                    h += 1
                nxt = starts[h] if h < n else _NO_HIT
            continue
        field_start = i
        tag = buf[i]
        if tag < 0x80:
            i += 1
            act = actions[tag]
        else:
            tag, i = decode_varint(buf, i)
            act = action(tag)
        if act:
            if act == _SKIP_FIXED64:
                i += 8
            elif act == _SKIP_VARINT:
                while buf[i] >= 0x80:
                    i += 1
                i += 1
            elif act == _SKIP_FIXED32:
                i += 4
            else:
                raise WireError(f"unsupported wire type {tag & 7}")
            continue
        length_at = i
        length = buf[i]
        if length < 0x80:
            i += 1
        elif buf[i + 1] < 0x80:  # two bytes: every span of a typical request
            length = (length & 0x7F) | (buf[i + 1] << 7)
            i += 2
        else:
            length, i = decode_varint(buf, i)
        start = i
        i += length
        if i <= nxt:
            continue
        spec = fields.get(tag >> 3)
        if spec is None:
            continue
        kind, child = spec
        while h < n and ends[h] <= start:
            h += 1
        if (h >= n or starts[h] >= i) and (not every or (kind != MSG and kind != KVS)):
            if not every:
                nxt = starts[h] if h < n else _NO_HIT
            continue  # no hit inside this field
        if i > hi:
            raise WireError("field runs past its message")
        if kind == MSG:
            assert child is not None
            frames.append((length_at, start, i, frame))
            stack.append((hi, node, frame))
            hi, node, frame = i, child, len(frames) - 1
            fields = node.fields
            i = start
            continue
        last = h
        while last < n and starts[last] < i:
            last += 1
        out.append((kind, frame, field_start, start, i, h, last))
        if not every:
            while h < n and ends[h] <= i:
                h += 1
            nxt = starts[h] if h < n else _NO_HIT


def key_value(buf: bytes, start: int, end: int) -> tuple[int, int, int, int]:
    """A KeyValue's key range and its AnyValue's range ((-1, -1) when the value is absent)."""
    ks = ke = vs = ve = -1
    i = start
    while i < end:
        tag, i = decode_varint(buf, i)
        wire_type = tag & 7
        if wire_type != 2:
            i = _skip(buf, i, wire_type)
            continue
        length, i = decode_varint(buf, i)
        number = tag >> 3
        if number == 1:
            ks, ke = i, i + length
        elif number == 2:
            vs, ve = i, i + length
        i += length
    if ks < 0:
        ks = ke = start  # an empty key is not written on the wire
    return ks, ke, vs, ve


def key_and_value(buf: bytes, start: int, end: int) -> tuple[int, int, int, int, int, bool]:
    """A KeyValue's key range, then its value's kind and content range (see ``any_value``), and whether the
    KeyValue is *plain*: its key, then a value holding one string and nothing else (the layout every encoder
    writes; a masked plain attribute is rebuilt from its key and new text). Plain layouts with lengths below
    16 KiB are read inline; anything else goes the long way."""
    if buf[start] == 0x0A and buf[start + 1] < 0x80:
        ks = start + 2
        ke = ks + buf[start + 1]
        if ke + 3 < end and buf[ke] == 0x12:
            n = buf[ke + 1]
            vs = ke + 2
            if n >= 0x80:
                if buf[vs] >= 0x80:
                    return _key_and_value(buf, start, end)
                n = (n & 0x7F) | (buf[vs] << 7)
                vs += 1
            if vs + n == end and buf[vs] == 0x0A:
                n = buf[vs + 1]
                s = vs + 2
                if n >= 0x80:
                    if buf[s] >= 0x80:
                        return _key_and_value(buf, start, end)
                    n = (n & 0x7F) | (buf[s] << 7)
                    s += 1
                if s + n == end:
                    return ks, ke, ANY_STRING, s, end, True
    return _key_and_value(buf, start, end)


def _key_and_value(buf: bytes, start: int, end: int) -> tuple[int, int, int, int, int, bool]:
    ks, ke, vs, ve = key_value(buf, start, end)
    if vs < 0:
        return ks, ke, ANY_EMPTY, vs, vs, False
    kind, s, e = any_value(buf, vs, ve)
    return ks, ke, kind, s, e, False


# AnyValue kinds as the walk reports them.
ANY_EMPTY = 0
ANY_STRING = 1
ANY_NESTED = 2  # array_value or kvlist_value: handled through the protobuf API
ANY_OTHER = 3  # bool, int, double, bytes


def any_value(buf: bytes, start: int, end: int) -> tuple[int, int, int]:
    """(kind, start, end) of an AnyValue's content; for a string, the string's bytes."""
    kind, s, e = ANY_EMPTY, start, start
    i = start
    while i < end:
        tag, i = decode_varint(buf, i)
        wire_type = tag & 7
        number = tag >> 3
        if wire_type != 2:
            i = _skip(buf, i, wire_type)
            kind, s, e = ANY_OTHER, start, start
            continue
        length, i = decode_varint(buf, i)
        if number == 1:
            kind, s, e = ANY_STRING, i, i + length
        elif number in (5, 6):
            kind, s, e = ANY_NESTED, i, i + length
        else:
            kind, s, e = ANY_OTHER, i, i + length
        i += length
    return kind, s, e


def _skip(buf: bytes, i: int, wire_type: int) -> int:
    if wire_type == 0:
        return decode_varint(buf, i)[1]
    if wire_type == 1:
        return i + 8
    if wire_type == 5:
        return i + 4
    raise WireError(f"unsupported wire type {wire_type}")
