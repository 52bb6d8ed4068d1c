"""The otlp receiver over gRPC: real SDK exporters, raw calls for status codes, limits, draining, counters."""

from __future__ import annotations

import asyncio
import resource
import socket
import sys
import time

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace.export import SpanExportResult

from pipeline.errors import Permanent, Refused, StartError
from pipeline.model import Signal
from tests.receivers.otlp_helpers import (
    BlockingConsumer,
    RaisingConsumer,
    async_test,
    grpc_export,
    receiver_settings,
    running,
    wait_until,
)
from tests.receivers.sdk_data import LINKED, sdk_telemetry
from tests.support.data import logs_request, metrics_request, traces_request
from tests.support.settings import sample_value
from tests.support.sinks import SinkConsumer


def _retry_info(reply_trailer: str | bytes | None) -> error_details_pb2.RetryInfo | None:
    if reply_trailer is None:
        return None
    assert isinstance(reply_trailer, bytes)
    status = status_pb2.Status.FromString(reply_trailer)
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info
    return None


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["plain", "gzip"])
@async_test
async def test_sdk_grpc_exporters_deliver_exactly_what_they_sent(compression: grpc.Compression | None) -> None:
    spans, logs = sdk_telemetry()
    traces, log_sink = SinkConsumer(), SinkConsumer()
    async with running({Signal.TRACES: traces, Signal.LOGS: log_sink}) as receiver:
        endpoint = f"127.0.0.1:{receiver.grpc_port}"
        span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, compression=compression, timeout=10)
        log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True, compression=compression, timeout=10)
        try:
            assert await asyncio.to_thread(span_exporter.export, spans) is SpanExportResult.SUCCESS
            assert await asyncio.to_thread(log_exporter.export, logs) is LogRecordExportResult.SUCCESS
        finally:
            await asyncio.to_thread(span_exporter.shutdown)
            await asyncio.to_thread(log_exporter.shutdown)

    [span_batch] = traces.batches
    assert span_batch.message == encode_spans(spans)
    assert span_batch.items == 2
    sent = {s.name: s for s in span_batch.message.resource_spans[0].scope_spans[0].spans}
    parent, child = sent["GET /cart"], sent["SELECT cart"]
    assert parent.trace_id == spans[1].context.trace_id.to_bytes(16, "big")
    assert child.parent_span_id == parent.span_id == spans[1].context.span_id.to_bytes(8, "big")
    assert child.links[0].trace_id == LINKED.trace_id.to_bytes(16, "big")
    assert parent.events[0].name == "cache miss"
    assert {a.key for a in parent.attributes} == {"http.method", "retries", "cached", "ratio", "tags"}
    scope = span_batch.message.resource_spans[0].scope_spans[0].scope
    assert (scope.name, scope.version) == ("tests.receiver", "2.0")

    [log_batch] = log_sink.batches
    assert log_batch.message == encode_logs(logs)
    records = log_batch.message.resource_logs[0].scope_logs[0].log_records
    assert records[0].body.string_value == "payment failed"
    assert records[0].trace_id == child.trace_id
    assert records[0].span_id == child.span_id
    assert records[1].body.kvlist_value.values[0].key == "order"


@async_test
async def test_metrics_signal_and_counters() -> None:
    settings = receiver_settings()
    sink = SinkConsumer()
    async with running({Signal.METRICS: sink}, settings) as receiver:
        reply = await grpc_export(receiver.grpc_port, Signal.METRICS, metrics_request(points=3).SerializeToString())
    assert reply.code is grpc.StatusCode.OK
    assert reply.body == b""  # partial_success unset
    assert sink.items(Signal.METRICS) == 3
    labels = {"receiver": "otlp", "transport": "grpc"}
    assert sample_value(settings.metrics, "otelpipe_receiver_accepted_metric_points_total", labels) == 3
    outcome = {**labels, "otel_signal": "metrics", "outcome": "ok"}
    assert sample_value(settings.metrics, "otelpipe_receiver_requests_total", outcome) == 1


def _bad_trace_id() -> bytes:
    request = traces_request()
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = bytes(15)
    return request.SerializeToString()


def _bad_link_span_id() -> bytes:
    request = traces_request()
    link = request.resource_spans[0].scope_spans[0].spans[0].links.add()
    link.trace_id, link.span_id = bytes(16), bytes(4)
    return request.SerializeToString()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (traces_request().SerializeToString()[:-3], "cannot decode"),
        (b"\xff\xff\xff\xff", "cannot decode"),
        (_bad_trace_id(), "span trace_id: 15 bytes"),
        (_bad_link_span_id(), "link span_id: 4 bytes"),
    ],
    ids=["truncated", "garbage", "trace-id-15-bytes", "link-span-id-4-bytes"],
)
@async_test
async def test_bad_data_is_invalid_argument_and_server_keeps_serving(body: bytes, detail: str) -> None:
    settings = receiver_settings()
    sink = SinkConsumer()
    async with running({Signal.TRACES: sink}, settings) as receiver:
        bad = await grpc_export(receiver.grpc_port, Signal.TRACES, body)
        good = await grpc_export(receiver.grpc_port, Signal.TRACES, traces_request().SerializeToString())
    assert bad.code is grpc.StatusCode.INVALID_ARGUMENT
    assert detail in (bad.details or "")
    assert good.code is grpc.StatusCode.OK
    assert len(sink.batches) == 1
    invalid = {"receiver": "otlp", "transport": "grpc", "otel_signal": "traces", "outcome": "invalid"}
    assert sample_value(settings.metrics, "otelpipe_receiver_requests_total", invalid) == 1


