"""The otlp receiver over HTTP: SDK exporters, OTLP/JSON, gzip, every kind of bad request, CORS, draining."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace.export import SpanExportResult

from pipeline.errors import Permanent, Refused, StartError
from pipeline.model import Signal
from tests.receivers.otlp_helpers import (
    JSON,
    PROTOBUF,
    BlockingConsumer,
    RaisingConsumer,
    async_test,
    gzip_bomb,
    gzip_bytes,
    http_request,
    receiver_settings,
    running,
    wait_until,
)
from tests.receivers.sdk_data import sdk_telemetry
from tests.support.data import logs_request, metrics_request, traces_request
from tests.support.settings import sample_value
from tests.support.sinks import SinkConsumer

GOOD = traces_request().SerializeToString()


def _status(body: bytes) -> status_pb2.Status:
    return status_pb2.Status.FromString(body)


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip], ids=["plain", "gzip"])
@async_test
async def test_sdk_http_exporters_deliver_exactly_what_they_sent(compression: Compression) -> None:
    spans, logs = sdk_telemetry()
    traces, log_sink = SinkConsumer(), SinkConsumer()
    async with running({Signal.TRACES: traces, Signal.LOGS: log_sink}) as receiver:
        base = f"http://127.0.0.1:{receiver.http_port}"
        span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", compression=compression, timeout=10)
        log_exporter = OTLPLogExporter(endpoint=f"{base}/v1/logs", compression=compression, timeout=10)
        try:
            assert await asyncio.to_thread(span_exporter.export, spans) is SpanExportResult.SUCCESS
            assert await asyncio.to_thread(log_exporter.export, logs) is LogRecordExportResult.SUCCESS
        finally:
            await asyncio.to_thread(span_exporter.shutdown)
            await asyncio.to_thread(log_exporter.shutdown)
    [span_batch] = traces.batches
    assert span_batch.message == encode_spans(spans)
    child = next(s for s in span_batch.message.resource_spans[0].scope_spans[0].spans if s.name == "SELECT cart")
    assert child.status.code == 2
    assert child.status.message == "timeout"
    assert child.links[0].attributes[0].key == "link.kind"
    [log_batch] = log_sink.batches
    assert log_batch.message == encode_logs(logs)
    assert log_batch.items == 2


# Hand-made OTLP/JSON: hex ids in mixed case, camelCase keys, enums as ints, int64 as strings, an unknown key.
_JSON_TRACES = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "manual", "version": "1.2"},
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "eee19b7ec3c1b174",
                            "parentSpanId": "EEE19B7EC3C1B173",
                            "name": "GET /",
                            "kind": 2,
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000000",
                            "attributes": [{"key": "http.status_code", "value": {"intValue": "200"}}],
                            "status": {"code": 2, "message": "boom"},
                            "someFutureField": {"x": 1},
                        }
                    ],
                }
            ],
        }
    ]
}


def _expected_json_traces() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "web"
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "manual", "1.2"
    span = ss.spans.add()
    span.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    span.span_id = bytes.fromhex("eee19b7ec3c1b174")
    span.parent_span_id = bytes.fromhex("eee19b7ec3c1b173")
    span.name, span.kind = "GET /", 2
    span.start_time_unix_nano, span.end_time_unix_nano = 1544712660000000000, 1544712661000000000
    attr = span.attributes.add()
    attr.key, attr.value.int_value = "http.status_code", 200
    span.status.code, span.status.message = 2, "boom"
    return request


@async_test
async def test_otlp_json_request_decodes_and_gets_a_json_response() -> None:
    sink = SinkConsumer()
    async with running({Signal.TRACES: sink}) as receiver:
        body = json.dumps(_JSON_TRACES).encode()
        reply = await http_request(
            receiver.http_port, "/v1/traces", body, content_type="application/json; charset=utf-8"
        )
    assert reply.status == 200
    assert reply.headers["Content-Type"] == JSON
    assert json.loads(reply.body) == {}
    assert sink.batches[0].message == _expected_json_traces()
    assert sink.batches[0].raw == _expected_json_traces().SerializeToString()


@async_test
async def test_json_partial_success_uses_camel_case_and_string_int64() -> None:
    sink = SinkConsumer()
    sink.fail_with = Permanent("one span too old", rejected=1)
    async with running({Signal.TRACES: sink}) as receiver:
        reply = await http_request(receiver.http_port, "/v1/traces", json.dumps(_JSON_TRACES).encode(), JSON)
    assert reply.status == 200
    assert json.loads(reply.body) == {"partialSuccess": {"rejectedSpans": "1", "errorMessage": "one span too old"}}


@async_test
async def test_protobuf_partial_success() -> None:
    settings = receiver_settings()
    sink = SinkConsumer()
    sink.fail_with = Permanent("2 spans rejected", rejected=2)
    async with running({Signal.TRACES: sink}, settings) as receiver:
        reply = await http_request(receiver.http_port, "/v1/traces", traces_request(2, 3).SerializeToString())
    assert reply.status == 200
    assert reply.headers["Content-Type"] == PROTOBUF
    response = ExportTraceServiceResponse.FromString(reply.body)
    assert response.partial_success.rejected_spans == 2
    outcome = {"receiver": "otlp", "transport": "http", "otel_signal": "traces", "outcome": "partial"}
    assert sample_value(settings.metrics, "otelpipe_receiver_requests_total", outcome) == 1


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@async_test
async def test_compressed_bodies(encoding: str) -> None:
    sink = SinkConsumer()
    body = gzip_bytes(GOOD) if encoding == "gzip" else zlib.compress(GOOD)
    async with running({Signal.TRACES: sink}) as receiver:
        reply = await http_request(receiver.http_port, "/v1/traces", body, headers={"Content-Encoding": encoding})
    assert reply.status == 200
    assert sink.batches[0].raw == GOOD


@async_test
async def test_metrics_and_logs_over_http_are_counted() -> None:
    settings = receiver_settings()
    metrics, logs = SinkConsumer(), SinkConsumer()
    async with running({Signal.METRICS: metrics, Signal.LOGS: logs}, settings) as receiver:
        m = await http_request(receiver.http_port, "/v1/metrics", metrics_request(points=4).SerializeToString())
        lg = await http_request(receiver.http_port, "/v1/logs", logs_request(n=5).SerializeToString())
    assert (m.status, lg.status) == (200, 200)
    labels = {"receiver": "otlp", "transport": "http"}
    assert sample_value(settings.metrics, "otelpipe_receiver_accepted_metric_points_total", labels) == 4
    assert sample_value(settings.metrics, "otelpipe_receiver_accepted_log_records_total", labels) == 5


@async_test
async def test_custom_url_path() -> None:
    sink = SinkConsumer()
    async with running({Signal.TRACES: sink}, traces_url_path="/otlp/v1/traces") as receiver:
        custom = await http_request(receiver.http_port, "/otlp/v1/traces", GOOD)
        default = await http_request(receiver.http_port, "/v1/traces", GOOD)
    assert (custom.status, default.status) == (200, 404)


def _json_with_short_trace_id() -> bytes:
    doc = json.loads(json.dumps(_JSON_TRACES))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "00" * 15
    return json.dumps(doc).encode()


def _protobuf_with_short_trace_id() -> bytes:
    request = traces_request()
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = bytes(15)
    return request.SerializeToString()


_LIMIT = 64 * 1024


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "outcome", "says"),
    [
        ("/v1/traces", GOOD[:-3], {}, 400, "invalid", "cannot decode"),
        ("/v1/traces", b"\xff\xff\xff\xff", {}, 400, "invalid", "cannot decode"),
        ("/v1/traces", b'{"resourceSpans": [', {"Content-Type": JSON}, 400, "invalid", "invalid JSON"),
        ("/v1/traces", b'{"resourceSpans": 7}', {"Content-Type": JSON}, 400, "invalid", "invalid OTLP/JSON"),
        ("/v1/traces", b"[" * 50_000, {"Content-Type": JSON}, 400, "invalid", "nested too deeply"),
        ("/v1/traces", _protobuf_with_short_trace_id(), {}, 400, "invalid", "trace_id: 15 bytes"),
        ("/v1/traces", _json_with_short_trace_id(), {"Content-Type": JSON}, 400, "invalid", "traceId"),
        ("/v1/traces", b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"}, 400, "invalid", "compressed"),
        ("/v1/traces", GOOD, {"Content-Type": "text/plain"}, 415, "unsupported", "Content-Type"),
        ("/v1/traces", GOOD, {"Content-Encoding": "br"}, 415, "unsupported", "Content-Encoding"),
        ("/v1/traces", bytes(_LIMIT + 1), {}, 413, "too_large", "max_recv_bytes"),
        ("/v1/traces", gzip_bomb(64), {"Content-Encoding": "gzip"}, 413, "too_large", "max_recv_bytes"),
        ("/v1/nothing", GOOD, {}, 404, None, "not an OTLP path"),
        ("/v1/logs", GOOD, {}, 404, None, "not wired"),
    ],
    ids=[
        "truncated",
        "garbage",
        "invalid-json",
        "json-wrong-shape",
        "json-nested-too-deeply",
        "trace-id-15-bytes-protobuf",
        "trace-id-15-bytes-json",
        "corrupt-gzip",
        "wrong-content-type",
        "unknown-encoding",
        "over-the-limit",
        "gzip-bomb",
        "unknown-path",
        "unwired-signal",
    ],
)
@async_test
async def test_bad_requests_get_a_status_and_the_server_keeps_serving(
    path: str, body: bytes, headers: dict[str, str], status: int, outcome: str | None, says: str
) -> None:
    settings = receiver_settings()
    sink = SinkConsumer()
    content_type = headers.pop("Content-Type", PROTOBUF)
    async with running({Signal.TRACES: sink}, settings, max_recv_bytes=_LIMIT) as receiver:
        bad = await http_request(receiver.http_port, path, body, content_type=content_type, headers=headers)
        good = await http_request(receiver.http_port, "/v1/traces", GOOD)
    assert bad.status == status
    if content_type == PROTOBUF:
        assert bad.headers["Content-Type"] == PROTOBUF
        message = _status(bad.body).message
    else:  # JSON requests, and unknown content types, get a JSON Status
        assert bad.headers["Content-Type"] == JSON
        message = json.loads(bad.body)["message"]
    assert says in message
    assert good.status == 200
    assert len(sink.batches) == 1
    if outcome is not None:
        labels = {"receiver": "otlp", "transport": "http", "otel_signal": "traces", "outcome": outcome}
        assert sample_value(settings.metrics, "otelpipe_receiver_requests_total", labels) == 1


@async_test
async def test_chunked_body_over_the_limit_is_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit must hold while reading
        for _ in range(8):
            yield bytes(16 * 1024)

    async with (
        running({Signal.TRACES: SinkConsumer()}, max_recv_bytes=_LIMIT) as receiver,
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{receiver.http_port}/v1/traces",
            data=chunks(),
            headers={"Content-Type": PROTOBUF},
        ) as response,
    ):
        status, body = response.status, await response.read()
    assert status == 413
    assert "max_recv_bytes" in _status(body).message


@async_test
async def test_wrong_method_is_405() -> None:
    async with running({Signal.TRACES: SinkConsumer()}) as receiver:
        reply = await http_request(receiver.http_port, "/v1/traces", method="GET")
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"


@async_test
async def test_refused_downstream_is_503_with_retry_after() -> None:
    settings = receiver_settings()
    sink = SinkConsumer()
    sink.fail_with = Refused("queue full", retry_after_s=1.2)
    async with running({Signal.TRACES: sink}, settings) as receiver:
        reply = await http_request(receiver.http_port, "/v1/traces", GOOD)
    assert reply.status == 503
    assert reply.headers["Retry-After"] == "2"
    assert _status(reply.body).message == "queue full"
    refused = {"receiver": "otlp", "transport": "http", "otel_signal": "traces", "outcome": "refused"}
    assert sample_value(settings.metrics, "otelpipe_receiver_requests_total", refused) == 1
    labels = {"receiver": "otlp", "transport": "http"}
    assert sample_value(settings.metrics, "otelpipe_receiver_refused_spans_total", labels) == 6


@async_test
async def test_permanent_downstream_is_400() -> None:
    sink = SinkConsumer()
    sink.fail_with = Permanent("bad attributes")
    async with running({Signal.TRACES: sink}) as receiver:
        reply = await http_request(receiver.http_port, "/v1/traces", GOOD)
    assert reply.status == 400
    assert _status(reply.body).message == "bad attributes"
    assert "Retry-After" not in reply.headers


@async_test
async def test_unexpected_exception_downstream_is_503() -> None:
    consumer = RaisingConsumer()
    async with running({Signal.TRACES: consumer}) as receiver:
        reply = await http_request(receiver.http_port, "/v1/traces", GOOD)
        again = await http_request(receiver.http_port, "/v1/traces", GOOD)
    assert (reply.status, again.status) == (503, 503)
    assert reply.headers["Retry-After"] == "1"


@async_test
async def test_draining_answers_503_while_in_flight_requests_finish() -> None:
    consumer = BlockingConsumer()
    async with running({Signal.TRACES: consumer}) as receiver:
        port = receiver.http_port
        in_flight = asyncio.create_task(http_request(port, "/v1/traces", GOOD))
        await consumer.entered.wait()
        shutdown = asyncio.create_task(receiver.shutdown(time.monotonic() + 10))
        await wait_until(lambda: receiver.draining)
        turned_away = await http_request(port, "/v1/traces", GOOD)
        consumer.release.set()
        finished = await in_flight
        await shutdown
    assert turned_away.status == 503
    assert turned_away.headers["Retry-After"] == "1"
    assert "shutting down" in _status(turned_away.body).message
    assert finished.status == 200
    assert len(consumer.batches) == 1


@async_test
async def test_include_metadata_puts_headers_into_the_batch() -> None:
    sink = SinkConsumer()
    async with running({Signal.TRACES: sink}, include_metadata=True) as receiver:
        reply = await http_request(receiver.http_port, "/v1/traces", GOOD, headers={"X-Tenant": "acme"})
    assert reply.status == 200
    assert sink.batches[0].metadata["x-tenant"] == ("acme",)
    assert sink.batches[0].metadata["content-type"] == (PROTOBUF,)


@async_test
async def test_cors_preflight_and_allow_origin() -> None:
    sink = SinkConsumer()
    config = {"cors_allowed_origins": ["https://*.example.com"], "cors_allowed_headers": ["X-Tenant"]}
    async with running({Signal.TRACES: sink}, **config) as receiver:
        port = receiver.http_port
        preflight_headers = {
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-tenant",
        }
        allowed = await http_request(port, "/v1/traces", method="OPTIONS", content_type=None, headers=preflight_headers)
        other = {**preflight_headers, "Origin": "https://evil.test"}
        refused = await http_request(port, "/v1/traces", method="OPTIONS", content_type=None, headers=other)
        post = await http_request(port, "/v1/traces", GOOD, headers={"Origin": "https://app.example.com"})
        post_other = await http_request(port, "/v1/traces", GOOD, headers={"Origin": "https://evil.test"})
    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert allowed.headers["Access-Control-Allow-Methods"] == "POST"
    assert allowed.headers["Access-Control-Allow-Headers"] == "content-type, x-tenant"
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert post.status == 200
    assert post.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert post_other.status == 200  # CORS is enforced by browsers; the server only withholds the header
    assert "Access-Control-Allow-Origin" not in post_other.headers


@async_test
async def test_options_without_cors_is_405() -> None:
    async with running({Signal.TRACES: SinkConsumer()}) as receiver:
        headers = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
        reply = await http_request(receiver.http_port, "/v1/traces", method="OPTIONS", headers=headers)
    assert reply.status == 405


@async_test
async def test_port_in_use_is_a_start_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartError, match=rf"otlp.*HTTP.*127\.0\.0\.1:{port}"):
            async with running({Signal.TRACES: SinkConsumer()}, http_endpoint=f"127.0.0.1:{port}"):
                pass


@async_test
async def test_expect_100_continue_is_answered() -> None:
    sink = SinkConsumer()
    async with running({Signal.TRACES: sink}) as receiver:
        reader, writer = await asyncio.open_connection("127.0.0.1", receiver.http_port)
        try:
            head = (
                f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PROTOBUF}\r\n"
                f"Content-Length: {len(GOOD)}\r\nExpect: 100-continue\r\n\r\n"
            )
            writer.write(head.encode())
            interim = await reader.readuntil(b"\r\n\r\n")
            writer.write(GOOD)  # a client sends the body only after the interim response
            final = await reader.readuntil(b"\r\n")
        finally:
            writer.close()
            await writer.wait_closed()
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    assert final.startswith(b"HTTP/1.1 200")
    assert sink.batches[0].raw == GOOD


@async_test
async def test_client_gone_mid_body_is_counted_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    settings = receiver_settings()
    sink = SinkConsumer()
    invalid = {"receiver": "otlp", "transport": "http", "otel_signal": "traces", "outcome": "invalid"}
    async with running({Signal.TRACES: sink}, settings) as receiver:
        _, writer = await asyncio.open_connection("127.0.0.1", receiver.http_port)
        head = f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PROTOBUF}\r\nContent-Length: 1000\r\n\r\n"
        writer.write(head.encode() + GOOD[:10])
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: sample_value(settings.metrics, "otelpipe_receiver_requests_total", invalid) == 1)
        good = await http_request(receiver.http_port, "/v1/traces", GOOD)
    assert good.status == 200
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
