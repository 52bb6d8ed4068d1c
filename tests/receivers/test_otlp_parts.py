"""The otlp receiver's pure parts and lifecycle: config, factory, id check, bounded inflate, CORS, health."""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc
import zlib

import msgspec
import pytest

from pipeline.component import Kind
from pipeline.errors import StartError
from pipeline.model import Signal
from pipeline.receivers.otlp import FACTORY, OtlpReceiver, OtlpReceiverConfig
from pipeline.receivers.otlp.config import split_endpoint
from pipeline.receivers.otlp.cors import CorsPolicy
from pipeline.receivers.otlp.decompress import CorruptBody, TooLarge, UnsupportedEncoding, decode_body
from pipeline.receivers.otlp.drain import DrainGate
from pipeline.receivers.otlp.ids import check_ids
from pipeline.telemetry.health import Status
from tests.receivers.otlp_helpers import async_test, grpc_export, gzip_bomb, receiver_settings, running, wait_until
from tests.support.data import logs_request, metrics_request, traces_request
from tests.support.sinks import SinkConsumer

# -- config --------------------------------------------------------------------------------------------------


def test_defaults_follow_the_collector() -> None:
    config = FACTORY.default_config()
    assert isinstance(config, OtlpReceiverConfig)
    assert (config.grpc_endpoint, config.http_endpoint) == ("127.0.0.1:4317", "127.0.0.1:4318")
    assert config.max_recv_bytes == 64 * 1024 * 1024
    assert (config.traces_url_path, config.logs_url_path, config.metrics_url_path) == (
        "/v1/traces",
        "/v1/logs",
        "/v1/metrics",
    )
    assert FACTORY.kind is Kind.RECEIVER
    assert FACTORY.type == "otlp"
    assert FACTORY.signals == frozenset(Signal)


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"grpc_endpoint": "4317"}, "grpc_endpoint: expected host:port"),
        ({"http_endpoint": "localhost:http"}, "http_endpoint: expected host:port"),
        ({"http_endpoint": "::1:4318"}, "IPv6 hosts in brackets"),
        ({"grpc_endpoint": "127.0.0.1:70000"}, "port must be"),
        ({"grpc_endpoint": "", "http_endpoint": ""}, "both empty"),
        ({"grpc_endpoint": "127.0.0.1:5000", "http_endpoint": "127.0.0.1:5000"}, "already used by grpc_endpoint"),
        ({"logs_url_path": "v1/logs"}, "must start with '/'"),
        ({"logs_url_path": "/v1/traces"}, "already used by traces_url_path"),
        ({"max_recv_bytes": 0}, "max_recv_bytes"),
        ({"max_recv_size": 10}, "unknown field"),
    ],
)
def test_invalid_config_is_rejected_naming_the_key(table: dict[str, object], says: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=says):
        msgspec.convert(table, OtlpReceiverConfig)


def test_endpoints_accept_ipv6_and_ephemeral_ports() -> None:
    assert split_endpoint("[::1]:4317") == ("::1", 4317)
    assert split_endpoint("0.0.0.0:0") == ("0.0.0.0", 0)
    config = msgspec.convert({"grpc_endpoint": "[::1]:0", "http_endpoint": ""}, OtlpReceiverConfig)
    assert config.http_endpoint == ""


# -- id check -------------------------------------------------------------------------------------------------


def test_valid_ids_pass_for_every_signal() -> None:
    assert check_ids(Signal.TRACES, traces_request().SerializeToString()) is None
    assert check_ids(Signal.LOGS, logs_request().SerializeToString()) is None
    assert check_ids(Signal.METRICS, metrics_request().SerializeToString()) is None
    assert check_ids(Signal.TRACES, b"") is None


def test_empty_ids_are_allowed() -> None:
    request = traces_request()
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.trace_id = span.span_id = span.parent_span_id = b""
    assert check_ids(Signal.TRACES, request.SerializeToString()) is None


