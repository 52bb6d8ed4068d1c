"""Admission control: over its memory limit, the daemon refuses at the receiver, before reading a request,
with the retryable answers OTLP clients act on (UNAVAILABLE + RetryInfo, 503 + Retry-After)."""

from __future__ import annotations

import time

import msgspec
from google.rpc import error_details_pb2, status_pb2

from pipeline.component import Kind
from pipeline.model import Signal
from processors.memory_limiter import MIB, MemoryLimiter, MemoryLimiterConfig
from tests.receivers.otlp_helpers import async_test, grpc_export, http_request, receiver_settings, running
from tests.support.clock import FakeClock
from tests.support.data import traces_request
from tests.support.settings import make_settings, sample_value
from tests.support.sinks import SinkConsumer


def retry_delay(trailer: str | bytes | None) -> float | None:
    if not isinstance(trailer, bytes):
        return None
    status = status_pb2.Status.FromString(trailer)
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


@async_test
async def test_receiver_refuses_before_reading_while_a_memory_limiter_is_over_and_accepts_after() -> None:
    rx_settings = receiver_settings()
    clock = FakeClock()
    rss = [900 * MIB]
    limiter_settings = make_settings(
        Kind.PROCESSOR, "memory_limiter", frozenset({Signal.TRACES}), clock=clock, metrics=rx_settings.metrics
    )
    sink = SinkConsumer()
    limiter = MemoryLimiter(
        limiter_settings,
        msgspec.convert({"limit_mib": 1000, "spike_limit_mib": 200}, MemoryLimiterConfig),
        {Signal.TRACES: sink},
        rss=lambda: rss[0],
        reclaim=lambda: None,
    )
    await limiter.start()
    body = traces_request(1, 3).SerializeToString()
    # The receiver feeds the sink directly: only admission control can refuse here.
    async with running({Signal.TRACES: sink}, rx_settings) as receiver:
        grpc_reply = await grpc_export(receiver.grpc_port, Signal.TRACES, body)
        assert grpc_reply.code.name == "UNAVAILABLE"
        assert retry_delay(grpc_reply.trailer("grpc-status-details-bin")) == 1.0
        assert "memory limit" in (grpc_reply.details or "")
        http_reply = await http_request(receiver.http_port, "/v1/traces", body)
        assert (http_reply.status, http_reply.headers.get("Retry-After")) == (503, "1")
        assert sink.items() == 0
        refused = {"receiver": "otlp", "transport": "grpc", "otel_signal": "traces", "outcome": "refused"}
        assert sample_value(rx_settings.metrics, "otelpipe_receiver_requests_total", refused) == 1

        rss[0] = 100 * MIB  # memory came back down ...
        clock.advance(1.0)  # ... and the next check sees it
        ok = await grpc_export(receiver.grpc_port, Signal.TRACES, body)
        assert ok.code.name == "OK"
        assert sink.items() == 3
    await limiter.shutdown(time.monotonic())
    async with running({Signal.TRACES: sink}, rx_settings) as receiver:
        rss[0] = 900 * MIB
        clock.advance(1.0)
        after = await grpc_export(receiver.grpc_port, Signal.TRACES, body)
        assert after.code.name == "OK"  # a stopped limiter no longer guards the receivers
