"""Builders for tail sampling tests: spans and log records with exactly the properties a test needs, and a
harness that drives the pure core with an explicit clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from bench.gen import kv
from processors.tail_sampling.config import TailSamplingConfig
from processors.tail_sampling.engine import Outcome, TailSampler

BASE_NS = 1_700_000_000_000_000_000
_ids = itertools.count(1)


def tid(randomness: int | None = None, prefix: int | None = None) -> bytes:
    """A 16-byte trace id; ``randomness`` sets its last 56 bits (what unsalted probabilistic sampling reads)."""
    n = next(_ids) if prefix is None else prefix
    r = (n * 0x9E3779B97F4A7C15) & ((1 << 56) - 1) if randomness is None else randomness
    return n.to_bytes(9, "big") + r.to_bytes(7, "big")


def sid() -> bytes:
    return next(_ids).to_bytes(8, "big")


def span(
    trace_id: bytes,
    *,
    parent: bytes = b"\x01" * 8,
    root: bool = False,
    start_ms: float = 0.0,
    duration_ms: float = 1.0,
    status: int = 0,
    attrs: dict[str, Any] | None = None,
    trace_state: str = "",
    flags: int = 0,
    name: str = "op",
) -> Span:
    """A span; by default a child (it has a parent id). ``root=True`` makes it the trace's root."""
    s = Span(trace_id=trace_id, span_id=sid(), name=name, trace_state=trace_state, flags=flags)
    if not root:
        s.parent_span_id = parent
    s.start_time_unix_nano = BASE_NS + int(start_ms * 1_000_000)
    s.end_time_unix_nano = s.start_time_unix_nano + int(duration_ms * 1_000_000)
    if status:
        s.status.code = status
    for k, v in (attrs or {}).items():
        s.attributes.append(kv(k, v))
    return s


def request(
    *spans: Span,
    resource: dict[str, Any] | None = None,
    scope: str = "tests",
    scope_attrs: dict[str, Any] | None = None,
) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for k, v in (resource if resource is not None else {"service.name": "checkout"}).items():
        rs.resource.attributes.append(kv(k, v))
    ss = rs.scope_spans.add()
    ss.scope.name = scope
    for k, v in (scope_attrs or {}).items():
        ss.scope.attributes.append(kv(k, v))
    ss.spans.extend(spans)
    return req


def log(trace_id: bytes = b"", *, severity: int = 9, flags: int = 0, body: str = "line") -> LogRecord:
    r = LogRecord(trace_id=trace_id, severity_number=severity, flags=flags)
    if trace_id:
        r.span_id = sid()
    r.body.string_value = body
    return r


def logs_request(*records: LogRecord, resource: dict[str, Any] | None = None) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    for k, v in (resource if resource is not None else {"service.name": "checkout"}).items():
        rl.resource.attributes.append(kv(k, v))
    sl = rl.scope_logs.add()
    sl.scope.name = "tests"
    sl.log_records.extend(records)
    return req


def config(policies: Sequence[dict[str, Any]], **options: Any) -> TailSamplingConfig:
    options.setdefault("decision_wait_after_root_ms", 0)
    return msgspec.convert({"policies": list(policies), **options}, TailSamplingConfig)


def span_ids(requests: Iterable[ExportTraceServiceRequest]) -> set[bytes]:
    return {s.span_id for r in requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans}


def trace_ids_of(requests: Iterable[ExportTraceServiceRequest]) -> set[bytes]:
    return {s.trace_id for r in requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans}


def bodies_of(requests: Iterable[ExportLogsServiceRequest]) -> list[str]:
    return sorted(
        rec.body.string_value
        for r in requests
        for rl in r.resource_logs
        for sl in rl.scope_logs
        for rec in sl.log_records
    )


class Harness:
    """The pure core with an explicit clock: ``send`` buffers, ``advance`` moves time and ticks; everything that
    came out is parsed into ``spans_out`` / ``logs_out``."""

    def __init__(self, cfg: TailSamplingConfig, start: float = 100.0) -> None:
        self.engine = TailSampler(cfg)
        self.now = start
        self.spans_out: list[ExportTraceServiceRequest] = []
        self.logs_out: list[ExportLogsServiceRequest] = []
        self.passed_through: list[ExportLogsServiceRequest] = []
        self.outcomes: list[Outcome] = []

    def _collect(self, out: Outcome) -> None:
        self.outcomes.append(out)
        for batch in out.batches(self.engine.cfg.annotations):  # what the processor would send
            if isinstance(batch.message, ExportTraceServiceRequest):
                self.spans_out.append(batch.message)
            else:
                self.logs_out.append(batch.message)

    def send(self, req: ExportTraceServiceRequest, held_elsewhere: int = 0) -> Outcome:
        out = Outcome(self.engine.annotate)
        self.engine.ingest_spans(req.SerializeToString(), req, self.now, out, held_elsewhere)
        self._collect(out)
        return out

    def send_logs(self, req: ExportLogsServiceRequest) -> bool:
        out = Outcome(self.engine.annotate)
        forward = self.engine.ingest_logs(req.SerializeToString(), req, self.now, out)
        if forward:
            self.passed_through.append(req)
        self._collect(out)
        return forward

    def advance(self, seconds: float) -> Outcome:
        self.now += seconds
        out = Outcome(self.engine.annotate)
        self.engine.tick(self.now, out)
        self._collect(out)
        return out

    def drain(self, decide: bool = True) -> None:
        out = Outcome(self.engine.annotate)
        self.engine.drain(self.now, out, decide)
        self._collect(out)

    @property
    def kept_spans(self) -> set[bytes]:
        return span_ids(self.spans_out)

    @property
    def kept_traces(self) -> set[bytes]:
        return trace_ids_of(self.spans_out)

    def log_bodies(self) -> list[str]:
        return bodies_of([*self.logs_out, *self.passed_through])
