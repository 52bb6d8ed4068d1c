"""The rig the fault scenarios (bench/faults.py) run on: a fake backend, an SDK-like client, the daemon process.

The backend is OTLP/HTTP on its own event-loop thread; a scenario switches it between healthy, down, 5xx and
429. The client is an OTLP/gRPC thread that retries refusals like an SDK and gives up after CLIENT_GIVE_UP_S; it
tallies every span id it sent and got acknowledged, so the scenario can account by span id. ``DaemonProc`` runs
``otelpipe run`` with a configuration written from an exporter section (``exporter``), reads its /metrics
(``drops``) and signals it; ``Peak`` samples its RSS. Kept apart from the scenarios so that each scenario reads as
a timeline of faults over these parts.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gen import trace_requests
from bench.procstat import rss_bytes
from bench.receive import free_port, wait_ready

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_REQUEST = 100
CLIENT_GIVE_UP_S = 10.0  # the Python SDK's export timeout


# --------------------------------------------------------------------------------------------- backend


class Backend:
    """An OTLP/HTTP backend on its own event-loop thread whose behaviour the scenario switches.

    Modes: "ok" (200), "down" (nothing listens: connection refused), "5xx" (502/503/504 in turn),
    "429" (429 with Retry-After: 1). Span ids of requests answered 200 are recorded.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.mode = "ok"
        self.stored: list[bytes] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-backend", daemon=True)
        self._thread.start()
        self._runner: Any = None
        self._statuses = [502, 503, 504]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def set_mode(self, mode: str) -> None:
        if mode == "down" and self._runner is not None:
            self._call(self._stop())
        elif mode != "down" and self._runner is None:
            self._call(self._start())
        self.mode = mode

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
        self._runner = runner

    async def _stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        body = await request.read()
        with self._lock:
            self.requests += 1
            mode = self.mode
        if mode == "5xx":
            status = self._statuses[self.requests % 3]
            return web.Response(status=status, content_type="application/x-protobuf")
        if mode == "429":
            return web.Response(status=429, headers={"Retry-After": "1"}, content_type="application/x-protobuf")
        if request.headers.get("Content-Encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        message = ExportTraceServiceRequest.FromString(body)
        ids = [s.span_id for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]
        with self._lock:
            self.stored.extend(ids)
        return web.Response(status=200, body=b"", content_type="application/x-protobuf")

    def snapshot(self) -> list[bytes]:
        with self._lock:
            return list(self.stored)

    def close(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


# --------------------------------------------------------------------------------------------- client


@dataclass
class ClientTally:
    sent: int = 0
    acknowledged: int = 0
    refusals: int = 0  # retryable answers received (each retried)
    gave_up: int = 0  # spans of requests refused for CLIENT_GIVE_UP_S
    other_errors: dict[str, int] = field(default_factory=dict)
    acked_ids: set[bytes] = field(default_factory=set)


class Load:
    """An OTLP/gRPC client thread sending ``rate`` 100-span requests per second, retrying like an SDK."""

    def __init__(self, target: Callable[[], str], rate: float, seed: int) -> None:
        self._target = target
        self._rate = rate
        self._payloads = iter(_requests(seed))
        self.tally = ClientTally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> ClientTally:
        self._stop.set()
        self._thread.join(timeout=60)
        return self.tally

    def _run(self) -> None:
        import grpc

        period = 1.0 / self._rate
        next_at = time.monotonic()
        channel_target = ""
        channel: Any = None
        call: Any = None
        while not self._stop.is_set():
            payload, ids = next(self._payloads)
            self.tally.sent += len(ids)
            give_up_at = time.monotonic() + CLIENT_GIVE_UP_S
            while True:
                target = self._target()
                if target != channel_target:  # the daemon was restarted on other ports
                    if channel is not None:
                        channel.close()
                    channel = grpc.insecure_channel(target)
                    call = channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
                    channel_target = target
                try:
                    call(payload, timeout=5)
                except grpc.RpcError as exc:
                    code = exc.code()
                    retryable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                    if not retryable:
                        self.tally.other_errors[code.name] = self.tally.other_errors.get(code.name, 0) + 1
                        break
                    self.tally.refusals += 1
                    if time.monotonic() >= give_up_at or self._stop.is_set():
                        self.tally.gave_up += len(ids)
                        break
                    self._stop.wait(_retry_hint(exc) or 1.0)
                    continue
                self.tally.acknowledged += len(ids)
                self.tally.acked_ids.update(ids)
                break
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()
        if channel is not None:
            channel.close()


def _retry_hint(exc: Any) -> float | None:
    from google.rpc import error_details_pb2, status_pb2

    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


def _requests(seed: int) -> Iterator[tuple[bytes, list[bytes]]]:
    """Endless distinct 100-span requests (built in blocks of 200)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    block = 0
    while True:
        for raw in trace_requests(200, SPANS_PER_REQUEST, seed=seed * 1000 + block):
            message = ExportTraceServiceRequest.FromString(raw)
            yield raw, [s.span_id for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]
        block += 1


# --------------------------------------------------------------------------------------------- daemon


class DaemonProc:
    def __init__(self, workdir: Path, body: str) -> None:
        self.grpc_port, self.http_port, self.telemetry_port = free_port(), free_port(), free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "otelpipe.toml"
        self.body = body
        self.write(body)
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self, body: str) -> None:
        self.config.write_text(
            f"""
[service]
telemetry_endpoint = "127.0.0.1:{self.telemetry_port}"
log_level = "info"
shutdown_timeout_ms = 20000
[receivers.otlp]
grpc_endpoint = "127.0.0.1:{self.grpc_port}"
http_endpoint = "127.0.0.1:{self.http_port}"
{body}
"""
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> DaemonProc:
        log = (self.workdir / "daemon.log").open("ab")
        command = [sys.executable, "-m", "pipeline", "run", "-c", str(self.config)]
        self.proc = subprocess.Popen(command, stdout=log, stderr=log)
        try:
            wait_ready(self.telemetry_port, self.proc)
        except RuntimeError as exc:
            tail = (self.workdir / "daemon.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{exc}; daemon log:\n{tail}") from None
        return self

    def metrics(self) -> dict[str, float]:
        """Counters by full sample name with labels, e.g. 'otelpipe_exporter_dropped_spans_total{...}'."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.telemetry_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("otelpipe_") and " " in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def exporter(backend: Backend, queue: str = "", batch: str = "") -> str:
    return f"""
[exporters.otlphttp]
endpoint = "{backend.endpoint}"
compression = "none"
[exporters.otlphttp.retry_on_failure]
initial_interval_ms = 200
max_interval_ms = 2000
max_elapsed_ms = 0
[exporters.otlphttp.sending_queue]
num_consumers = 4
{queue}
{batch}
[pipelines.traces]
receivers = ["otlp"]
exporters = ["otlphttp"]
"""


def drops(metrics: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if value and (
            name.startswith("otelpipe_exporter_dropped_spans_total") or name.startswith("otelpipe_processor_dropped")
        ):
            reason = name.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = out.get(reason, 0.0) + value
    return out


class Peak:
    """Samples the daemon's RSS in the background."""

    def __init__(self, pid: Callable[[], int | None]) -> None:
        self._pid = pid
        self.value = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            pid = self._pid()
            if pid is not None:
                with suppress(OSError):  # the daemon may just have exited
                    self.value = max(self.value, rss_bytes(pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.value
