"""The masked request is built by splicing new field bytes into the old ones (splice.py): it must be exactly what
the protobuf API would serialize after masking every string value one by one, whatever the lengths do to the
varints of the messages around them."""

from __future__ import annotations

import random

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.model import Signal
from pipeline.protowire import encode_varint as varint
from processors.pii.corpus import NEAR_MISSES, POSITIVES
from processors.pii.engine import Engine
from processors.pii.splice import splice
from tests.processors.pii.helpers import engine

PIECES = [s.text for s in POSITIVES] + [m.text for m in NEAR_MISSES] + ["order 42 done", "GET /api", ""]


def _text(rng: random.Random) -> str:
    # Lengths around 127 and 16383 make masking move the varints of the value, the attribute and the span.
    pad = rng.choice([0, 0, 100, 120, 125, 16370, 16378])
    parts = [rng.choice(PIECES) for _ in range(rng.randint(1, 3))]
    return "x" * pad + " " + " ".join(parts) if pad else " ".join(parts)


def _expected(eng: Engine, message: Message) -> None:
    """Mask ``message`` in place through the protobuf API, value by value (the oracle)."""
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            if field.type == field.TYPE_STRING and field.name in ("name", "message"):
                masked = eng.mask_text(value, removable=False)
                assert masked is not None
                setattr(message, field.name, masked)
            continue
        if field.message_type.name == "KeyValue":
            kept = []
            for kv in value:
                if kv.value.WhichOneof("value") == "string_value":
                    masked = eng.mask_text(kv.value.string_value)
                    if masked is None:
                        continue
                    kv.value.string_value = masked
                kept.append(kv)
            copies = [KeyValue.FromString(kv.SerializeToString()) for kv in kept]
            del value[:]
            value.extend(copies)
        elif field.message_type.name == "AnyValue":  # a log body
            if value.WhichOneof("value") == "string_value":
                masked = eng.mask_text(value.string_value, removable=False)
                assert masked is not None
                value.string_value = masked
        else:
            for item in value if field.is_repeated else [value]:
                _expected(eng, item)


def _kv(key: str, text: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=text))


def _traces(rng: random.Random) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for r in range(2):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend([_kv("service.name", f"svc{r}"), _kv("host.note", _text(rng))])
        for _ in range(2):
            ss = rs.scope_spans.add()
            ss.scope.name = "lib"
            ss.scope.attributes.append(_kv("scope.note", _text(rng)))
            for i in range(rng.randint(1, 6)):
                span = ss.spans.add(name=_text(rng), trace_id=rng.randbytes(16), span_id=rng.randbytes(8))
                span.attributes.extend([_kv(f"k{j}", _text(rng)) for j in range(rng.randint(0, 4))])
                span.attributes.add(key="n").value.int_value = i
                event = span.events.add(name=_text(rng))
                event.attributes.append(_kv("e", _text(rng)))
                span.links.add(trace_id=rng.randbytes(16)).attributes.append(_kv("l", _text(rng)))
                span.status.message = _text(rng)
    return req


def _logs(rng: random.Random) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    sl = req.resource_logs.add().scope_logs.add()
    for _ in range(rng.randint(1, 8)):
        record = sl.log_records.add()
        record.body.string_value = _text(rng)
        record.attributes.append(_kv("user", _text(rng)))
    return req


def _metrics(rng: random.Random) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    metric = req.resource_metrics.add().scope_metrics.add().metrics.add(name="requests")
    for _ in range(rng.randint(1, 5)):
        point = metric.sum.data_points.add(as_int=1)
        point.attributes.append(_kv("client", _text(rng)))
        point.exemplars.add(as_int=1).filtered_attributes.append(_kv("who", _text(rng)))
    return req


def test_spliced_bytes_equal_the_protobuf_api_result() -> None:
    rng = random.Random(11)
    eng = engine(actions={"phone": "drop", "email": "mask_partial"})
    changed = 0
    for k in range(60):
        signal, build = [(Signal.TRACES, _traces), (Signal.LOGS, _logs), (Signal.METRICS, _metrics)][k % 3]
        original = build(rng)
        raw = original.SerializeToString()
        expected = type(original).FromString(raw)
        _expected(eng, expected)
        out = eng.process(signal, raw)
        if out.raw is None:
            assert expected.SerializeToString() == raw
            continue
        changed += 1
        assert out.raw == expected.SerializeToString()
    assert changed > 40


def test_unusual_layouts_go_through_the_protobuf_api() -> None:
    """A KeyValue with a field this protobuf does not know, and a log body whose string comes after an unknown
    field, keep those fields; a non-minimal length is read correctly."""
    eng = engine()
    secret = "mail ann@example.com now"
    kv = _kv("k", secret).SerializeToString() + b"\x18\x07"  # unknown field 3 (varint 7)
    body = b"\x20\x01" + AnyValue(string_value=secret).SerializeToString()  # unknown field 4 first
    record = b"\x32" + varint(len(kv)) + kv + b"\x2a" + varint(len(body)) + body  # attributes (6), body (5)
    scope_logs = b"\x12" + varint(len(record)) + record
    resource_logs = b"\x12" + varint(len(scope_logs)) + scope_logs
    raw = b"\x0a" + varint(len(resource_logs)) + resource_logs
    out = eng.process(Signal.LOGS, raw)
    assert out.raw is not None
    parsed = ExportLogsServiceRequest.FromString(out.raw)
    masked = parsed.resource_logs[0].scope_logs[0].log_records[0]
    assert masked.attributes[0].value.string_value == "mail [REDACTED:email] now"
    assert masked.body.string_value == "mail [REDACTED:email] now"
    assert b"\x18\x07" in out.raw
    assert b"\x20\x01" in out.raw


def test_splice_rewrites_every_length_around_an_edit() -> None:
    # outer(inner("ab" + "cd")): replace "cd" (inside inner) with 200 bytes; both lengths change, the inner
    # one from one varint byte to two.
    inner = b"ab" + b"cd"
    outer_content = b"\x0a" + varint(len(inner)) + inner
    buf = b"\x0a" + varint(len(outer_content)) + outer_content
    frames = [(1, 2, 2 + len(outer_content), -1), (3, 4, 4 + len(inner), 0)]
    new = b"z" * 200
    out = splice(buf, frames, [(6, 8, new, 1)])
    inner2 = b"ab" + new
    outer2 = b"\x0a" + varint(len(inner2)) + inner2
    assert out == b"\x0a" + varint(len(outer2)) + outer2
    assert splice(buf, frames, []) == buf
    assert varint(300) == b"\xac\x02"


def test_a_flagged_nested_value_with_nothing_to_mask_leaves_the_request_unchanged() -> None:
    """A bad-Luhn number inside a map is a bulk hit that confirms nothing: no edit, the batch stays as it was."""
    eng = engine()
    req = ExportLogsServiceRequest()
    record = req.resource_logs.add().scope_logs.add().log_records.add()
    record.body.kvlist_value.values.add(key="card").value.string_value = "4111 1111 1111 1112"
    record.attributes.add(key="nested").value.array_value.values.add().string_value = "4111 1111 1111 1112"
    raw = req.SerializeToString()
    assert eng.scanner.bulk.hits(raw)[0]  # the bulk pass did flag it
    out = eng.process(Signal.LOGS, raw)
    assert out.raw is None
    assert not out.changed
