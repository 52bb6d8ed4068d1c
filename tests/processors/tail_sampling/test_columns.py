"""Span fields read as columns in C: whenever ``read`` answers, it must agree with the protobuf API span by span;
when it cannot be sure it must answer None (the engine then reads the scope through the API)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.protowire import encode_varint as varint
from processors.tail_sampling.columns import read, scope_columns
from processors.tail_sampling.trace import ROOT
from processors.tail_sampling.wire import frame_items, split
from tests.processors.tail_sampling.builders import (
    Harness,
    config,
    request,
    span,
    tid,
)

ERRORS = {"name": "errors", "type": "status_code", "status_codes": ["ERROR", "OK"]}


def _truth(raw: bytes) -> list[tuple[list[bytes], list[int], list[int], list[int]]]:
    req = ExportTraceServiceRequest.FromString(raw)
    out = []
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            spans = list(ss.spans)
            flags = [
                (ROOT if not s.parent_span_id else 0) | (s.status.code if s.status.code in (1, 2) else 0) for s in spans
            ]
            out.append(
                (
                    [s.trace_id for s in spans],
                    [s.start_time_unix_nano for s in spans],
                    [s.end_time_unix_nano for s in spans],
                    flags,
                )
            )
    return out


def _check(raw: bytes) -> list[bool]:
    """For every scope: whether the fast path answered; asserts it answered right."""
    answered = []
    for (_, _, bodies), merged, truth in zip(split(raw), scope_columns(raw), _truth(raw), strict=True):
        cols = read(merged, bodies, True, True, True)
        answered.append(cols is not None)
        if cols is not None:
            tids, starts, ends, flags = truth
            assert cols.tids == tids
            assert cols.starts == starts
            assert cols.ends == ends
            assert (cols.flags or [0] * len(bodies)) == flags
    return answered


TRACES = [tid(), tid(), tid()]
span_strategy = st.builds(
    lambda root, status, state, flags, t: span(t, root=root, status=status, trace_state=state, flags=flags),
    st.booleans(),
    st.sampled_from([0, 0, 0, 1, 2]),
    st.sampled_from(["", "", "vendor=x", "a=" + "b" * 200]),  # a long tracestate: a two-byte length
    st.sampled_from([0, 0x301]),  # W3C flags written after the status
    st.sampled_from(TRACES),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(span_strategy, min_size=1, max_size=30))
def test_columns_agree_with_the_protobuf_api(spans: list[Span]) -> None:
    answered = _check(request(*spans).SerializeToString())
    assert answered == [True]  # spans as every SDK writes them: the fast path answers


def test_zero_timestamps_and_empty_trace_ids_take_the_slow_way() -> None:
    t = tid()
    zero = span(t)
    zero.start_time_unix_nano = 0
    assert _check(request(span(t), zero).SerializeToString()) == [False]
    empty = span(b"")
    assert _check(request(span(t), empty).SerializeToString()) == [False]


def _status_with_overlong_code() -> bytes:
    """A span whose status code 2 is written as a three-byte varint: valid protobuf no encoder produces."""
    s = span(tid())
    body = s.SerializeToString() + bytes((0x7A, 3, 0x18, 0x82, 0x00))  # field 15, len 3, code = 2 (overlong)
    assert Span.FromString(body).status.code == 2
    scope = request().resource_spans[0].scope_spans[0]
    scope_bytes = scope.SerializeToString() + bytes((0x12,)) + varint(len(body)) + body
    resource = request().resource_spans[0]
    resource.ClearField("scope_spans")
    entry = resource.SerializeToString() + bytes((0x12,)) + varint(len(scope_bytes)) + scope_bytes
    return bytes((0x0A,)) + varint(len(entry)) + entry


def test_an_error_the_byte_scan_cannot_see_takes_the_slow_way() -> None:
    assert _check(_status_with_overlong_code()) == [False]


def test_a_parent_written_out_of_order_takes_the_slow_way() -> None:
    s = span(tid())
    parent = s.parent_span_id
    s.parent_span_id = b""
    # parent_span_id (field 4) written after everything else: legal, unusual.
    body = s.SerializeToString() + bytes((0x22, 8)) + parent
    assert Span.FromString(body).parent_span_id == parent
    req = request(span(tid(), root=True))
    raw = req.SerializeToString()
    (resource, scope, bodies), *_ = split(raw)
    scope_entry = scope + frame_items([body, bodies[0]])
    entry = resource + bytes((0x12,)) + varint(len(scope_entry)) + scope_entry
    assert _check(bytes((0x0A,)) + varint(len(entry)) + entry) == [False]


def test_the_engine_decides_the_same_either_way() -> None:
    """A slow-path scope (zero start) next to a fast one: decisions as if every span were read by the API."""
    err, slow = tid(), tid()
    zero = span(slow, duration_ms=700)
    zero.start_time_unix_nano = 0
    zero.end_time_unix_nano = 0
    policies: list[dict[str, Any]] = [ERRORS, {"name": "slow", "type": "latency", "threshold_ms": 500}]
    h = Harness(config(policies, decision_wait_ms=1000))
    h.send(request(span(err, status=2), span(slow)))
    h.send(request(zero, span(slow, start_ms=0, duration_ms=600)))
    h.advance(1)
    assert h.kept_traces == {err, slow}


def test_columns_and_protobuf_api_decide_alike_on_benchmark_traffic() -> None:
    from bench.gen import trace_requests

    cfg = config(
        [ERRORS, {"name": "slow", "type": "latency", "threshold_ms": 79}],
        decision_wait_ms=1000,
        decision_wait_after_root_ms=500,
    )
    kept = []
    for columns in (True, False):
        h = Harness(cfg)
        h.engine = type(h.engine)(cfg, columns=columns)
        for raw in trace_requests(3, 1000, error_ratio=0.1):
            h.send(ExportTraceServiceRequest.FromString(raw))
        h.advance(2)
        kept.append((h.kept_spans, dict(h.engine.stats.decided)))
    assert kept[0] == kept[1]
    assert kept[0][1][("kept", "root")] > 0