@async_test
async def test_log_record_with_bad_span_id_is_rejected() -> None:
    request = logs_request()
    request.resource_logs[0].scope_logs[0].log_records[2].span_id = bytes(9)
    sink = SinkConsumer()
    async with running({Signal.LOGS: sink}) as receiver:
        reply = await grpc_export(receiver.grpc_port, Signal.LOGS, request.SerializeToString())
    assert reply.code is grpc.StatusCode.INVALID_ARGUMENT
    assert sink.batches == []


@async_test
async def test_unwired_signal_is_unimplemented() -> None:
    async with running({Signal.TRACES: SinkConsumer()}) as receiver:
        reply = await grpc_export(receiver.grpc_port, Signal.LOGS, logs_request().SerializeToString())
    assert reply.code is grpc.StatusCode.UNIMPLEMENTED


@async_test
async def test_refused_downstream_is_unavailable_with_retry_info() -> None:
    settings = receiver_settings()
    sink = SinkConsumer()
    sink.fail_with = Refused("memory limit reached", retry_after_s=1.5)
    async with running({Signal.TRACES: sink}, settings) as receiver:
        reply = await grpc_export(receiver.grpc_port, Signal.TRACES, traces_request(2, 3).SerializeToString())
    assert reply.code is grpc.StatusCode.UNAVAILABLE
    assert reply.details == "memory limit reached"
    info = _retry_info(reply.trailer("grpc-status-details-bin"))
    assert info is not None
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (1, 500_000_000)
    labels = {"receiver": "otlp", "transport": "grpc"}
    assert sample_value(settings.metrics, "otelpipe_receiver_refused_spans_total", labels) == 6
    assert sample_value(settings.metrics, "otelpipe_receiver_accepted_spans_total", labels) == 0


@async_test
async def test_permanent_downstream_is_invalid_argument() -> None:
    sink = SinkConsumer()
    sink.fail_with = Permanent("schema violation")
    async with running({Signal.TRACES: sink}) as receiver:
        reply = await grpc_export(receiver.grpc_port, Signal.TRACES, traces_request().SerializeToString())
    assert reply.code is grpc.StatusCode.INVALID_ARGUMENT
    assert reply.details == "schema violation"
    assert _retry_info(reply.trailer("grpc-status-details-bin")) is None


@async_test
async def test_permanent_with_rejected_count_is_partial_success() -> None:
    settings = receiver_settings()
    sink = SinkConsumer()
    sink.fail_with = Permanent("2 spans had no name", rejected=2)
    async with running({Signal.TRACES: sink}, settings) as receiver:
        reply = await grpc_export(receiver.grpc_port, Signal.TRACES, traces_request(2, 3).SerializeToString())
    assert reply.code is grpc.StatusCode.OK
    response = ExportTraceServiceResponse.FromString(reply.body)
    assert response.HasField("partial_success")
    assert response.partial_success.rejected_spans == 2
    assert response.partial_success.error_message == "2 spans had no name"
    labels = {"receiver": "otlp", "transport": "grpc"}
    assert sample_value(settings.metrics, "otelpipe_receiver_accepted_spans_total", labels) == 4
    assert sample_value(settings.metrics, "otelpipe_receiver_refused_spans_total", labels) == 2


@async_test
async def test_unexpected_exception_downstream_is_retryable_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    settings = receiver_settings()
    consumer = RaisingConsumer()
    async with running({Signal.TRACES: consumer}, settings) as receiver:
        replies = [
            await grpc_export(receiver.grpc_port, Signal.TRACES, traces_request().SerializeToString()) for _ in range(3)
        ]
    assert consumer.calls == 3
    assert {r.code for r in replies} == {grpc.StatusCode.UNAVAILABLE}
    assert _retry_info(replies[0].trailer("grpc-status-details-bin")) is not None
    errors = [r for r in caplog.records if r.name == settings.logger.name and "unexpected error" in r.getMessage()]
    assert len(errors) == 1  # rate-limited, never one line per request
    outcome = {"receiver": "otlp", "transport": "grpc", "otel_signal": "traces", "outcome": "error"}
    assert sample_value(settings.metrics, "otelpipe_receiver_requests_total", outcome) == 3


@async_test
async def test_message_over_the_limit_is_resource_exhausted_without_retry_info() -> None:
    sink = SinkConsumer()
    request = traces_request(n_traces=50, spans_per_trace=20).SerializeToString()
    assert len(request) > 4096
    async with running({Signal.TRACES: sink}, max_recv_bytes=4096) as receiver:
        reply = await grpc_export(receiver.grpc_port, Signal.TRACES, request)
        good = await grpc_export(receiver.grpc_port, Signal.TRACES, traces_request(1, 1).SerializeToString())
    assert reply.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reply.trailer("grpc-status-details-bin") is None
    assert good.code is grpc.StatusCode.OK
    assert sink.items() == 1


