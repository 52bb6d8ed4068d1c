"""End to end through the real daemon: OTLP/gRPC receiver -> tail_sampling (one instance in a traces and a logs
pipeline) -> file exporter. Every span of every kept trace arrives, no span of a dropped trace does, and log
records follow their trace. Expectations are computed independently from the trace ids."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from pipeline.exporters.file import read_records
from pipeline.model import Signal
from tests.processors.tail_sampling.builders import log, logs_request, request, span
from tests.support.configs import file_pipelines
from tests.support.daemon import Daemon, wait_until

BODY = """
[processors.tail_sampling]
decision_wait_ms = 400
decision_wait_after_root_ms = 0

[[processors.tail_sampling.policies]]
name = "errors"
type = "status_code"
status_codes = ["ERROR"]

[[processors.tail_sampling.policies]]
name = "baseline"
type = "probabilistic"
sampling_percentage = 30

"""

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
# 30% of the 56-bit randomness space: kept when randomness >= 0.7 * 2^56 (rounded).
THRESHOLD = round(0.7 * (1 << 56))


def _spans_in(path: Path) -> dict[bytes, bytes]:
    """span id -> trace id of everything the file exporter wrote."""
    if not path.exists():
        return {}
    return {
        s.span_id: s.trace_id
        for signal, req in read_records(path)
        if signal is Signal.TRACES
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    }


def test_kept_traces_arrive_whole_and_dropped_ones_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ids = [os.urandom(16) for _ in range(120)]
    errors = set(ids[::7])
    # Each trace: 2 spans in a first request and 2 in a second one, so decisions need grouping across requests.
    first = [span(t, status=2 if t in errors else 0) for t in ids] + [span(t) for t in ids]
    second = [span(t, root=True) for t in ids] + [span(t) for t in ids]
    expected_traces = {t for t in ids if t in errors or int.from_bytes(t[9:], "big") >= THRESHOLD}
    all_spans = {s.span_id: s.trace_id for s in first + second}
    expected_spans = {sid for sid, t in all_spans.items() if t in expected_traces}

    with Daemon(tmp_path, BODY + file_pipelines(out, ["tail_sampling"])) as d:
        channel = grpc.insecure_channel(d.grpc_target)
        send_traces = channel.unary_unary(TRACES, request_serializer=None, response_deserializer=None)
        send_logs = channel.unary_unary(LOGS, request_serializer=None, response_deserializer=None)
        send_traces(request(*first[:120]).SerializeToString(), timeout=10)
        send_logs(logs_request(*(log(t, body=t.hex()) for t in ids)).SerializeToString(), timeout=10)
        send_traces(request(*first[120:], resource={"service.name": "other"}).SerializeToString(), timeout=10)
        send_traces(request(*second).SerializeToString(), timeout=10)
        channel.close()
        decided = "otelpipe_processor_tail_sampling_traces_decided_total"
        wait_until(lambda: d.metric(decided) == len(ids), what="every trace decided by the timer")
        wait_until(lambda: len(_spans_in(out / "traces.jsonl")) >= len(expected_spans), what="sampled spans")
        assert d.terminate() == 0

    written = _spans_in(out / "traces.jsonl")
    assert set(written) == expected_spans  # whole kept traces, and nothing of the dropped ones
    assert set(written.values()) == expected_traces
    assert 0 < len(expected_traces) < len(ids)
    logs = [
        rec.body.string_value
        for _, req in read_records(out / "logs.jsonl")
        for rl in req.resource_logs
        for sl in rl.scope_logs
        for rec in sl.log_records
    ]
    assert sorted(logs) == sorted(t.hex() for t in expected_traces)
