"""Delivery under faults: the fault matrix, and what the delivery stages cost.

    python -m bench.faults                       # every scenario, then the cost table
    python -m bench.faults --scenario kill_9     # some scenarios (repeat the flag)
    python -m bench.faults --cost-only           # only the cost table (in-process, no daemon)

Fault matrix: the real daemon (``otelpipe run``) between an OTLP/gRPC client and an OTLP/HTTP backend, both in
this process on loopback. The client sends 100-span requests at a fixed rate and behaves like an OTLP SDK:
a retryable refusal is retried after its hint (RetryInfo, 1 s by default) until the request has been refused
for 10 s, then given up (the SDK's export timeout). The backend can be down (nothing listening), answer 5xx or
429 + Retry-After, or be fine. Accounting is by span id:

    sent          spans in requests the client tried to send
    acknowledged  spans in requests the daemon answered OK
    delivered     acknowledged spans the backend stored (answered 200)
    duplicated    extra copies the backend stored
    dropped       spans the daemon counted as dropped, by reason (otelpipe_*_dropped_*)
    lost          acknowledged, not delivered, not counted as dropped: must be 0

Cost: the exporter helper and the processors driven in-process with a no-op send, 1000-span requests of
bench/gen.py (~360 KB): CPU microseconds per request and spans per CPU-second, including the event loop.
Results go to bench/results/faults.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.gen import trace_requests
from bench.machine import machine_facts
from bench.procstat import rss_bytes
from bench.receive import free_port, wait_ready

RESULTS = Path(__file__).parent / "results"
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


# --------------------------------------------------------------------------------------------- scenarios


@dataclass
class Row:
    scenario: str
    fault: str
    sent: int
    acknowledged: int
    delivered: int
    duplicated: int
    dropped: dict[str, float]
    lost: int
    client_refusals: int
    client_gave_up: int
    client_other_errors: dict[str, int]
    daemon_exit_codes: list[int | None]
    peak_rss_mib: float
    seconds: float
    notes: str = ""


def _settle(backend: Backend, acked: set[bytes], timeout_s: float = 120.0) -> None:
    """Wait until every acknowledged span is stored, or the timeout (then the row shows the loss)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if acked <= set(backend.snapshot()):
            return
        time.sleep(0.2)


def _row(
    name: str,
    fault: str,
    tally: ClientTally,
    backend: Backend,
    dropped: dict[str, float],
    codes: list[int | None],
    peak: int,
    started: float,
    notes: str = "",
) -> Row:
    stored = backend.snapshot()
    distinct = set(stored)
    counted = int(sum(dropped.values()))
    missing = len(tally.acked_ids - distinct)
    return Row(
        scenario=name,
        fault=fault,
        sent=tally.sent,
        acknowledged=tally.acknowledged,
        delivered=len(tally.acked_ids & distinct),
        duplicated=len(stored) - len(distinct),
        dropped=dropped,
        lost=max(0, missing - counted),
        client_refusals=tally.refusals,
        client_gave_up=tally.gave_up,
        client_other_errors=tally.other_errors,
        daemon_exit_codes=codes,
        peak_rss_mib=round(peak / 2**20, 1),
        seconds=round(time.monotonic() - started, 1),
        notes=notes,
    )


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


@contextmanager
def _world(tmp: Path, body: Callable[[Backend], str]) -> Iterator[tuple[Backend, DaemonProc]]:
    backend = Backend()
    backend.set_mode("ok")
    daemon = DaemonProc(tmp / "run1", body(backend)).start()
    try:
        yield backend, daemon
    finally:
        daemon.stop()
        backend.close()


def _pid(d: DaemonProc) -> int | None:
    return d.proc.pid if d.proc is not None and d.proc.poll() is None else None


