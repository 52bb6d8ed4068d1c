"""The telemetry endpoint over real sockets on 127.0.0.1: metrics exposition, liveness, readiness, lifecycle."""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from pipeline import __version__
from pipeline.errors import StartError
from pipeline.model import Signal
from pipeline.telemetry.health import CheckResult, HealthRegistry, Status
from pipeline.telemetry.metrics import SelfMetrics
from pipeline.telemetry.server import TelemetryServer, parse_endpoint
from tests.support.clock import FakeClock


class Reply(msgspec.Struct):
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


async def get(server: TelemetryServer, path: str, accept: str | None = None) -> Reply:
    headers = {"Accept": accept} if accept else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.port}{path}", headers=headers) as r,
    ):
        return Reply(r.status, r.headers.get("Content-Type", ""), await r.read())


@asynccontextmanager
async def serving(
    metrics: SelfMetrics | None = None,
    health: HealthRegistry | None = None,
    clock: FakeClock | None = None,
    ready: bool = True,
) -> AsyncIterator[TelemetryServer]:
    server = TelemetryServer(
        "127.0.0.1:0", metrics or SelfMetrics(), health or HealthRegistry(), clock=clock or FakeClock()
    )
    await server.start()
    server.set_ready(ready)
    try:
        yield server
    finally:
        await server.shutdown()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await scenario()

    asyncio.run(main())


def test_metrics_exposes_build_info_and_counters() -> None:
    metrics = SelfMetrics()
    metrics.receiver("otlp", "grpc").accepted(Signal.TRACES, 7)

    async def scenario() -> None:
        async with serving(metrics) as server:
            reply = await get(server, "/metrics")
        assert reply.status == 200
        assert reply.content_type.startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
        build = families["otelpipe_build_info"].samples[0]
        assert build.labels["version"] == __version__
        accepted = families["otelpipe_receiver_accepted_spans"]
        assert accepted.type == "counter"
        assert [(s.labels, s.value) for s in accepted.samples if s.name.endswith("_total")] == [
            ({"receiver": "otlp", "transport": "grpc"}, 7.0)
        ]

    run(scenario)


def test_metrics_answers_openmetrics_when_asked() -> None:
    metrics = SelfMetrics()
    metrics.exporter("loki").retried()

    async def scenario() -> None:
        async with serving(metrics) as server:
            reply = await get(server, "/metrics", accept="application/openmetrics-text; version=1.0.0; charset=utf-8")
        assert reply.status == 200
        assert reply.content_type.startswith("application/openmetrics-text")
        families = {f.name: f for f in parse_openmetrics(reply.body.decode())}  # type: ignore[no-untyped-call]
        retries = families["otelpipe_exporter_retries"]
        assert [s.value for s in retries.samples if s.name == "otelpipe_exporter_retries_total"] == [1.0]

    run(scenario)


def test_live_is_alive_even_while_draining() -> None:
    async def scenario() -> None:
        async with serving(ready=False) as server:
            server.set_draining(True)
            reply = await get(server, "/health/live")
        assert reply.status == 200
        assert reply.content_type == "application/json"
        assert reply.json() == {"status": "alive"}

    run(scenario)


def test_ready_healthy_with_version_and_uptime() -> None:
    clock = FakeClock()
    health = HealthRegistry()
    health.register("exporter/loki", lambda: CheckResult(Status.HEALTHY))

    async def scenario() -> None:
        async with serving(health=health, clock=clock) as server:
            clock.advance(12.5)
            reply = await get(server, "/health/ready")
        assert reply.status == 200
        body = reply.json()
        assert body["status"] == "healthy"
        assert body["version"] == __version__
        assert body["uptime_seconds"] == 12.5
        [check] = body["checks"]
        assert (check["name"], check["status"], check["message"]) == ("exporter/loki", "healthy", "")
        assert isinstance(check["latency_ms"], float)

    run(scenario)


@pytest.mark.parametrize(
    ("statuses", "http_status", "overall"),
    [
        ((Status.HEALTHY, Status.DEGRADED), 200, "degraded"),
        ((Status.DEGRADED, Status.UNHEALTHY), 503, "unhealthy"),
    ],
)
def test_ready_reports_the_worst_check(statuses: tuple[Status, ...], http_status: int, overall: str) -> None:
    health = HealthRegistry()
    for i, status in enumerate(statuses):
        health.register(f"check{i}", functools.partial(CheckResult, status, f"is {status.value}"))

    async def scenario() -> None:
        async with serving(health=health) as server:
            reply = await get(server, "/health/ready")
        assert reply.status == http_status
        body = reply.json()
        assert body["status"] == overall
        assert [(c["name"], c["status"], c["message"]) for c in body["checks"]] == [
            (f"check{i}", s.value, f"is {s.value}") for i, s in enumerate(statuses)
        ]

    run(scenario)


