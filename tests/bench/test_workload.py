"""The generated load looks like what the issue asks for, and stamps round-trip on every transport."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.stamp import encode, stamp_of
from bench.workload import PII_VALUES, Shape, build_units
from pipeline import otlpjson
from pipeline.model import Signal


def _spans(req: ExportTraceServiceRequest) -> list:  # type: ignore[type-arg]
    return [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_traces_are_trees_of_the_configured_sizes() -> None:
    units = build_units(Shape(spans_per_request=2000, trace_size_min=5, trace_size_max=50), 3, seed=3)
    for unit in units:
        assert unit.traces is not None
        spans = _spans(unit.traces)
        assert len(spans) == unit.span_count == 2000
        by_trace: dict[bytes, list] = {}  # type: ignore[type-arg]
        for span in spans:
            by_trace.setdefault(bytes(span.trace_id), []).append(span)
        for trace in by_trace.values():
            roots = [s for s in trace if not s.parent_span_id]
            assert len(roots) == 1
            ids = {bytes(s.span_id) for s in trace}
            assert all(bytes(s.parent_span_id) in ids for s in trace if s.parent_span_id)
        # The last trace of a unit may be cut short to fill the request exactly.
        sizes = sorted(len(t) for t in by_trace.values())
        assert all(5 <= n <= 50 for n in sizes[1:])
        assert len({rs.resource.attributes[0].value.string_value for rs in unit.traces.resource_spans}) >= 3


def test_error_slow_and_pii_ratios() -> None:
    shape = Shape(spans_per_request=1000, error_ratio=0.3, slow_ratio=0.3, pii_ratio=0.3, logs_per_trace=0)
    units = build_units(shape, 6, seed=5)
    infos = [i for u in units for i in u.infos]
    errors = sum(i.error for i in infos) / len(infos)
    slow = sum(i.slow for i in infos) / len(infos)
    assert 0.15 < errors < 0.45
    assert 0.15 < slow < 0.45
    blob = b"".join(u.traces.SerializeToString() for u in units if u.traces is not None)
    assert any(v.encode() in blob for v in PII_VALUES)
    clean = build_units(Shape(spans_per_request=500, pii_ratio=0.0), 2, seed=5)
    clean_blob = b"".join(u.traces.SerializeToString() + u.logs.SerializeToString() for u in clean)  # type: ignore[union-attr]
    assert not any(v.encode() in clean_blob for v in PII_VALUES)
    for unit in units:
        assert unit.traces is not None
        for span in _spans(unit.traces):
            if not span.parent_span_id:
                info = next(i for i in unit.infos if i.suffix == bytes(span.trace_id[8:]))
                duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
                assert (duration_ms > shape.slow_threshold_ms) == info.slow


def test_logs_follow_the_traces_of_their_unit() -> None:
    unit = build_units(Shape(spans_per_request=500, logs_per_trace=2.0, orphan_log_ratio=0.1), 1, seed=9)[0]
    assert unit.logs is not None
    records = [r for rl in unit.logs.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    assert len(records) == unit.log_count
    suffixes = {i.suffix for i in unit.infos}
    with_ids = [r for r in records if r.trace_id]
    assert all(bytes(r.trace_id[8:]) in suffixes for r in with_ids)
    assert len(records) - len(with_ids) == unit.orphan_logs > 0


def test_different_seeds_never_share_a_trace() -> None:
    a = {i.suffix for u in build_units(Shape(spans_per_request=300), 4, seed=1) for i in u.infos}
    b = {i.suffix for u in build_units(Shape(spans_per_request=300), 4, seed=2) for i in u.infos}
    assert not a & b


@pytest.mark.parametrize("transport", ["grpc", "http", "http_json"])
def test_stamps_round_trip(transport: str) -> None:
    unit = build_units(Shape(spans_per_request=200, logs_per_trace=1.0), 1, seed=11)[0]
    traces, logs = encode(unit, transport)
    assert traces is not None
    assert logs is not None
    stamp = 1_800_000_000_123_456_789
    for enc, signal in ((traces, Signal.TRACES), (logs, Signal.LOGS)):
        body = enc.stamped(stamp)
        if transport == "http_json":
            message = otlpjson.decode(signal, body)
        else:
            message = signal.request_type()
            message.ParseFromString(body)
        if isinstance(message, ExportTraceServiceRequest):
            ids = [bytes(s.trace_id) for s in _spans(message)]
        else:
            assert isinstance(message, ExportLogsServiceRequest)
            ids = [bytes(r.trace_id) for rl in message.resource_logs for sl in rl.scope_logs for r in sl.log_records]
            ids = [i for i in ids if i]
        assert ids
        assert {stamp_of(i) for i in ids} == {stamp}
        assert {i[8:] for i in ids} <= {info.suffix for info in unit.infos}
        # The template itself is untouched: the next send gets its own stamp.
        assert enc.stamped(stamp + 1) != body


def test_logs_only_units_send_no_spans() -> None:
    unit = build_units(Shape(spans_per_request=100, logs_per_trace=5, traces=False, unsent_trace_log_ratio=1.0), 1, 1)[
        0
    ]
    traces, logs = encode(unit, "grpc")
    assert traces is None
    assert logs is not None
    assert unit.span_count == 0
    assert unit.log_count > 0
    assert not any(i.has_spans for i in unit.infos)
