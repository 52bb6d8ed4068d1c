"""The daemon's own HTTP endpoint: ``/metrics``, ``/health/live``, ``/health/ready`` (``service.telemetry_endpoint``).

Readiness is what load balancers act on, so it says "unhealthy" (503) until the pipeline graph has started and
again from the moment the daemon starts draining; liveness only says the process still answers. Every handler
runs inline on the event loop: health checks are cheap by contract and a self-metrics scrape renders a few
hundred series, far cheaper than a hop to a thread.
"""

from __future__ import annotations

import logging

import msgspec
from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest

from pipeline import __version__
from pipeline.clock import SYSTEM_CLOCK, Clock
from pipeline.errors import StartError
from pipeline.telemetry.health import CheckReport, HealthRegistry, Status
from pipeline.telemetry.metrics import SelfMetrics
from pipeline.telemetry.ratelimit import RateLimitedLog

_KEY = "service.telemetry_endpoint"
# Handlers here answer in microseconds; a scrape caught mid-flight at shutdown needs no more than this.
_SHUTDOWN_GRACE_S = 1.0
_JSON = "application/json"
# Health answers describe this instant; a cached one would hide a drain from the load balancer.
_NO_STORE = {"Cache-Control": "no-store"}

_log = logging.getLogger("otelpipe.telemetry.server")


class _CheckOut(msgspec.Struct):
    name: str
    status: str
    latency_ms: float
    message: str


class _Ready(msgspec.Struct):
    status: str
    version: str
    uptime_seconds: float
    checks: list[_CheckOut]


class _Live(msgspec.Struct):
    status: str


_encoder = msgspec.json.Encoder()
_LIVE_BODY = _encoder.encode(_Live("alive"))


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6; an empty host means every interface) into its parts.

    Raises ValueError with a message fit to follow the config key.
    """
    host, sep, port_text = endpoint.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{endpoint!r} is not host:port with a port in 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{endpoint!r}: write an IPv6 host in brackets, as in [::1]:8888")
    return host, int(port_text)


class TelemetryServer:
    def __init__(
        self,
        endpoint: str,
        metrics: SelfMetrics,
        health: HealthRegistry,
        clock: Clock = SYSTEM_CLOCK,
        version: str = __version__,
    ) -> None:
        self._endpoint = endpoint
        self._metrics = metrics
        self._health = health
        self._clock = clock
        self._version = version
        # Uptime counts from when the daemon built its telemetry, which is the start of the process for operators.
        self._started_at = clock.monotonic()
        self._ready = False
        self._draining = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        # Probes poll every few seconds; a broken check must not write a log line each time.
        self._rl_log = RateLimitedLog(_log, interval_s=60.0, clock=clock)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0). With a host that resolves to several addresses, the first one's."""
        if self._port is None:
            raise RuntimeError("TelemetryServer is not started")
        return self._port

    def set_ready(self, ready: bool) -> None:
        """The service calls this once the whole pipeline graph has started."""
        self._ready = ready

    def set_draining(self, draining: bool) -> None:
        """The service calls this on SIGTERM, before draining buffers, so load balancers stop sending."""
        self._draining = draining

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("TelemetryServer already started")
        try:
            host, port = parse_endpoint(self._endpoint)
        except ValueError as exc:
            raise StartError(f"{_KEY}: {exc}") from exc
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=_SHUTDOWN_GRACE_S)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host or None, port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise StartError(f"{_KEY}: cannot listen on {self._endpoint!r}: {exc.strerror or exc}") from exc
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]
        _log.info("telemetry endpoint listening", extra={"fields": {"endpoint": self._endpoint, "port": self._port}})

    async def shutdown(self, deadline: float | None = None) -> None:
        """Idempotent and safe without start. ``deadline`` is accepted for the component lifecycle protocol;
        the fixed short grace above always fits inside any real drain deadline."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/health/live", self._live)
        app.router.add_get("/health/ready", self._ready_handler)
        return app

    async def _index(self, request: web.Request) -> web.Response:
        text = (
            f"otelpipe {self._version}\n\n"
            "/metrics       self-metrics (Prometheus text; OpenMetrics when the Accept header asks)\n"
            "/health/live   200 while the process serves\n"
            "/health/ready  200 healthy or degraded, 503 unhealthy, starting or draining; JSON with every check\n"
        )
        return web.Response(text=text)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "application/openmetrics-text" in accept:
            encoder, content_type = choose_encoder(accept)
            body = encoder(self._metrics.registry)
        else:
            body, content_type = generate_latest(self._metrics.registry), CONTENT_TYPE_LATEST
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _live(self, request: web.Request) -> web.Response:
        return web.Response(body=_LIVE_BODY, content_type=_JSON, headers=_NO_STORE)

    async def _ready_handler(self, request: web.Request) -> web.Response:
        status, reports = self._run_checks()
        if self._draining or not self._ready:
            state = "draining" if self._draining else "starting"
            reports.insert(0, CheckReport("service", Status.UNHEALTHY, 0.0, state))
            status = Status.UNHEALTHY
        body = _Ready(
            status=status.value,
            version=self._version,
            uptime_seconds=round(self._clock.monotonic() - self._started_at, 3),
            checks=[_CheckOut(r.name, r.status.value, r.latency_ms, r.message) for r in reports],
        )
        http_status = 503 if status is Status.UNHEALTHY else 200
        return web.Response(status=http_status, body=_encoder.encode(body), content_type=_JSON, headers=_NO_STORE)

    def _run_checks(self) -> tuple[Status, list[CheckReport]]:
        # The registry already contains failing checks; this guards the endpoint against a check that returns
        # something other than a CheckResult, so readiness degrades to 503 rather than to a 500 page.
        try:
            return self._health.run()
        except Exception as exc:
            self._rl_log.log(logging.ERROR, "health", "health checks failed", error=f"{type(exc).__name__}: {exc}")
            return Status.UNHEALTHY, [CheckReport("health", Status.UNHEALTHY, 0.0, f"{type(exc).__name__}: {exc}")]
