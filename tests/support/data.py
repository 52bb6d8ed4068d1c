"""Builders for OTLP requests used across tests."""

from __future__ import annotations

import os

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def traces_request(n_traces: int = 2, spans_per_trace: int = 3, service: str = "checkout") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "tests", "1.0"
    for _ in range(n_traces):
        tid = os.urandom(16)
        for i in range(spans_per_trace):
            s = ss.spans.add()
            s.trace_id, s.span_id = tid, os.urandom(8)
            s.name = f"op-{i}"
            s.kind = 2
            s.start_time_unix_nano = 1_700_000_000_000_000_000 + i
            s.end_time_unix_nano = s.start_time_unix_nano + 1_000_000
            a = s.attributes.add()
            a.key, a.value.int_value = "http.status_code", 200
    return req


def logs_request(n: int = 3, service: str = "checkout") -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    sl = rl.scope_logs.add()
    for i in range(n):
        r = sl.log_records.add()
        r.time_unix_nano = 1_700_000_000_000_000_000 + i
        r.severity_number = 9
        r.severity_text = "INFO"
        r.body.string_value = f"line {i}"
        r.trace_id, r.span_id = os.urandom(16), os.urandom(8)
    return req


def metrics_request(points: int = 2) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    sm = req.resource_metrics.add().scope_metrics.add()
    m = sm.metrics.add()
    m.name = "requests"
    m.sum.is_monotonic = True
    m.sum.aggregation_temporality = 2
    for i in range(points):
        dp = m.sum.data_points.add()
        dp.as_int = i
        dp.time_unix_nano = 1_700_000_000_000_000_000
    return req
