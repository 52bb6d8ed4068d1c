"""The otlphttp exporter against the fake HTTP backend on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
from google.rpc import status_pb2

from pipeline.errors import ConfigError, Refused
from pipeline.exporters.otlphttp import OtlpHttpConfig, OtlpHttpExporter, status_message
from pipeline.model import Signal
from tests.exporters.backends import HttpBackend, Reply
from tests.exporters.support import (
    FakeSleep,
    async_test,
    batch_of,
    dropped,
    exporter_settings,
    metric,
    sent,
    spans,
    wait_for,
)
from tests.support.clock import FakeClock


class Rig:
    def __init__(self, endpoint: str, signals: frozenset[Signal] = frozenset(Signal), **cfg: Any) -> None:
        self.clock = FakeClock()
        self.sleep = FakeSleep(self.clock)
        self.settings = exporter_settings("otlphttp", clock=self.clock, signals=signals)
        retry = {"initial_interval_ms": 100, "randomization_factor": 0.0, **cfg.pop("retry_on_failure", {})}
        values = {"endpoint": endpoint, "retry_on_failure": retry, **cfg}
        self.cfg = msgspec.convert(values, OtlpHttpConfig)
        self.exporter = OtlpHttpExporter(self.settings, self.cfg, sleep=self.sleep)

    async def consume(self, signal: Signal = Signal.TRACES) -> Any:
        batch = batch_of(signal)
        await self.exporter.consumer(signal).consume(batch)
        return batch


@asynccontextmanager
async def running(**cfg: Any) -> AsyncIterator[tuple[HttpBackend, Rig]]:
    backend = HttpBackend()
    await backend.start()
    rig = Rig(cfg.pop("endpoint", backend.endpoint), **cfg)
    await rig.exporter.start()
    try:
        yield backend, rig
    finally:
        await rig.exporter.shutdown(rig.clock.monotonic() + 10)
        await backend.stop()


@pytest.mark.parametrize("compression", ["gzip", "none"])
@async_test
async def test_backend_receives_the_batch_bytes_unchanged(compression: str) -> None:
    async with running(compression=compression, headers={"X-Scope-OrgID": "acme"}) as (backend, rig):
        batches = {s: await rig.consume(s) for s in Signal}
        await backend.wait_requests(3)
        by_signal = {r.signal: r for r in backend.received}
        for signal, batch in batches.items():
            got = by_signal[signal]
            assert got.path == f"/v1/{signal.value}"
            assert got.body == batch.serialize()
            assert got.headers["content-type"] == "application/x-protobuf"
            assert got.headers["x-scope-orgid"] == "acme"
            if compression == "gzip":
                assert got.headers["content-encoding"] == "gzip"
                assert gzip.decompress(got.raw_body) == batch.serialize()
            else:
                assert "content-encoding" not in got.headers
                assert got.raw_body == batch.serialize()
        expected = {Signal.TRACES: 6, Signal.LOGS: 4, Signal.METRICS: 5}
        await wait_for(lambda: all(sent(rig.settings, s) == n for s, n in expected.items()))


@async_test
async def test_per_signal_endpoints_override_the_base() -> None:
    backend = HttpBackend()
    await backend.start()
    try:
        rig = Rig("", frozenset({Signal.LOGS}), logs_endpoint=f"{backend.endpoint}/otlp/custom/logs")
        await rig.exporter.start()
        await rig.consume(Signal.LOGS)
        await backend.wait_requests(1)
        assert backend.received[0].path == "/otlp/custom/logs"
        await rig.exporter.shutdown(rig.clock.monotonic() + 5)
    finally:
        await backend.stop()


def test_a_signal_without_url_is_a_config_error_naming_the_key() -> None:
    cfg = msgspec.convert({"logs_endpoint": "http://loki:3100/otlp/v1/logs"}, OtlpHttpConfig)
    with pytest.raises(ConfigError) as err:
        OtlpHttpExporter(exporter_settings("otlphttp", signals=frozenset({Signal.LOGS, Signal.TRACES})), cfg)
    assert err.value.errors == (
        "exporters.otlphttp.endpoint: required for the traces pipeline (or set traces_endpoint)",
    )


@pytest.mark.parametrize("status", [429, 502, 503, 504])
@async_test
async def test_retryable_statuses_are_retried(status: int) -> None:
    async with running() as (backend, rig):
        backend.script(Reply.fail_http(status, "try later"))
        batch = await rig.consume()
        await wait_for(lambda: sent(rig.settings) == 6)
        assert [r.body for r in backend.received] == [batch.serialize()] * 2
        assert rig.sleep.calls == [0.1]


@async_test
async def test_retry_after_seconds_is_a_floor() -> None:
    async with running() as (backend, rig):
        backend.script(Reply.fail_http(429, "slow down", retry_delay_s=12))
        await rig.consume()
        await wait_for(lambda: sent(rig.settings) == 6)
        assert rig.sleep.calls == [12.0]


@async_test
async def test_retry_after_http_date_is_read_against_the_clock() -> None:
    async with running() as (backend, rig):
        # FakeClock's wall time is 1_700_000_000 s = Tue, 14 Nov 2023 22:13:20 GMT.
        backend.script(Reply.fail_http(503, retry_after="Tue, 14 Nov 2023 22:13:50 GMT"))
        await rig.consume()
        await wait_for(lambda: sent(rig.settings) == 6)
        assert rig.sleep.calls == [30.0]


@pytest.mark.parametrize("status", [400, 401, 404, 413, 500])
@async_test
async def test_other_statuses_are_permanent_and_log_the_status_message(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with running() as (backend, rig):
        backend.script(Reply.fail_http(status, "span 3 has an invalid trace id"))
        with caplog.at_level(logging.ERROR):
            await rig.consume()
            await wait_for(lambda: dropped(rig.settings, "permanent_error") == 6)
        assert len(backend.received) == 1
        assert rig.sleep.calls == []
        errors = [r.fields["error"] for r in caplog.records if r.levelno == logging.ERROR]  # type: ignore[attr-defined]
        assert errors == [f"HTTP {status} from {backend.endpoint}/v1/traces: span 3 has an invalid trace id"]


@async_test
async def test_partial_success_is_counted() -> None:
    async with running() as (backend, rig):
        backend.script(Reply.partial(1, "1 span too old"))
        await rig.consume()
        await wait_for(lambda: dropped(rig.settings, "rejected_by_backend") == 1)
        assert sent(rig.settings) == 5
        assert len(backend.received) == 1


@async_test
async def test_connection_refused_is_retried_until_max_elapsed() -> None:
    rig = Rig("http://127.0.0.1:1", retry_on_failure={"multiplier": 1.0, "max_elapsed_ms": 250})
    await rig.exporter.start()
    await rig.consume()
    await wait_for(lambda: dropped(rig.settings, "retries_exhausted") == 6)
    assert metric(rig.settings, "otelpipe_exporter_send_failed_spans_total") == 18  # at 0, 0.1, 0.2 s
    await rig.exporter.shutdown(rig.clock.monotonic() + 5)


@async_test
async def test_queue_full_refuses_while_the_backend_hangs() -> None:
    release = asyncio.Event()
    queue = {"queue_size": 1, "num_consumers": 1}
    async with running(sending_queue=queue, timeout_ms=600_000) as (backend, rig):
        backend.script(Reply.hanging(release))
        await rig.consume()
        await backend.wait_requests(1)
        await rig.consume()
        with pytest.raises(Refused):
            await rig.exporter.consumer(Signal.TRACES).consume(spans(1, 2))
        assert metric(rig.settings, "otelpipe_exporter_enqueue_failed_spans_total") == 2
        release.set()
        await wait_for(lambda: sent(rig.settings) == 12)


def test_status_message_reads_protobuf_json_and_text() -> None:
    assert status_message(status_pb2.Status(message="bad").SerializeToString(), "application/x-protobuf") == "bad"
    assert status_message(b'{"code": 3, "message": "bad json"}', "application/json") == "bad json"
    assert status_message(b"plain failure", "text/plain") == "plain failure"
    assert status_message(b"", "text/plain") == ""


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({}, "endpoint"),
        ({"endpoint": "otel:4318"}, "endpoint"),
        ({"endpoint": "ftp://otel:4318"}, "endpoint"),
        ({"endpoint": "http://otel:4318", "traces_endpoint": "otel/v1/traces"}, "traces_endpoint"),
        ({"endpoint": "http://otel:4318", "compression": "zstd"}, "compression"),
        ({"endpoint": "http://otel:4318", "headers": {"Content-Type": "text/plain"}}, "headers.Content-Type"),
        ({"endpoint": "http://otel:4318", "headers": {"bad header": "x"}}, "headers.bad header"),
    ],
)
def test_config_errors_name_the_key(values: dict[str, Any], key: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=key):
        msgspec.convert(values, OtlpHttpConfig)


def test_urls_append_the_signal_path() -> None:
    cfg = msgspec.convert({"endpoint": "http://otel:4318/", "metrics_endpoint": "http://prom:9090/x"}, OtlpHttpConfig)
    assert cfg.url(Signal.TRACES) == "http://otel:4318/v1/traces"
    assert cfg.url(Signal.LOGS) == "http://otel:4318/v1/logs"
    assert cfg.url(Signal.METRICS) == "http://prom:9090/x"
