"""Protocol sinks: the backends of a benchmark run, in their own process, on loopback.

    OTLP/gRPC    the three Export services (stands in for Jaeger's OTLP port and any OTLP backend)
    OTLP/HTTP    POST /v1/traces, /v1/logs, /v1/metrics (protobuf or JSON, gzip)
    Loki         POST /loki/api/v1/push (protobuf in a snappy block, or JSON)         -> 204
    remote-write POST /api/v1/write (snappy block WriteRequest, remote-write 1.0)      -> 204
    control      GET /bench/stats (JSON counters, polled while running), GET /bench/final (msgpack: trace ids
                 seen and latency samples, read once at the end)

Each sink answers like the real backend (status codes from PROTOCOLS.md), records what it received per signal
and per second, the distinct trace ids it saw (for the loss accounting), the end-to-end latency of each trace
(arrival time minus the send stamp in its id, see bench.stamp) and, when asked, how many requests carried a value
of the load's PII vocabulary (which must be 0 behind the pii processor).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from array import array
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import msgspec
from aiohttp import web
from grpc import aio

from bench import sink_protocols as sp
from bench.stamp import stamp_of
from pipeline.model import Signal

SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
}
MAX_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class SinkConfig:
    grpc_port: int
    http_port: int
    # Search every received body for these values (the load's PII vocabulary); empty = no search.
    pii_values: tuple[str, ...] = ()
    cpu: int | None = None


class Final(msgspec.Struct):
    """What /bench/final returns: concatenated 16-byte trace ids and latency samples (ms)."""

    span_trace_ids: bytes
    log_trace_ids: bytes
    span_latency_ms: list[float]
    log_latency_ms: list[float]
    stats: dict[str, Any]


class SinkState:
    """Everything the sinks recorded; no I/O, so the accounting tests can feed it directly."""

    def __init__(self, pii_values: tuple[str, ...] = ()) -> None:
        self.items: dict[str, int] = defaultdict(int)
        self.requests: dict[str, int] = defaultdict(int)
        self.rejected: dict[str, int] = defaultdict(int)
        self.per_second: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.span_ids: set[bytes] = set()
        self.log_ids: set[bytes] = set()
        self.span_latency = array("d")
        self.log_latency = array("d")
        self.pii_leaks = 0
        self.last_change = time.monotonic()
        self._pii = _pii_matcher(pii_values)
        top = time.time_ns() >> 48
        prefixes = b"|".join(re.escape(v.to_bytes(2, "big")) for v in (top, top + 1))
        self._span_ids = re.compile(rb"\x0a\x10((?:" + prefixes + rb").{14})", re.DOTALL)
        self._series_newest: dict[str, int] = {}

    def _count(self, kind: str, items: int, body: bytes) -> None:
        self.requests[kind] += 1
        self.items[kind] += items
        self.per_second[kind][int(time.time())] += items
        self.last_change = time.monotonic()
        if self._pii is not None and self._pii(body):
            self.pii_leaks += 1

    def _latency(self, ids: set[bytes], seen: set[bytes], out: array) -> None:  # type: ignore[type-arg]
        now = time.time_ns()
        for trace_id in ids - seen:
            out.append((now - stamp_of(trace_id)) / 1e6)
        seen |= ids

    def traces(self, raw: bytes) -> None:
        # Every span's first field is its trace id (tag 0x0a, length 16), and every trace id of the load starts
        # with a send stamp whose top two bytes change once in 78 hours. So one C-speed regex pass counts the
        # spans and collects their ids: parsing the request and reading each span from Python cost 3x more,
        # and the sinks share the load generator's core. Spans without a stamped id are not counted.
        found = self._span_ids.findall(raw)
        if not found and raw:
            Signal.TRACES.request_type().ParseFromString(raw)  # not OTLP at all: raise DecodeError
        self._latency(set(found), self.span_ids, self.span_latency)
        self._count("traces", len(found), raw)

    def logs(self, raw: bytes) -> None:
        request = Signal.LOGS.request_type()
        request.ParseFromString(raw)
        ids: set[bytes] = set()
        n = 0
        for rl in request.resource_logs:  # type: ignore[union-attr]
            for sl in rl.scope_logs:
                ids.update(record.trace_id for record in sl.log_records if record.trace_id)
                n += len(sl.log_records)
        self._latency(ids, self.log_ids, self.log_latency)
        self._count("logs", n, raw)

    def metrics(self, raw: bytes) -> None:
        from pipeline.model import count_metric_points

        request = Signal.METRICS.request_type()
        request.ParseFromString(raw)
        self._count("metrics", count_metric_points(request), raw)  # type: ignore[arg-type]

    def loki(self, push: sp.LokiPush, body: bytes) -> None:
        ids = {bytes.fromhex(t) for t in push.trace_ids if len(t) == 32}
        self._latency(ids, self.log_ids, self.log_latency)
        self._count("loki", push.entries, body)

    def remote_write(self, rw: sp.RemoteWrite, body: bytes) -> None:
        for key, newest in rw.newest.items():
            if newest < self._series_newest.get(key, newest):
                raise sp.Rejected(400, f"out of order sample (series {key})")
        self._series_newest.update(rw.newest)
        self._count("remote_write", rw.samples, body)

    def stats(self) -> dict[str, Any]:
        return {
            "items": dict(self.items),
            "requests": dict(self.requests),
            "rejected": dict(self.rejected),
            "pii_leaks": self.pii_leaks,
            "idle_s": round(time.monotonic() - self.last_change, 3),
            "per_second": {k: {str(s): n for s, n in v.items()} for k, v in self.per_second.items()},
        }

    def final(self) -> Final:
        return Final(
            b"".join(self.span_ids),
            b"".join(self.log_ids),
            self.span_latency.tolist(),
            self.log_latency.tolist(),
            self.stats(),
        )


def _pii_matcher(values: tuple[str, ...]) -> Any:
    if not values:
        return None
    import re2

    pattern = re2.compile(b"|".join(re2.escape(v.encode()) for v in values))
    return lambda body: pattern.search(body) is not None


def _grpc_handler(state: SinkState, signal_: Signal) -> grpc.RpcMethodHandler[bytes, bytes]:
    record = {Signal.TRACES: state.traces, Signal.LOGS: state.logs, Signal.METRICS: state.metrics}[signal_]

    async def export(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            record(request)
        except Exception as exc:  # undecodable protobuf: the OTLP answer is INVALID_ARGUMENT
            state.rejected[signal_.value] += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot decode: {exc}")
        return b""

    return grpc.unary_unary_rpc_method_handler(export)


def _http_app(state: SinkState) -> web.Application:
    from pipeline import otlpjson

    async def otlp(request: web.Request, signal_: Signal) -> web.Response:
        ctype = request.content_type
        body = await request.read()  # aiohttp inflates gzip/deflate bodies itself
        try:
            raw = otlpjson.decode(signal_, body).SerializeToString() if ctype == "application/json" else body
            {Signal.TRACES: state.traces, Signal.LOGS: state.logs, Signal.METRICS: state.metrics}[signal_](raw)
        except Exception as exc:
            state.rejected[signal_.value] += 1
            return web.Response(status=400, text=f"cannot decode: {exc}")
        if ctype == "application/json":
            return web.Response(body=b"{}", content_type="application/json")
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def loki(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            if request.content_type == "application/json":
                push = sp.loki_json(body)
            elif request.content_type == "application/x-protobuf":
                push = sp.loki_protobuf(body)
            else:
                raise sp.Rejected(415, f"unsupported Content-Type {request.content_type!r}")
            state.loki(push, body)
        except sp.Rejected as exc:
            state.rejected["loki"] += 1
            return web.Response(status=exc.status, text=str(exc))
        return web.Response(status=204)

    async def remote_write(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            state.remote_write(sp.remote_write(body, headers), body)
        except sp.Rejected as exc:
            state.rejected["remote_write"] += 1
            return web.Response(status=exc.status, text=str(exc))
        return web.Response(status=204)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(state.stats())

    async def final(_: web.Request) -> web.Response:
        return web.Response(body=msgspec.msgpack.encode(state.final()), content_type="application/msgpack")

    # Loki and remote-write bodies are compressed snappy blocks, not HTTP content-codings: read them raw.
    app = web.Application(client_max_size=MAX_BYTES)

    def route(signal_: Signal) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return await otlp(request, signal_)

        return handler

    for signal_, path in ((Signal.TRACES, "/v1/traces"), (Signal.LOGS, "/v1/logs"), (Signal.METRICS, "/v1/metrics")):
        app.router.add_post(path, route(signal_))
    app.router.add_post("/loki/api/v1/push", loki)
    app.router.add_post("/api/v1/write", remote_write)
    app.router.add_get("/bench/stats", stats)
    app.router.add_get("/bench/final", final)
    return app


async def serve(config: SinkConfig, stop: asyncio.Event, ready: Any = None) -> SinkState:
    """Run the sinks until ``stop`` is set; ``ready`` (an Event-like with set()) is set once both listen."""
    state = SinkState(config.pii_values)
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_BYTES),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICES[s], {"Export": _grpc_handler(state, s)}) for s in Signal]
    )
    server.add_insecure_port(f"127.0.0.1:{config.grpc_port}")
    runner = web.AppRunner(_http_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", config.http_port)
    try:
        await server.start()
        await site.start()
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await runner.cleanup()
        await server.stop(grace=1.0)
    return state


def run_process(config: SinkConfig, ready: Any) -> None:
    """Entry point of the sink process (multiprocessing spawn): serve until SIGTERM or SIGINT."""
    if config.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {config.cpu})

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop, ready)

    asyncio.run(main())