def test_bad_ids_anywhere_in_the_request_are_found() -> None:
    request = traces_request(n_traces=4)
    rs = request.resource_spans.add()  # a second resource, second scope: the check must reach them too
    rs.scope_spans.add()
    span = rs.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.parent_span_id = bytes(16), bytes(8), bytes(7)
    assert check_ids(Signal.TRACES, request.SerializeToString()) == (
        "invalid span parent_span_id: 7 bytes, expected 8 (or empty)"
    )


def test_eight_byte_trace_id_is_rejected() -> None:
    # 64-bit trace ids (old Zipkin/Jaeger clients) are a realistic mistake, not just corruption.
    request = logs_request()
    request.resource_logs[0].scope_logs[0].log_records[0].trace_id = bytes(8)
    assert check_ids(Signal.LOGS, request.SerializeToString()) == (
        "invalid log record trace_id: 8 bytes, expected 16 (or empty)"
    )


@pytest.mark.parametrize("kind", ["gauge", "sum", "histogram", "exponential_histogram"])
def test_exemplar_ids_are_checked(kind: str) -> None:
    request = metrics_request()
    metric = request.resource_metrics[0].scope_metrics[0].metrics.add()
    metric.name = "m"
    exemplar = getattr(metric, kind).data_points.add().exemplars.add()
    exemplar.trace_id, exemplar.span_id = bytes(16), bytes(8)
    assert check_ids(Signal.METRICS, request.SerializeToString()) is None
    exemplar.span_id = bytes(3)
    assert check_ids(Signal.METRICS, request.SerializeToString()) == (
        "invalid exemplar span_id: 3 bytes, expected 8 (or empty)"
    )


