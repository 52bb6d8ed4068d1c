"""The real daemon, real clients: the OpenTelemetry Python SDK's OTLP exporters send to ``otelpipe run``, and
the file exporter's output must hold exactly what the SDK encoded."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.exporters.file import read_records
from pipeline.model import Signal
from tests.support.configs import file_pipelines
from tests.support.daemon import Daemon, wait_until
from tests.support.data import traces_request


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    out = tmp_path / "out"
    with Daemon(tmp_path, file_pipelines(out)) as d:
        yield d


def _span_triples(requests: list[ExportTraceServiceRequest]) -> list[tuple[bytes, bytes, bytes]]:
    """(resource, scope, span) of every span, serialized: independent of how spans were split into requests."""
    out = []
    for req in requests:
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out.append(
                        (rs.resource.SerializeToString(), ss.scope.SerializeToString(), span.SerializeToString())
                    )
    return sorted(out)


def _log_triples(requests: list[ExportLogsServiceRequest]) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for req in requests:
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    out.append((rl.resource.SerializeToString(), sl.scope.SerializeToString(), rec.SerializeToString()))
    return sorted(out)


def _records(d: Daemon, signal: Signal) -> list[object]:
    path = d.workdir / "out" / f"{signal.value}.jsonl"
    if not path.exists():
        return []
    return [m for _, m in read_records(path, signal=signal)]


def _make_spans(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("e2e.tests", "2.1.0")
    with tracer.start_as_current_span("GET /orders", kind=trace_api.SpanKind.SERVER) as root:
        root.set_attribute("http.request.method", "GET")
        root.set_attribute("retry.count", 3)
        root.set_attribute("cache.hit", False)
        root.set_attribute("ratio", 0.25)
        root.set_attribute("tags", ["a", "b"])
        root.add_event("cache miss", {"key": "orders:42"})
        link_ctx = trace_api.SpanContext(
            trace_id=0x0AF7651916CD43DD8448EB211C80319C,
            span_id=0xB7AD6B7169203331,
            is_remote=True,
            trace_flags=trace_api.TraceFlags(1),
        )
        with tracer.start_as_current_span("SELECT orders", links=[trace_api.Link(link_ctx, {"why": "batch"})]) as c:
            c.set_status(trace_api.Status(trace_api.StatusCode.ERROR, "timeout"))


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_spans_arrive_exactly(daemon: Daemon, transport: str) -> None:
    resource = Resource.create({"service.name": "orders", "deployment.environment": "test"})
    provider = TracerProvider(resource=resource)
    memory = InMemorySpanExporter()
    exporter = (
        GrpcSpanExporter(endpoint=daemon.grpc_target, insecure=True)
        if transport == "grpc"
        else HttpSpanExporter(endpoint=f"{daemon.http_base}/v1/traces")
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _make_spans(provider)
    provider.shutdown()
    expected = _span_triples([encode_spans(memory.get_finished_spans())])
    assert len(expected) == 2

    def arrived() -> bool:
        return len(_span_triples(_records(daemon, Signal.TRACES))) >= 2  # type: ignore[arg-type]

    wait_until(arrived, what="spans in the file exporter output")
    assert _span_triples(_records(daemon, Signal.TRACES)) == expected  # type: ignore[arg-type]
    assert daemon.metric("otelpipe_receiver_accepted_spans_total") == 2


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_logs_arrive_exactly(daemon: Daemon, transport: str) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "orders"}))
    memory = InMemoryLogRecordExporter()
    exporter = (
        GrpcLogExporter(endpoint=daemon.grpc_target, insecure=True)
        if transport == "grpc"
        else HttpLogExporter(endpoint=f"{daemon.http_base}/v1/logs")
    )
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("e2e.logs", "1.0")
    logger.emit(severity_number=SeverityNumber.WARN, severity_text="WARN", body="disk 91% full", attributes={"d": 1})
    logger.emit(severity_number=SeverityNumber.INFO, body={"event": "login", "user": {"id": 7, "roles": ["a", "b"]}})
    provider.shutdown()
    expected = _log_triples([encode_logs(memory.get_finished_logs())])
    assert len(expected) == 2
    wait_until(lambda: len(_log_triples(_records(daemon, Signal.LOGS))) >= 2, what="logs in the file output")  # type: ignore[arg-type]
    assert _log_triples(_records(daemon, Signal.LOGS)) == expected  # type: ignore[arg-type]


def test_hand_made_otlp_json_round_trips(daemon: Daemon) -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-client"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "manual", "version": "1"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "EEE19B7EC3C1B173",
                                "name": "I'm a server span",
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "kind": 2,
                                "attributes": [{"key": "my.int", "value": {"intValue": "10"}}],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    req = urllib.request.Request(
        f"{daemon.http_base}/v1/traces", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/json")
        json.loads(r.read())
    wait_until(lambda: len(_records(daemon, Signal.TRACES)) >= 1, what="the JSON request in the file output")
    (got,) = _records(daemon, Signal.TRACES)
    assert isinstance(got, ExportTraceServiceRequest)
    span = got.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.parent_span_id.hex() == "eee19b7ec3c1b173"
    assert span.end_time_unix_nano == 1544712661000000000
    assert span.attributes[0].value.int_value == 10
    assert span.status.code == 2
    assert span.kind == 2


def test_sigterm_during_load_exits_zero_and_keeps_everything_acknowledged(tmp_path: Path) -> None:
    out = tmp_path / "out"
    d = Daemon(tmp_path, file_pipelines(out)).start()
    try:
        channel = grpc.insecure_channel(d.grpc_target)
        call = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        acked: list[bytes] = []  # trace ids of acknowledged requests
        stop = threading.Event()
        errors: list[grpc.StatusCode] = []

        def load() -> None:
            for _ in range(5000):  # bounded: stops by itself even if SIGTERM never lands
                if stop.is_set():
                    return
                req = traces_request(n_traces=5, spans_per_trace=4)
                try:
                    call(req.SerializeToString(), timeout=5)
                except grpc.RpcError as exc:
                    errors.append(exc.code())
                    return
                acked.extend({s.trace_id for s in req.resource_spans[0].scope_spans[0].spans})

        t = threading.Thread(target=load)
        t.start()
        wait_until(lambda: len(acked) >= 50, what="some acknowledged requests")
        code = d.terminate()
        stop.set()
        t.join(timeout=30)
        channel.close()
    finally:
        d.__exit__(None, None, None)
    assert code == 0, d.log()
    exported = {
        s.trace_id
        for m in _records(d, Signal.TRACES)
        for rs in m.resource_spans  # type: ignore[attr-defined]
        for ss in rs.scope_spans
        for s in ss.spans
    }
    missing = set(acked) - exported
    assert not missing, f"{len(missing)} acknowledged traces lost"
    # What the client saw while the daemon drained is retryable (OTLP retries UNAVAILABLE and CANCELLED).
    assert all(c in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) for c in errors), errors


def _post_span(d: Daemon) -> None:
    call_req = traces_request(n_traces=1, spans_per_trace=1)
    req = urllib.request.Request(
        f"{d.http_base}/v1/traces",
        data=call_req.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def test_sighup_invalid_config_keeps_running_valid_config_is_applied(tmp_path: Path) -> None:
    import signal as sig

    out = tmp_path / "out"
    with Daemon(tmp_path, file_pipelines(out)) as d:
        assert d.proc is not None
        good = d.config_path.read_text()
        _post_span(d)
        d.config_path.write_text(good.replace('format = "json"', 'format = "yaml"'))
        d.proc.send_signal(sig.SIGHUP)
        wait_until(lambda: "keeping the running one" in d.log(), what="the reload error in the log")
        assert "exporters.file.format" in d.log()
        _post_span(d)  # still serving on the old configuration

        new_out = tmp_path / "out2"
        d.config_path.write_text(good.replace(str(out), str(new_out)))
        d.proc.send_signal(sig.SIGHUP)
        # The new graph runs once the reload says so (a request just before that still goes, correctly, into
        # the old graph and its file).
        wait_until(lambda: "new configuration running" in d.log(), what="the reload to complete")
        wait_until(lambda: _try_post(d), what="the receiver")
        assert d.terminate() == 0
    old_spans = sum(1 for _ in read_records(out / "traces.jsonl", signal=Signal.TRACES))
    new_spans = sum(1 for _ in read_records(new_out / "traces.jsonl", signal=Signal.TRACES))
    assert old_spans == 2  # both requests sent before the valid reload were drained into the old file
    assert new_spans >= 1


def _try_post(d: Daemon) -> bool:
    try:
        _post_span(d)
    except OSError:
        return False
    return True