def _fault_window(
    tmp: Path,
    make_exporter: Callable[[Backend], str],
    rate: float,
    seed: int,
    *,
    mode: str,
    lead_s: float,
    fault_s: float,
    name: str,
    label: str,
    notes: str = "",
) -> Row:
    """Healthy for ``lead_s``, the backend in ``mode`` for ``fault_s``, healthy again; then account."""
    started = time.monotonic()
    with _world(tmp, make_exporter) as (backend, d):
        peak = Peak(lambda: _pid(d))
        load = Load(lambda: d.target, rate, seed=seed).start()
        time.sleep(lead_s)  # bench timeline, not a test
        backend.set_mode(mode)
        time.sleep(fault_s)
        backend.set_mode("ok")
        time.sleep(3)
        tally = load.stop()
        _settle(backend, tally.acked_ids)
        dropped = drops(d.metrics())
        code = d.stop()
        return _row(name, label, tally, backend, dropped, [code], peak.stop(), started, notes=notes)


def scenario_backend_outage(tmp: Path, name: str, mode: str, fault_s: float, rate: float) -> Row:
    labels = {
        "down": f"backend down (connection refused) for {fault_s:.0f} s",
        "5xx": f"backend answers 502/503/504 for {fault_s:.0f} s",
        "429": f"backend answers 429 + Retry-After: 1 for {fault_s:.0f} s",
    }
    return _fault_window(
        tmp, exporter, rate, hash(name) % 1000, mode=mode, lead_s=2, fault_s=fault_s, name=name, label=labels[mode]
    )


def scenario_kill_9(tmp: Path, rate: float) -> Row:
    started = time.monotonic()
    queue_dir = tmp / "queue"
    queue = f'type = "disk"\npath = "{queue_dir}"'
    backend = Backend()
    backend.set_mode("5xx")  # data piles up in the disk queue, some of it in flight
    d1 = DaemonProc(tmp / "run1", exporter(backend, queue=queue)).start()
    current = [d1]
    peak = Peak(lambda: _pid(current[0]))
    load = Load(lambda: current[0].target, rate, seed=17).start()
    time.sleep(3)
    backend.set_mode("ok")
    time.sleep(1)
    backend.set_mode("5xx")
    time.sleep(1)
    d1.signal(signal.SIGKILL)
    code1 = d1.wait()
    d2 = DaemonProc(tmp / "run2", exporter(backend, queue=queue))
    d2.start()
    current[0] = d2
    backend.set_mode("ok")
    time.sleep(3)
    tally = load.stop()
    _settle(backend, tally.acked_ids)
    metrics = d2.metrics()
    dropped = drops(metrics)
    recovered = metrics.get('otelpipe_exporter_queue_recovered_spans_total{exporter="otlphttp"}', 0.0)
    code2 = d2.stop()
    row = _row(
        "kill_9",
        "kill -9 during load, disk queue, backend failing; restart",
        tally,
        backend,
        dropped,
        [code1, code2],
        peak.stop(),
        started,
        notes=f"{recovered:.0f} spans recovered from the disk queue after the restart",
    )
    backend.close()
    return row


def scenario_sigterm(tmp: Path, rate: float) -> Row:
    started = time.monotonic()
    batch = "[exporters.otlphttp.batch]\nsend_batch_size = 2000\ntimeout_ms = 1000\n"

    def body(b: Backend) -> str:
        with_processor = exporter(b, batch=batch).replace(
            'exporters = ["otlphttp"]', 'processors = ["batch"]\nexporters = ["otlphttp"]'
        )
        return with_processor + "[processors.batch]\nsend_batch_size = 1000\ntimeout_ms = 1000\n"

    with _world(tmp, body) as (backend, d):
        peak = Peak(lambda: _pid(d))
        load = Load(lambda: d.target, rate, seed=23).start()
        time.sleep(3)
        backend.set_mode("5xx")  # sends fail and retry: batches in flight and backing off at SIGTERM
        time.sleep(1)
        d.signal(signal.SIGTERM)
        time.sleep(0.5)
        backend.set_mode("ok")
        code = d.wait()
        tally = load.stop()
        _settle(backend, tally.acked_ids, timeout_s=10)
        log = (d.workdir / "daemon.log").read_text(errors="replace")
        dropped = _drops_from_log(log)
        return _row(
            "sigterm",
            "SIGTERM during load with batches buffered and sends retrying",
            tally,
            backend,
            dropped,
            [code],
            peak.stop(),
            started,
            notes="requests after SIGTERM are refused (UNAVAILABLE) and not acknowledged",
        )