# -- bounded inflate ------------------------------------------------------------------------------------------


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip_bomb(64)
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            decode_body(bomb, "gzip", 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # O(limit), not 64 MiB


def test_decode_body_encodings() -> None:
    data = b"otlp" * 1000
    assert decode_body(data, "", 10_000) is data
    assert decode_body(gzip.compress(data), "GZIP", 10_000) == data
    assert decode_body(gzip.compress(data[:2000]) + gzip.compress(data[2000:]), "gzip", 10_000) == data
    assert decode_body(zlib.compress(data), "deflate", 10_000) == data
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decode_body(raw_deflate.compress(data) + raw_deflate.flush(), "deflate", 10_000) == data
    assert decode_body(gzip.compress(data), "gzip", 4000) == data  # exactly at the limit
    with pytest.raises(TooLarge):
        decode_body(gzip.compress(data), "gzip", 3999)
    with pytest.raises(TooLarge):
        decode_body(data, "identity", 3999)
    with pytest.raises(CorruptBody, match="truncated"):
        decode_body(gzip.compress(data)[:-12], "gzip", 10_000)
    with pytest.raises(CorruptBody, match="trailing"):
        decode_body(zlib.compress(data) + b"junk", "deflate", 10_000)
    with pytest.raises(UnsupportedEncoding):
        decode_body(data, "zstd", 10_000)


# -- CORS -----------------------------------------------------------------------------------------------------


def test_cors_origin_globs_are_anchored_and_case_insensitive() -> None:
    policy = CorsPolicy(["https://*.example.com", "http://localhost:3000"], [])
    assert policy.origin_allowed("https://app.example.com")
    assert policy.origin_allowed("HTTPS://App.Example.com")
    assert policy.origin_allowed("http://localhost:3000")
    assert not policy.origin_allowed("https://example.com.evil.test")
    assert not policy.origin_allowed("http://localhost:30001")
    assert CorsPolicy(["*"], []).origin_allowed("https://anything.test")
    assert not CorsPolicy([], []).enabled


def test_cors_preflight_headers() -> None:
    policy = CorsPolicy(["https://app.test"], ["X-Tenant"])
    base = {"Origin": "https://app.test", "Access-Control-Request-Method": "POST"}
    assert policy.preflight({"Origin": "https://app.test"}) is None  # not a preflight
    allowed = policy.preflight({**base, "Access-Control-Request-Headers": "Content-Type,X-Tenant"})
    assert allowed is not None
    assert allowed["Access-Control-Allow-Origin"] == "https://app.test"
    unlisted = policy.preflight({**base, "Access-Control-Request-Headers": "x-secret"})
    assert unlisted is not None
    assert "Access-Control-Allow-Origin" not in unlisted
    wrong_method = policy.preflight({**base, "Access-Control-Request-Method": "DELETE"})
    assert wrong_method is not None
    assert "Access-Control-Allow-Origin" not in wrong_method
    any_header = CorsPolicy(["https://app.test"], ["*"]).preflight({**base, "Access-Control-Request-Headers": "x-y"})
    assert any_header is not None
    assert any_header["Access-Control-Allow-Headers"] == "x-y"


# -- drain gate -----------------------------------------------------------------------------------------------


@async_test
async def test_drain_gate_waits_for_requests_in_flight() -> None:
    gate = DrainGate()
    assert gate.enter()
    drain = asyncio.create_task(gate.drain(timeout_s=10))
    await wait_until(lambda: gate.draining)
    assert not gate.enter()  # new requests are turned away from now on
    assert not drain.done()
    gate.leave()
    assert await drain is True
    assert gate.inflight == 0


@async_test
async def test_drain_gate_gives_up_at_the_deadline() -> None:
    gate = DrainGate()
    assert gate.enter()
    assert await gate.drain(timeout_s=0.0) is False
    assert gate.inflight == 1


@async_test
async def test_idle_drain_gate_returns_at_once() -> None:
    assert await DrainGate().drain(timeout_s=0.0) is True


# -- lifecycle ------------------------------------------------------------------------------------------------


@async_test
async def test_shutdown_without_start_is_safe_and_idempotent() -> None:
    settings = receiver_settings()
    receiver = FACTORY.create(settings, FACTORY.default_config(), {Signal.TRACES: SinkConsumer()})
    assert isinstance(receiver, OtlpReceiver)
    assert (receiver.grpc_port, receiver.http_port) == (None, None)
    await receiver.shutdown(time.monotonic() + 1)
    await receiver.shutdown(time.monotonic() + 1)
    assert settings.health.run()[0] is Status.UNHEALTHY


@async_test
async def test_health_follows_the_lifecycle() -> None:
    settings = receiver_settings()
    config = OtlpReceiverConfig(grpc_endpoint="127.0.0.1:0", http_endpoint="127.0.0.1:0")
    receiver = FACTORY.create(settings, config, {Signal.TRACES: SinkConsumer()})
    status_before, reports = settings.health.run()
    assert [r.name for r in reports] == ["receiver:otlp"]
    await receiver.start()
    try:
        status_running, _ = settings.health.run()
        port = receiver.grpc_port
    finally:
        await receiver.shutdown(time.monotonic() + 5)
    status_after, _ = settings.health.run()
    assert (status_before, status_running, status_after) == (Status.UNHEALTHY, Status.HEALTHY, Status.UNHEALTHY)
    reply = await grpc_export(port, Signal.TRACES, traces_request().SerializeToString())
    assert reply.code.name == "UNAVAILABLE"  # nobody listens any more


@async_test
async def test_grpc_only_receiver_logs_its_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    settings = receiver_settings()
    async with running({Signal.TRACES: SinkConsumer()}, settings, http_endpoint="") as receiver:
        assert receiver.http_port is None
        port = receiver.grpc_port
    lines = [r.getMessage() for r in caplog.records if r.name == settings.logger.name]
    assert lines == [f"receiver otlp listening on grpc 127.0.0.1:{port}", "receiver otlp stopped"]


@async_test
async def test_start_twice_is_an_error() -> None:
    async with running({Signal.TRACES: SinkConsumer()}) as receiver:
        with pytest.raises(StartError, match="twice"):
            await receiver.start()
