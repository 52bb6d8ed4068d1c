"""The otlp (gRPC) exporter against the fake gRPC backend on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import msgspec
import pytest

from pipeline.errors import PermanentExportError, RetryableExportError, StartError
from pipeline.exporters.otlp import FACTORY, OtlpConfig, OtlpExporter, classify
from pipeline.model import Signal
from tests.exporters.backends import GrpcBackend, Reply
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
    def __init__(self, backend: GrpcBackend, **cfg: Any) -> None:
        self.clock = FakeClock()
        self.sleep = FakeSleep(self.clock)
        self.settings = exporter_settings("otlp", clock=self.clock)
        retry = {"initial_interval_ms": 100, "randomization_factor": 0.0, **cfg.pop("retry_on_failure", {})}
        values = {"endpoint": backend.endpoint, "insecure": True, "retry_on_failure": retry, **cfg}
        self.cfg = msgspec.convert(values, OtlpConfig)
        self.exporter = OtlpExporter(self.settings, self.cfg, sleep=self.sleep)

    async def consume(self, signal: Signal = Signal.TRACES) -> Any:
        batch = batch_of(signal)
        await self.exporter.consumer(signal).consume(batch)
        return batch


@asynccontextmanager
async def running(**cfg: Any) -> AsyncIterator[tuple[GrpcBackend, Rig]]:
    backend = GrpcBackend()
    await backend.start()
    rig = Rig(backend, **cfg)
    await rig.exporter.start()
    try:
        yield backend, rig
    finally:
        await rig.exporter.shutdown(rig.clock.monotonic() + 10)
        await backend.stop()


@pytest.mark.parametrize("compression", ["gzip", "none"])
@async_test
async def test_backend_receives_the_batch_bytes_unchanged(compression: str) -> None:
    async with running(compression=compression, headers={"X-Tenant": "acme"}) as (backend, rig):
        batches = {s: await rig.consume(s) for s in Signal}
        await backend.wait_requests(3)
        by_signal = {r.signal: r for r in backend.received}
        for signal, batch in batches.items():
            assert by_signal[signal].body == batch.serialize()
            assert by_signal[signal].headers["x-tenant"] == "acme"
            assert by_signal[signal].headers["user-agent"].startswith("otelpipe/")
        expected = {Signal.TRACES: 6, Signal.LOGS: 4, Signal.METRICS: 5}
        await wait_for(lambda: all(sent(rig.settings, s) == n for s, n in expected.items()))


@async_test
async def test_unavailable_is_retried_then_succeeds() -> None:
    async with running() as (backend, rig):
        backend.script(Reply.fail_grpc(grpc.StatusCode.UNAVAILABLE))
        batch = await rig.consume()
        await wait_for(lambda: sent(rig.settings) == 6)
        assert [r.body for r in backend.received] == [batch.serialize()] * 2
        assert rig.sleep.calls == [0.1]
        assert metric(rig.settings, "otelpipe_exporter_send_failed_spans_total") == 6


@async_test
async def test_resource_exhausted_with_retry_info_is_retried_after_the_delay() -> None:
    async with running() as (backend, rig):
        backend.script(Reply.fail_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", retry_delay_s=7.5))
        await rig.consume()
        await wait_for(lambda: sent(rig.settings) == 6)
        assert len(backend.received) == 2
        assert rig.sleep.calls == [7.5]  # RetryInfo beats the 0.1 s backoff


@async_test
async def test_resource_exhausted_without_retry_info_is_permanent() -> None:
    async with running() as (backend, rig):
        backend.script(Reply.fail_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "request too large"))
        await rig.consume()
        await wait_for(lambda: dropped(rig.settings, "permanent_error") == 6)
        assert len(backend.received) == 1
        assert rig.sleep.calls == []


@async_test
async def test_invalid_argument_is_dropped_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    async with running() as (backend, rig):
        backend.script(Reply.fail_grpc(grpc.StatusCode.INVALID_ARGUMENT, "bad trace id"))
        with caplog.at_level(logging.ERROR):
            await rig.consume()
            await wait_for(lambda: dropped(rig.settings, "permanent_error") == 6)
        assert len(backend.received) == 1
        assert sent(rig.settings) == 0
        assert any("bad trace id" in r.fields["error"] for r in caplog.records)  # type: ignore[attr-defined]


@async_test
async def test_partial_success_is_counted_and_not_retried() -> None:
    async with running() as (backend, rig):
        backend.script(Reply.partial(2, "2 spans have no trace id"))
        await rig.consume()
        await wait_for(lambda: dropped(rig.settings, "rejected_by_backend") == 2)
        assert sent(rig.settings) == 4
        assert len(backend.received) == 1


@async_test
async def test_retries_until_max_elapsed_then_drops() -> None:
    async with running(retry_on_failure={"multiplier": 1.0, "max_elapsed_ms": 350}) as (backend, rig):
        backend.script(then=Reply.fail_grpc(grpc.StatusCode.UNAVAILABLE))
        await rig.consume()
        await wait_for(lambda: dropped(rig.settings, "retries_exhausted") == 6)
        assert len(backend.received) == 4  # at 0, 0.1, 0.2, 0.3 s; the next would pass 0.35 s


@async_test
async def test_unreachable_backend_is_retryable() -> None:
    clock = FakeClock()
    settings = exporter_settings("otlp", clock=clock)
    cfg = msgspec.convert(
        {"endpoint": "127.0.0.1:1", "insecure": True, "retry_on_failure": {"enabled": False}}, OtlpConfig
    )
    exporter = OtlpExporter(settings, cfg, sleep=FakeSleep(clock))
    await exporter.start()
    await exporter.consumer(Signal.TRACES).consume(spans(1, 2))
    await wait_for(lambda: dropped(settings, "retries_exhausted") == 2)  # UNAVAILABLE: retryable, retries off
    await exporter.shutdown(clock.monotonic() + 5)


@async_test
async def test_shutdown_gives_up_on_a_hung_backend_at_the_deadline() -> None:
    release = asyncio.Event()
    async with running(sending_queue={"num_consumers": 1}, timeout_ms=600_000) as (backend, rig):
        backend.script(Reply.hanging(release))
        await rig.consume()
        await rig.consume()
        await backend.wait_requests(1)
        await rig.exporter.shutdown(rig.clock.monotonic())  # deadline now: in flight and queued are dropped
        assert dropped(rig.settings, "shutdown") == 12
        release.set()


def test_classification_table() -> None:
    retryable = ["UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "DATA_LOSS"]
    for name in retryable:
        assert isinstance(classify(grpc.StatusCode[name], "x", ()), RetryableExportError), name
    for name in ["INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED", "UNIMPLEMENTED", "INTERNAL"]:
        assert isinstance(classify(grpc.StatusCode[name], "x", ()), PermanentExportError), name
    details = Reply.fail_grpc(grpc.StatusCode.UNAVAILABLE, retry_delay_s=2.5).status(14).SerializeToString()
    exc = classify(grpc.StatusCode.UNAVAILABLE, "x", [("grpc-status-details-bin", details)])
    assert isinstance(exc, RetryableExportError)
    assert exc.retry_after_s == 2.5


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({}, "endpoint"),
        ({"endpoint": "http://jaeger:4317"}, "endpoint"),
        ({"endpoint": "jaeger"}, "endpoint"),
        ({"endpoint": "jaeger:99999"}, "endpoint"),
        ({"endpoint": "jaeger:4317", "compression": "snappy"}, "compression"),
        ({"endpoint": "jaeger:4317", "headers": {"bad key": "v"}}, "headers.bad key"),
        ({"endpoint": "jaeger:4317", "headers": {"grpc-timeout": "1"}}, "headers.grpc-timeout"),
        ({"endpoint": "jaeger:4317", "insecure": True, "ca_file": "/ca.pem"}, "ca_file"),
        ({"endpoint": "jaeger:4317", "timeout": 5}, "timeout"),
        ({"endpoint": "jaeger:4317", "sending_queue": {"type": "disk"}}, "disk"),
    ],
)
def test_config_errors_name_the_key(values: dict[str, Any], key: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=key):
        msgspec.convert(values, OtlpConfig)


def test_factory_defaults() -> None:
    cfg = msgspec.convert({"endpoint": "jaeger:4317"}, FACTORY.config_type)
    assert isinstance(cfg, OtlpConfig)
    assert (cfg.insecure, cfg.compression, cfg.timeout_ms) == (False, "gzip", 5000)
    assert (cfg.sending_queue.queue_size, cfg.sending_queue.num_consumers) == (1000, 10)
    assert cfg.retry_on_failure.max_elapsed_ms == 300_000
    assert FACTORY.signals == frozenset(Signal)


def self_signed(tmp_path: Path) -> tuple[bytes, bytes, Path]:
    """A certificate for 127.0.0.1 made with the openssl CLI: (key PEM, cert PEM, cert path)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key.read_bytes(), cert.read_bytes(), cert


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make a certificate")
@async_test
async def test_tls_with_ca_file_and_untrusted_without(tmp_path: Path) -> None:
    key, cert, cert_path = await asyncio.to_thread(self_signed, tmp_path)
    backend = GrpcBackend(tls=(key, cert))
    await backend.start()
    try:
        trusted = Rig(backend, insecure=False, ca_file=str(cert_path))
        await trusted.exporter.start()
        batch = await trusted.consume()
        await backend.wait_requests(1)
        assert backend.received[0].body == batch.serialize()
        await trusted.exporter.shutdown(trusted.clock.monotonic() + 5)

        # The system roots do not know this certificate: the handshake fails, as UNAVAILABLE (retryable).
        untrusted = Rig(backend, insecure=False, retry_on_failure={"enabled": False})
        await untrusted.exporter.start()
        await untrusted.consume()
        await wait_for(lambda: dropped(untrusted.settings, "retries_exhausted") == 6)
        assert len(backend.received) == 1
        await untrusted.exporter.shutdown(untrusted.clock.monotonic() + 5)
    finally:
        await backend.stop()


@async_test
async def test_unreadable_ca_file_fails_start(tmp_path: Path) -> None:
    backend = GrpcBackend()
    backend.endpoint = "127.0.0.1:4317"  # never contacted
    rig = Rig(backend, insecure=False, ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(StartError, match="ca_file"):
        await rig.exporter.start()
    await rig.exporter.shutdown(rig.clock.monotonic() + 1)