def _drops_from_log(log: str) -> dict[str, float]:
    """After exit there is no /metrics: shutdown drops are logged at ERROR with dropped_items."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        if '"dropped_items"' in line:
            out["shutdown"] = out.get("shutdown", 0.0) + float(json.loads(line)["dropped_items"])
    return out


def scenario_sighup(tmp: Path, rate: float) -> Row:
    started = time.monotonic()
    with _world(tmp, lambda b: exporter(b)) as (backend, d):
        peak = Peak(lambda: _pid(d))
        load = Load(lambda: d.target, rate, seed=29).start()
        time.sleep(2)
        valid = (
            d.body.replace("num_consumers = 4", "num_consumers = 2").replace(
                'exporters = ["otlphttp"]', 'processors = ["batch"]\nexporters = ["otlphttp"]'
            )
            + "\n[processors.batch]\ntimeout_ms = 100\n"
        )
        d.write(valid)
        d.signal(signal.SIGHUP)
        time.sleep(2)
        d.write(valid.replace("timeout_ms = 100", "timeout_ms = -1"))  # invalid: reported, ignored
        d.signal(signal.SIGHUP)
        time.sleep(2)
        d.write(d.body)
        d.signal(signal.SIGHUP)
        time.sleep(2)
        tally = load.stop()
        _settle(backend, tally.acked_ids)
        dropped = drops(d.metrics())
        code = d.stop()
        return _row(
            "sighup",
            "SIGHUP x3 during load (valid, invalid, valid back)",
            tally,
            backend,
            dropped,
            [code],
            peak.stop(),
            started,
            notes="the receiver is unchanged, so its ports keep serving through every reload",
        )


def scenario_disk_full(tmp: Path, rate: float, fault_s: float) -> Row:
    queue = f'type = "disk"\npath = "{tmp / "queue"}"\nmax_bytes = 2097152'
    return _fault_window(
        tmp,
        lambda b: exporter(b, queue=queue),
        rate,
        31,
        mode="down",
        lead_s=1,
        fault_s=fault_s,
        name="disk_full",
        label=f"disk queue limited to 2 MiB, backend down {fault_s:.0f} s",
        notes="a full queue refuses (UNAVAILABLE + RetryInfo); the client retries, then gives up after 10 s",
    )


# --------------------------------------------------------------------------------------------- cost


def cost_table(requests: int = 300, only: str = "", repeats: int = 3) -> list[dict[str, Any]]:
    """CPU per request of the delivery stages, in-process, with a no-op send (see the module docstring): the
    median of ``repeats`` runs (the machine is shared, single runs vary)."""
    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    out = []
    for case in _COST_CASES:
        if only and only != case[0]:
            continue
        runs = sorted((runner(_measure(case, requests)) for _ in range(repeats)), key=lambda r: r["cpu_us_per_request"])
        median = runs[len(runs) // 2]
        median["runs_cpu_us_per_request"] = [r["cpu_us_per_request"] for r in runs]
        out.append(median)
    return out


_COST_CASES: list[tuple[str, dict[str, Any]]] = [
    ("exporter helper, memory queue", {}),
    ("exporter helper, memory queue + batch (8192 items)", {"batch": {"send_batch_size": 8192}}),
    ("exporter helper, disk queue, fsync never", {"disk": "never"}),
    ("exporter helper, disk queue, fsync interval", {"disk": "interval"}),
    ("exporter helper, disk queue, fsync always", {"disk": "always"}),
    ("exporter helper, disk queue + batch, fsync interval", {"disk": "interval", "batch": {"send_batch_size": 8192}}),
    ("batch processor (8192 items) -> no-op", {"processor": "batch"}),
    ("memory_limiter -> no-op", {"processor": "memory_limiter"}),
]


async def _measure(case: tuple[str, dict[str, Any]], n: int) -> dict[str, Any]:
    import msgspec

    from pipeline.component import ComponentId, CreateSettings, Kind
    from pipeline.model import Batch, Signal
    from pipeline.telemetry.health import HealthRegistry
    from pipeline.telemetry.metrics import SelfMetrics

    label, spec = case
    payloads = trace_requests(8, 1000)
    batches = [Batch.parse(Signal.TRACES, payloads[i % len(payloads)]) for i in range(n)]
    spans = sum(b.items for b in batches)
    done = asyncio.Event()
    got = [0]

    async def send(batch: Batch) -> None:
        batch.serialize()  # what a forwarding exporter reads
        got[0] += batch.items
        if got[0] >= spans:
            done.set()

    import logging

    settings = CreateSettings(
        id=ComponentId("bench"),
        kind=Kind.EXPORTER,
        signals=frozenset({Signal.TRACES}),
        metrics=SelfMetrics(process_metrics=False),
        health=HealthRegistry(),
        logger=logging.getLogger("bench"),
        pipelines=("traces",),
    )
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        component: Any
        if "processor" in spec:
            component, consumer = _processor(spec["processor"], settings, send)
        else:
            from pipeline.exporters.helper import ExporterHelper, ExporterHelperConfig

            values: dict[str, Any] = {"sending_queue": {"queue_size": n + 10, "max_bytes": 2**40}}
            if "disk" in spec:
                values["sending_queue"].update({"type": "disk", "path": str(Path(tmp) / "q"), "fsync": spec["disk"]})
            if "batch" in spec:
                values["batch"] = spec["batch"]
            cfg = msgspec.convert(values, ExporterHelperConfig)
            component = consumer = ExporterHelper(settings, cfg, send)
        await component.start()
        cpu0, wall0 = time.process_time(), time.perf_counter()

        from pipeline.errors import Refused

        async def produce(part: list[Batch]) -> None:
            for b in part:
                while True:
                    try:
                        await consumer.consume(b)
                        break
                    except Refused:  # full: back off briefly and retry, as a client would
                        await asyncio.sleep(0.001)

        # 8 concurrent senders, as 8 client connections would be.
        await asyncio.gather(*(produce(batches[i::8]) for i in range(8)))
        await asyncio.wait_for(done.wait(), 120)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        await component.shutdown(time.monotonic() + 30)
    return {
        "case": label,
        "requests": n,
        "spans": spans,
        "cpu_us_per_request": round(cpu / n * 1e6, 1),
        "spans_per_cpu_second": int(spans / cpu) if cpu else 0,
        "spans_per_second_wall": int(spans / wall) if wall else 0,
    }


def _processor(kind: str, settings: Any, send: Callable[[Any], Any]) -> tuple[Any, Any]:
    import msgspec

    from pipeline.model import Signal

    class Sink:
        mutates_data = False

        async def consume(self, batch: Any) -> None:
            await send(batch)

    nexts = {Signal.TRACES: Sink()}
    if kind == "batch":
        from processors.batch import BatchProcessor, BatchProcessorConfig

        proc: Any = BatchProcessor(settings, msgspec.convert({"send_batch_size": 8192}, BatchProcessorConfig), nexts)
    else:
        from processors.memory_limiter import MemoryLimiter, MemoryLimiterConfig

        proc = MemoryLimiter(settings, msgspec.convert({"limit_mib": 8192}, MemoryLimiterConfig), nexts)
    return proc, proc


# --------------------------------------------------------------------------------------------- main

SCENARIOS = ("backend_down", "5xx_storm", "429_storm", "kill_9", "sigterm", "sighup", "disk_full")


def run_scenarios(names: list[str], down_s: float, storm_s: float, rate: float) -> list[Row]:
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp_dir:
            tmp = Path(tmp_dir)
            if name == "backend_down":
                row = scenario_backend_outage(tmp, name, "down", down_s, rate)
            elif name == "5xx_storm":
                row = scenario_backend_outage(tmp, name, "5xx", storm_s, rate)
            elif name == "429_storm":
                row = scenario_backend_outage(tmp, name, "429", storm_s, rate)
            elif name == "kill_9":
                row = scenario_kill_9(tmp, rate)
            elif name == "sigterm":
                row = scenario_sigterm(tmp, rate)
            elif name == "sighup":
                row = scenario_sighup(tmp, rate)
            else:
                row = scenario_disk_full(tmp, rate, storm_s)
        print(json.dumps(asdict(row)), flush=True)
        rows.append(row)
    return rows


def write_report(out: Path, rows: list[Row], cost: list[dict[str, Any]], args: argparse.Namespace) -> None:
    machine = machine_facts()
    report = {
        "benchmark": "faults",
        "machine": machine,
        "date": time.strftime("%Y-%m-%d"),
        "settings": {"rate_requests_per_s": args.rate, "spans_per_request": SPANS_PER_REQUEST},
        "scenarios": [asdict(r) for r in rows],
        "cost": cost,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Delivery under faults",
        "",
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, protobuf "
        f"{machine['protobuf_backend']}. Reproduce: `python -m bench.faults` ({args.rate:g} requests/s of "
        f"{SPANS_PER_REQUEST} spans over OTLP/gRPC into the daemon, OTLP/HTTP out to a fake backend; the client "
        f"retries refusals like an SDK and gives up on a request after {CLIENT_GIVE_UP_S:.0f} s).",
        "",
    ]
    if rows:
        lines += [
            "All counts are spans. Lost = acknowledged, then neither delivered nor counted as dropped.",
            "",
            "| scenario | fault | sent | acknowledged | delivered | duplicated | dropped (counted) | **lost** "
            "| client refusals | client gave up | exit codes | peak RSS |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            dropped = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r.dropped.items())) or "0"
            codes = "/".join("-9" if c == -9 else str(c) for c in r.daemon_exit_codes)
            lines.append(
                f"| {r.scenario} | {r.fault} | {r.sent:,} | {r.acknowledged:,} | {r.delivered:,} | {r.duplicated:,} "
                f"| {dropped} | **{r.lost}** | {r.client_refusals:,} | {r.client_gave_up:,} | {codes} "
                f"| {r.peak_rss_mib:.0f} MiB |"
            )
        notes = [f"- {r.scenario}: {r.notes}" for r in rows if r.notes]
        if notes:
            lines += ["", *notes]
    if cost:
        lines += [
            "",
            "## Cost of the delivery stages",
            "",
            "In-process, no-op send, 1000-span requests (~360 KB), 8 concurrent producers, uvloop; CPU of the whole "
            "process (event loop, fsync threads) per request, median of 3 runs. Reproduce: "
            "`python -m bench.faults --cost-only`.",
            "",
            "| stage | CPU per request | CPU per span | spans per CPU-second |",
            "|---|---|---|---|",
        ]
        for c in cost:
            per_span_ns = c["cpu_us_per_request"] * 1000 * c["requests"] / c["spans"]
            lines.append(
                f"| {c['case']} | {c['cpu_us_per_request']:,} us | {per_span_ns:,.0f} ns "
                f"| {c['spans_per_cpu_second']:,} |"
            )
    (out / "faults.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    ap.add_argument("--down-s", type=float, default=30.0, help="backend outage length (default 30)")
    ap.add_argument("--storm-s", type=float, default=10.0, help="5xx / 429 storm and disk-full outage length")
    ap.add_argument("--rate", type=float, default=20.0, help="client requests per second (100 spans each)")
    ap.add_argument("--cost-only", action="store_true", help="only the cost table")
    ap.add_argument("--no-cost", action="store_true", help="skip the cost table")
    ap.add_argument("--cost-requests", type=int, default=300)
    ap.add_argument("--cost-case", default="", help="only the cost case of exactly this name")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    random.seed(1)
    names = list(args.scenario or SCENARIOS)
    rows = [] if args.cost_only else run_scenarios(names, args.down_s, args.storm_s, args.rate)
    cost = [] if args.no_cost else cost_table(args.cost_requests, args.cost_case)
    for c in cost:
        print(json.dumps(c), flush=True)
    write_report(args.out, rows, cost, args)
    lost = sum(r.lost for r in rows)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
