"""Telemetry made by the OpenTelemetry Python SDK, as a real service would export it."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

RESOURCE = Resource.create({"service.name": "checkout", "deployment.environment": "test"})
LINKED = trace.SpanContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331, is_remote=True)


def sdk_telemetry() -> tuple[Sequence[ReadableSpan], Sequence[ReadableLogRecord]]:
    """Two spans (parent with attributes and an event, child with a link and an error status) and two logs
    emitted inside the child span (a string body and a map body)."""
    spans_out = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans_out))
    logs_out = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs_out))
    tracer = tracer_provider.get_tracer("tests.receiver", "2.0")
    logger = logger_provider.get_logger("tests.receiver.logs", "1.0")
    attributes = {"http.method": "GET", "retries": 3, "cached": True, "ratio": 0.5, "tags": ["a", "b"]}
    with tracer.start_as_current_span("GET /cart", kind=trace.SpanKind.SERVER, attributes=attributes) as parent:
        parent.add_event("cache miss", {"key": "user:1"})
        with tracer.start_as_current_span("SELECT cart", links=[trace.Link(LINKED, {"link.kind": "follows"})]) as child:
            child.set_status(trace.Status(trace.StatusCode.ERROR, "timeout"))
            logger.emit(body="payment failed", severity_number=SeverityNumber.WARN, severity_text="WARN")
            logger.emit(body={"order": 42, "items": ["a", "b"]}, severity_number=SeverityNumber.INFO)
    tracer_provider.shutdown()
    logger_provider.shutdown()
    return spans_out.get_finished_spans(), logs_out.get_finished_logs()
