"""Process lifecycle: build, start, serve, reload on SIGHUP, drain on SIGTERM/SIGINT.

    run() -> configure logging -> build graph (no port bound yet) -> telemetry server -> graph.start()
          -> ready -> wait for a signal:
             SIGTERM / SIGINT: not ready (draining), graph.shutdown(deadline) upstream-first, exit 0
             SIGHUP: re-read and validate; invalid -> keep running and log every error;
                     valid and changed -> start the new graph (unchanged receivers and exporters are adopted:
                     their ports keep serving, their queues keep their data), then drain the old graph into
                     its exporters (pipeline/graph.py ``replace``)

The service owns its tasks; components own theirs and stop them in shutdown().
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from config.loader import load_config
from config.model import Config
from pipeline import __version__, graph
from pipeline.clock import SYSTEM_CLOCK, Clock
from pipeline.component import Registry
from pipeline.delivery.metrics import delivery_metrics
from pipeline.errors import ConfigError, StartError
from pipeline.telemetry.health import HealthRegistry
from pipeline.telemetry.logging import configure_logging
from pipeline.telemetry.metrics import SelfMetrics
from pipeline.telemetry.process import tune_gc, tune_malloc
from pipeline.telemetry.server import TelemetryServer

log = logging.getLogger("otelpipe.service")

ConfigSource = Callable[[], Config]


class Service:
    def __init__(
        self,
        config: Config,
        registry: Registry,
        reload_config: ConfigSource | None = None,
        clock: Clock = SYSTEM_CLOCK,
        metrics: SelfMetrics | None = None,
    ) -> None:
        self.config = config
        self._registry = registry
        self._reload_config = reload_config
        self._clock = clock
        self.metrics = metrics if metrics is not None else SelfMetrics()
        self.health = HealthRegistry()
        self.graph: graph.Graph | None = None
        self.telemetry: TelemetryServer | None = None
        self._signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
        self.started = asyncio.Event()

    def request(self, sig: signal.Signals) -> None:
        """Ask the service to act as on a signal (used by the signal handlers and by tests)."""
        self._signals.put_nowait(sig)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        try:
            self.graph = graph.build(self.config, self._registry, self.metrics, self.health, self._clock)
        except ConfigError as exc:
            for line in exc.errors:
                log.error("invalid configuration: %s", line)
            return 1
        endpoint = self.config.service.telemetry_endpoint
        try:
            if endpoint:
                self.telemetry = TelemetryServer(endpoint, self.metrics, self.health, self._clock, __version__)
                await self.telemetry.start()
            await self.graph.start()
        except StartError as exc:
            log.error("could not start: %s", exc)
            await self._stop_all()
            return 1
        if self.telemetry is not None:
            self.telemetry.set_ready(True)
        log.info("otelpipe %s started with %d pipelines", __version__, len(self.config.pipelines))
        self.started.set()
        while True:
            sig = await self._signals.get()
            if sig is signal.SIGHUP:
                await self._reload()
                continue
            log.info("received %s: draining", sig.name)
            await self._stop_all()
            log.info("otelpipe stopped")
            return 0

    async def _stop_all(self) -> None:
        if self.telemetry is not None:
            self.telemetry.set_draining(True)
        deadline = time.monotonic() + self.config.service.shutdown_timeout_ms / 1000.0
        if self.graph is not None:
            await self.graph.shutdown(deadline)
        if self.telemetry is not None:
            await self.telemetry.shutdown()

    async def _reload(self) -> None:
        if self._reload_config is None:
            log.warning("SIGHUP: no configuration source to reload from")
            return
        reloads = delivery_metrics(self.metrics).reloads
        try:
            new = self._reload_config()
            if new == self.config:
                log.info("SIGHUP: configuration unchanged")
                reloads.labels("unchanged").inc()
                return
            new_graph = graph.build(new, self._registry, self.metrics, self.health, self._clock, previous=self.graph)
        except ConfigError as exc:
            for line in exc.errors:
                log.error("SIGHUP: invalid configuration, keeping the running one: %s", line)
            reloads.labels("invalid").inc()
            return
        old, old_config = self.graph, self.config
        assert old is not None  # run() built it before signals are read
        kept = sorted(str(k) for k in new_graph.adopted)
        log.info(
            "SIGHUP: configuration changed; replacing the pipeline graph (%d components keep running)",
            len(kept),
            extra={"fields": {"kept": kept}},
        )
        deadline = time.monotonic() + old_config.service.shutdown_timeout_ms / 1000.0
        try:
            failed = await graph.replace(old, new_graph, deadline)
        except StartError as exc:
            log.error("SIGHUP: the new configuration could not start (%s); the running one stays", exc)
            reloads.labels("failed").inc()
            return
        self.graph, self.config = new_graph, new
        configure_logging(new.service.log_level.value, new.service.log_format.value)
        if failed is None:
            reloads.labels("applied").inc()
            log.info("SIGHUP: new configuration running")
            return
        # A receiver of the new configuration could not bind (its port is taken by someone else): go back to
        # the previous configuration the same way, which restarts the previous receivers.
        log.error("SIGHUP: %s; restoring the previous configuration", failed)
        reloads.labels("failed").inc()
        await self._restore(old_config)

    async def _restore(self, config: Config) -> None:
        current = self.graph
        assert current is not None
        try:
            restored = graph.build(config, self._registry, self.metrics, self.health, self._clock, previous=current)
            deadline = time.monotonic() + config.service.shutdown_timeout_ms / 1000.0
            failed = await graph.replace(current, restored, deadline)
        except (ConfigError, StartError) as exc:
            log.error("SIGHUP: the previous configuration could not be restored either (%s); running as is", exc)
            return
        self.graph, self.config = restored, config
        configure_logging(config.service.log_level.value, config.service.log_format.value)
        if failed is not None:
            log.error("SIGHUP: previous configuration restored, but %s", failed)


def run_service(config_paths: Sequence[Path], registry: Registry, config: Config) -> int:
    """Run the daemon in this process, on uvloop when it is installed."""
    configure_logging(config.service.log_level.value, config.service.log_format.value)
    for warning in config.warnings:
        log.warning("configuration: %s", warning)
    if config.service.tune_malloc and tune_malloc():
        log.debug("malloc thresholds raised (mmap 64 MiB, trim 256 MiB)")
    if config.service.tune_gc:
        tune_gc()

    def reload() -> Config:
        return load_config(config_paths, registry)

    service = Service(config, registry, reload_config=reload)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, service.request, sig)
        return await service.run()

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
