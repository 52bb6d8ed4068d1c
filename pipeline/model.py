"""Batch types: the one in-memory representation of telemetry inside otelpipe.

A batch is one OTLP export request held as a protobuf (upb) message, plus what is already known about it:
the item count, the byte size, and the serialized bytes while they still match the message. There is no Python
object per span, log record or data point (DESIGN.md section 4: that alone costs 8x). Components work per
batch and touch only the fields they need.

Ownership: a consumer that changes ``message`` declares ``mutates_data`` (the fan-out then hands it a private
clone) and must call ``mark_modified()`` so the stale ``raw`` bytes are never sent.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

Request = ExportTraceServiceRequest | ExportLogsServiceRequest | ExportMetricsServiceRequest
Response = ExportTraceServiceResponse | ExportLogsServiceResponse | ExportMetricsServiceResponse

# Client metadata (gRPC metadata or HTTP headers), lower-case keys. Immutable and shared between clones.
Metadata = Mapping[str, tuple[str, ...]]
EMPTY_METADATA: Metadata = MappingProxyType({})


class Signal(enum.Enum):
    TRACES = "traces"
    LOGS = "logs"
    METRICS = "metrics"

    @property
    def item_name(self) -> str:
        """The collector's word for one item of this signal, used in metric names."""
        return _ITEM_NAMES[self]

    @property
    def request_type(self) -> type[Request]:
        return _REQUEST_TYPES[self]

    @property
    def response_type(self) -> type[Response]:
        return _RESPONSE_TYPES[self]


_ITEM_NAMES = {Signal.TRACES: "spans", Signal.LOGS: "log_records", Signal.METRICS: "metric_points"}
_REQUEST_TYPES: dict[Signal, type[Request]] = {
    Signal.TRACES: ExportTraceServiceRequest,
    Signal.LOGS: ExportLogsServiceRequest,
    Signal.METRICS: ExportMetricsServiceRequest,
}
_RESPONSE_TYPES: dict[Signal, type[Response]] = {
    Signal.TRACES: ExportTraceServiceResponse,
    Signal.LOGS: ExportLogsServiceResponse,
    Signal.METRICS: ExportMetricsServiceResponse,
}


def count_spans(req: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def count_log_records(req: ExportLogsServiceRequest) -> int:
    return sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)


def count_metric_points(req: ExportMetricsServiceRequest) -> int:
    """Data points, as the collector counts them (per metric, by its data type)."""
    n = 0
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is not None:
                    n += len(getattr(m, kind).data_points)
    return n


def count_items(signal: Signal, message: Request) -> int:
    if signal is Signal.TRACES:
        assert isinstance(message, ExportTraceServiceRequest)
        return count_spans(message)
    if signal is Signal.LOGS:
        assert isinstance(message, ExportLogsServiceRequest)
        return count_log_records(message)
    assert isinstance(message, ExportMetricsServiceRequest)
    return count_metric_points(message)


@dataclass(slots=True, eq=False)
class Batch:
    """One export request moving through the pipeline."""

    signal: Signal
    message: Request
    items: int
    # Byte size of the serialized message as far as it is known (the request length on receipt). Budgets use
    # it because ByteSize() costs as much as serializing.
    nbytes: int
    # The serialized message while it is unchanged, so forwarding exporters send it without re-encoding.
    raw: bytes | None = None
    metadata: Metadata = field(default_factory=lambda: EMPTY_METADATA)

    @classmethod
    def from_message(cls, signal: Signal, message: Request, metadata: Metadata = EMPTY_METADATA) -> Batch:
        raw = message.SerializeToString()
        return cls(signal, message, count_items(signal, message), len(raw), raw, metadata)

    @classmethod
    def parse(cls, signal: Signal, raw: bytes, metadata: Metadata = EMPTY_METADATA) -> Batch:
        """Parse serialized OTLP; raises google.protobuf.message.DecodeError on bad bytes."""
        message = signal.request_type()
        message.ParseFromString(raw)
        return cls(signal, message, count_items(signal, message), len(raw), raw, metadata)

    def serialize(self) -> bytes:
        if self.raw is None:
            self.raw = self.message.SerializeToString()
            self.nbytes = len(self.raw)
        return self.raw

    def mark_modified(self, items: int | None = None) -> None:
        """Forget the cached bytes after changing ``message``; pass the new item count if it changed."""
        self.raw = None
        if items is not None:
            self.items = items

    def clone(self) -> Batch:
        """A deep copy a mutating consumer may change freely."""
        message = self.signal.request_type()
        if self.raw is not None:
            # Parsing the bytes we hold is faster than CopyFrom on upb messages.
            message.ParseFromString(self.raw)
        else:
            message.CopyFrom(self.message)  # type: ignore[arg-type]
        return Batch(self.signal, message, self.items, self.nbytes, self.raw, self.metadata)
