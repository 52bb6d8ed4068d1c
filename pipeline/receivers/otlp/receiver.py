"""The ``otlp`` receiver instance: owns the gRPC and HTTP servers, their drain gate and its health check."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from pipeline.component import CreateSettings
from pipeline.consumer import Consumer
from pipeline.delivery.ledger import ledger_for
from pipeline.errors import StartError
from pipeline.model import Signal
from pipeline.receivers.otlp.common import Ingest
from pipeline.receivers.otlp.config import OtlpReceiverConfig, split_endpoint
from pipeline.receivers.otlp.cors import CorsPolicy
from pipeline.receivers.otlp.drain import DrainGate
from pipeline.receivers.otlp.grpc_server import GrpcServer
from pipeline.receivers.otlp.http_server import HttpServer
from pipeline.telemetry.health import CheckResult, Status
from pipeline.telemetry.ratelimit import RateLimitedLog


class OtlpReceiver:
    """OTLP over gRPC and HTTP for the signals in ``nexts``; acknowledges once ``consume`` returns.

    Shutdown drains: from ``shutdown()`` on, new requests are answered UNAVAILABLE / 503 with a retry hint,
    requests in flight finish (until the deadline), then both servers close.
    """

    def __init__(self, settings: CreateSettings, config: OtlpReceiverConfig, nexts: Mapping[Signal, Consumer]) -> None:
        self._settings = settings
        self._config = config
        self._component = f"{settings.kind.singular} {settings.id}"
        self._gate = DrainGate()
        self._state = "created"
        errors = RateLimitedLog(settings.logger, clock=settings.clock)
        component_id = str(settings.id)
        # Admission control: every memory limiter of the daemon is asked before a request is read.
        admission = ledger_for(settings.metrics).refusal
        self._grpc: GrpcServer | None = None
        self._http: HttpServer | None = None
        if config.grpc_endpoint:
            metrics = settings.metrics.receiver(component_id, "grpc")
            self._grpc = GrpcServer(
                self._component,
                config.grpc_endpoint,
                {s: Ingest(s, c, metrics, errors, admission) for s, c in nexts.items()},
                self._gate,
                config.max_recv_bytes,
                config.include_metadata,
            )
        if config.http_endpoint:
            metrics = settings.metrics.receiver(component_id, "http")
            paths = {
                Signal.TRACES: config.traces_url_path,
                Signal.LOGS: config.logs_url_path,
                Signal.METRICS: config.metrics_url_path,
            }
            host, port = split_endpoint(config.http_endpoint)
            self._http = HttpServer(
                self._component,
                host,
                port,
                {paths[s]: Ingest(s, c, metrics, errors, admission) for s, c in nexts.items()},
                frozenset(p for s, p in paths.items() if s not in nexts),
                self._gate,
                config.max_recv_bytes,
                config.include_metadata,
                CorsPolicy(config.cors_allowed_origins, config.cors_allowed_headers),
                settings.logger,
            )
        self._health_name = f"{settings.kind.singular}:{settings.id}"
        settings.health.register(self._health_name, self._health)

    @property
    def grpc_port(self) -> int | None:
        """The bound gRPC port once started (useful with port 0), else None."""
        return self._grpc.port if self._grpc is not None else None

    @property
    def http_port(self) -> int | None:
        return self._http.port if self._http is not None else None

    @property
    def draining(self) -> bool:
        return self._gate.draining

    async def start(self) -> None:
        if self._state != "created":
            raise StartError(f"{self._component}: start() called twice or after shutdown()")
        self._state = "starting"
        try:
            if self._grpc is not None:
                await self._grpc.start()
            if self._http is not None:
                await self._http.start()
        except BaseException:
            await self._close(0.0)
            self._state = "stopped"
            raise
        self._state = "running"
        listening = {}
        if self._grpc is not None:
            listening["grpc"] = self._bound(self._config.grpc_endpoint, self.grpc_port)
        if self._http is not None:
            listening["http"] = self._bound(self._config.http_endpoint, self.http_port)
        self._settings.logger.info(
            "%s listening on %s",
            self._component,
            ", ".join(f"{k} {v}" for k, v in listening.items()),
            extra={"fields": {"component": str(self._settings.id), **listening}},
        )

    async def shutdown(self, deadline: float) -> None:
        if self._state in ("stopping", "stopped"):
            return  # idempotent: the first call does (or did) the work
        was_running = self._state == "running"
        self._state = "stopping"
        clock = self._settings.clock
        drained = await self._gate.drain(deadline - clock.monotonic())
        stuck = self._gate.inflight  # still running at the deadline: the close below cancels them
        await self._close(deadline - clock.monotonic())
        self._state = "stopped"
        if was_running:
            left = "" if drained else f" ({stuck} requests cancelled at the deadline)"
            self._settings.logger.info("%s stopped%s", self._component, left)

    async def _close(self, grace_s: float) -> None:
        stops = [server.stop(grace_s) for server in (self._grpc, self._http) if server is not None]
        await asyncio.gather(*stops)

    def _health(self) -> CheckResult:
        if self._state == "running":
            return CheckResult(Status.HEALTHY)
        return CheckResult(Status.UNHEALTHY, "draining" if self._state == "stopping" else self._state)

    @staticmethod
    def _bound(endpoint: str, port: int | None) -> str:
        host, _ = split_endpoint(endpoint)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