def test_check_that_raises_is_unhealthy() -> None:
    health = HealthRegistry()

    def broken() -> CheckResult:
        raise RuntimeError("boom")

    health.register("processor/tail_sampling", broken)

    async def scenario() -> None:
        async with serving(health=health) as server:
            reply = await get(server, "/health/ready")
        assert reply.status == 503
        body = reply.json()
        assert body["status"] == "unhealthy"
        assert body["checks"][0]["name"] == "processor/tail_sampling"
        assert body["checks"][0]["status"] == "unhealthy"
        assert "RuntimeError" in body["checks"][0]["message"]

    run(scenario)


def test_check_returning_garbage_still_answers_503() -> None:
    health = HealthRegistry()
    health.register("bad", lambda: None)  # type: ignore[arg-type,return-value]

    async def scenario() -> None:
        async with serving(health=health) as server:
            reply = await get(server, "/health/ready")
        assert reply.status == 503
        assert reply.json()["status"] == "unhealthy"

    run(scenario)


def test_not_ready_until_the_graph_has_started() -> None:
    health = HealthRegistry()
    health.register("receiver/otlp", lambda: CheckResult(Status.HEALTHY))

    async def scenario() -> None:
        async with serving(health=health, ready=False) as server:
            before = await get(server, "/health/ready")
            server.set_ready(True)
            after = await get(server, "/health/ready")
        assert before.status == 503
        body = before.json()
        assert body["status"] == "unhealthy"
        assert (body["checks"][0]["name"], body["checks"][0]["message"]) == ("service", "starting")
        assert [c["name"] for c in body["checks"]] == ["service", "receiver/otlp"]
        assert after.status == 200
        assert after.json()["status"] == "healthy"

    run(scenario)


def test_draining_is_not_ready() -> None:
    async def scenario() -> None:
        async with serving() as server:
            server.set_draining(True)
            reply = await get(server, "/health/ready")
        assert reply.status == 503
        body = reply.json()
        assert body["status"] == "unhealthy"
        assert body["checks"][0] == {"name": "service", "status": "unhealthy", "latency_ms": 0.0, "message": "draining"}

    run(scenario)


def test_index_lists_the_endpoints() -> None:
    async def scenario() -> None:
        async with serving() as server:
            reply = await get(server, "/")
        assert reply.status == 200
        text = reply.body.decode()
        for path in ("/metrics", "/health/live", "/health/ready"):
            assert path in text

    run(scenario)


def test_port_in_use_is_a_start_error_naming_the_key() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        endpoint = f"127.0.0.1:{taken.getsockname()[1]}"

        async def scenario() -> None:
            server = TelemetryServer(endpoint, SelfMetrics(), HealthRegistry())
            with pytest.raises(StartError) as info:
                await server.start()
            assert "service.telemetry_endpoint" in str(info.value)
            assert endpoint in str(info.value)
            await server.shutdown()  # a failed start leaves nothing to clean up, and says so by not raising

        run(scenario)


def test_bad_endpoint_is_a_start_error_naming_the_key() -> None:
    async def scenario() -> None:
        with pytest.raises(StartError, match=r"service\.telemetry_endpoint"):
            await TelemetryServer("localhost", SelfMetrics(), HealthRegistry()).start()

    run(scenario)


def test_shutdown_is_idempotent_safe_without_start_and_closes_the_port() -> None:
    async def scenario() -> None:
        never_started = TelemetryServer("127.0.0.1:0", SelfMetrics(), HealthRegistry())
        await never_started.shutdown()
        await never_started.shutdown()
        with pytest.raises(RuntimeError):
            _ = never_started.port

        async with serving() as server:
            port = server.port
            assert (await get(server, "/health/live")).status == 200
            await server.shutdown()
        # the context manager shut it down a second time
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(f"http://127.0.0.1:{port}/health/live")

    run(scenario)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("127.0.0.1:8888", ("127.0.0.1", 8888)),
        ("localhost:0", ("localhost", 0)),
        (":8888", ("", 8888)),
        ("[::1]:8888", ("::1", 8888)),
    ],
)
def test_parse_endpoint(endpoint: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["", "localhost", "host:http", "host:65536", "::1:8888", "host:-1"])
def test_parse_endpoint_rejects(endpoint: str) -> None:
    with pytest.raises(ValueError, match=r"port|IPv6"):
        parse_endpoint(endpoint)