# The bomb is sent from another process: the client must hold it inflated to compress it, and this test
# watches the peak memory of this (the receiver's) process.
_BOMB_CLIENT = """
import sys, grpc
channel = grpc.insecure_channel(sys.argv[1], compression=grpc.Compression.Gzip)
call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
try:
    call(bytes(int(sys.argv[2])), timeout=20)
    print("OK")
except grpc.RpcError as exc:
    details = [k for k, _ in exc.trailing_metadata() or () if k == "grpc-status-details-bin"]
    print(exc.code().name, "with-details" if details else "no-details")
"""


@async_test
async def test_gzip_bomb_is_resource_exhausted_and_never_inflated() -> None:
    bomb_bytes = 256 << 20
    sink = SinkConsumer()
    async with running({Signal.TRACES: sink}, max_recv_bytes=1 << 20) as receiver:
        peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOMB_CLIENT,
            f"127.0.0.1:{receiver.grpc_port}",
            str(bomb_bytes),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await client.communicate()
        peak_after_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        good = await grpc_export(receiver.grpc_port, Signal.TRACES, traces_request(1, 1).SerializeToString())
    assert out.decode().split() == ["RESOURCE_EXHAUSTED", "no-details"]
    # Inflating the bomb would have added 256 MiB to this process's peak.
    assert (peak_after_kib - peak_before_kib) * 1024 < bomb_bytes // 4
    assert good.code is grpc.StatusCode.OK
    assert sink.items() == 1


@async_test
async def test_include_metadata_copies_grpc_metadata() -> None:
    sink = SinkConsumer()
    async with running({Signal.TRACES: sink}, include_metadata=True) as receiver:
        metadata = (("x-tenant", "acme"), ("x-tenant", "beta"), ("x-token-bin", b"\x00\x01"))
        body = traces_request().SerializeToString()
        reply = await grpc_export(receiver.grpc_port, Signal.TRACES, body, metadata=metadata)
    assert reply.code is grpc.StatusCode.OK
    assert sink.batches[0].metadata["x-tenant"] == ("acme", "beta")
    assert "x-token-bin" not in sink.batches[0].metadata  # binary values are not text metadata


@async_test
async def test_metadata_is_not_copied_by_default() -> None:
    sink = SinkConsumer()
    async with running({Signal.TRACES: sink}) as receiver:
        body = traces_request().SerializeToString()
        await grpc_export(receiver.grpc_port, Signal.TRACES, body, metadata=(("x-tenant", "acme"),))
    assert dict(sink.batches[0].metadata) == {}


@async_test
async def test_draining_answers_unavailable_while_in_flight_requests_finish() -> None:
    consumer = BlockingConsumer()
    async with running({Signal.TRACES: consumer}) as receiver:
        port = receiver.grpc_port
        in_flight = asyncio.create_task(grpc_export(port, Signal.TRACES, traces_request().SerializeToString()))
        await consumer.entered.wait()
        shutdown = asyncio.create_task(receiver.shutdown(time.monotonic() + 10))
        await wait_until(lambda: receiver.draining)
        turned_away = await grpc_export(port, Signal.TRACES, traces_request().SerializeToString())
        consumer.release.set()
        finished = await in_flight
        await shutdown
    assert turned_away.code is grpc.StatusCode.UNAVAILABLE
    assert _retry_info(turned_away.trailer("grpc-status-details-bin")) is not None
    assert finished.code is grpc.StatusCode.OK
    assert len(consumer.batches) == 1


@async_test
async def test_port_in_use_is_a_start_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartError, match=rf"otlp.*127\.0\.0\.1:{port}"):
            async with running({Signal.TRACES: SinkConsumer()}, grpc_endpoint=f"127.0.0.1:{port}"):
                pass


@async_test
async def test_second_receiver_on_the_same_port_fails_loudly() -> None:
    async with running({Signal.TRACES: SinkConsumer()}, http_endpoint="") as first:
        with pytest.raises(StartError):
            async with running({Signal.TRACES: SinkConsumer()}, grpc_endpoint=f"127.0.0.1:{first.grpc_port}"):
                pass
        reply = await grpc_export(first.grpc_port, Signal.TRACES, traces_request().SerializeToString())
    assert reply.code is grpc.StatusCode.OK


@async_test
async def test_shutdown_deadline_cancels_requests_still_in_flight(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    settings = receiver_settings()
    consumer = BlockingConsumer()  # never released
    async with running({Signal.TRACES: consumer}, settings) as receiver:
        stuck = asyncio.create_task(
            grpc_export(receiver.grpc_port, Signal.TRACES, traces_request().SerializeToString())
        )
        await consumer.entered.wait()
        await receiver.shutdown(time.monotonic() + 0.2)
        reply = await stuck
    assert reply.code is not grpc.StatusCode.OK
    assert consumer.batches == []
    assert any("1 requests cancelled at the deadline" in r.getMessage() for r in caplog.records)
