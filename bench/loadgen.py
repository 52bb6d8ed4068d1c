"""The load generator: one process per stream, pinned away from the daemon, sending pre-encoded units.

Open loop (``rate``): units are scheduled at fixed intervals for the target spans/s; a unit whose slot comes
while ``concurrency`` requests are already in flight is not sent and is counted ``unsent`` (an SDK would drop it
from its full queue), so a slow daemon shows up as unsent load instead of a slower schedule. Closed loop
(``max``): ``concurrency`` workers each send the next unit as soon as the previous one is answered.

Every send is classified the way an OTLP client would (PROTOCOLS.md 12 and 20): ``acked`` (success, or the
accepted part of a partial success), ``refused`` (retryable: UNAVAILABLE, RESOURCE_EXHAUSTED with RetryInfo,
HTTP 429/502/503/504), ``failed`` (anything else), ``timeout`` (no answer in time: the daemon may or may not
hold the data). The generator records which units were acknowledged, with their stamp, so the harness can
compute exactly which traces must have reached the sinks.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

from bench.stamp import Encoded, encode
from bench.workload import Shape, TraceInfo, build_units
from pipeline.model import Signal

PATHS = {
    Signal.TRACES: ("/opentelemetry.proto.collector.trace.v1.TraceService/Export", "/v1/traces"),
    Signal.LOGS: ("/opentelemetry.proto.collector.logs.v1.LogsService/Export", "/v1/logs"),
}
RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
OUTCOMES = ("offered", "acked", "refused", "failed", "timeout", "rejected", "unsent")


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One generator process: what it sends, how, where and how fast."""

    index: int
    transport: str  # grpc | http | http_json
    shape: Shape
    units: int
    mode: str  # rate | max
    rate_spans_per_s: float
    concurrency: int
    grpc_target: str
    http_base: str
    timeout_s: float = 10.0
    cpu: int | None = None
    seed: int = 1


@dataclass(slots=True)
class StreamResult:
    """What one stream sent and what came back; plain data so it crosses the process boundary."""

    index: int
    transport: str
    # counts[signal][outcome] in items (spans / log records); requests[signal][outcome] in requests.
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    # per_second[signal][outcome][second since start] in items.
    per_second: dict[str, dict[str, dict[int, int]]] = field(default_factory=dict)
    # (unit index, stamp, signals acked as a bit mask: 1 traces, 2 logs) of every send that got an answer.
    acked_units: list[tuple[int, int, int]] = field(default_factory=list)
    # The per-trace facts of each unit, to rebuild the ids of acknowledged traces.
    unit_infos: list[list[tuple[bytes, int, int, bool, bool, bool]]] = field(default_factory=list)
    status_codes: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    elapsed_s: float = 0.0
    cpu_seconds: float = 0.0
    error: str = ""

    def add(self, signal: Signal, outcome: str, items: int, second: int) -> None:
        name = signal.value
        self.counts.setdefault(name, dict.fromkeys(OUTCOMES, 0))[outcome] += items
        self.requests.setdefault(name, dict.fromkeys(OUTCOMES, 0))[outcome] += 1
        series = self.per_second.setdefault(name, {}).setdefault(outcome, {})
        series[second] = series.get(second, 0) + items


def _info_tuple(info: TraceInfo) -> tuple[bytes, int, int, bool, bool, bool]:
    return (info.suffix, info.spans, info.logs, info.error, info.slow, info.has_spans)


class _Sender:
    """Sends one encoded request and says how it went (an outcome name and the rejected count)."""

    async def send(self, enc: Encoded, body: bytes) -> tuple[str, int, str]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class _GrpcSender(_Sender):
    def __init__(self, target: str, timeout_s: float) -> None:
        import grpc.aio

        self._grpc = __import__("grpc")
        self._channel = grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
        self._calls = {s: self._channel.unary_unary(PATHS[s][0], None, None) for s in PATHS}
        self._timeout = timeout_s

    async def send(self, enc: Encoded, body: bytes) -> tuple[str, int, str]:
        grpc = self._grpc
        try:
            response = await self._calls[enc.signal](body, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                return "timeout", 0, code.name
            retry_info = any(k == "grpc-status-details-bin" for k, _ in (exc.trailing_metadata() or ()))
            retryable = code in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.CANCELLED,
                grpc.StatusCode.ABORTED,
                grpc.StatusCode.OUT_OF_RANGE,
                grpc.StatusCode.DATA_LOSS,
            ) or (code is grpc.StatusCode.RESOURCE_EXHAUSTED and retry_info)
            return ("refused" if retryable else "failed"), 0, code.name
        return "acked", _rejected(enc.signal, response), "OK"

    async def close(self) -> None:
        await self._channel.close(None)


class _HttpSender(_Sender):
    def __init__(self, base: str, concurrency: int, timeout_s: float, json: bool) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )
        self._base = base
        self._ctype = "application/json" if json else "application/x-protobuf"

    async def send(self, enc: Encoded, body: bytes) -> tuple[str, int, str]:
        try:
            async with self._session.post(
                self._base + PATHS[enc.signal][1], data=body, headers={"Content-Type": self._ctype}
            ) as r:
                data = await r.read()
                if r.status == 200:
                    return "acked", 0 if enc.json else _rejected(enc.signal, data), "200"
                return ("refused" if r.status in RETRYABLE_HTTP else "failed"), 0, str(r.status)
        except TimeoutError:
            return "timeout", 0, "timeout"
        except self._aiohttp.ClientError as exc:
            # A disconnect without an answer: the client retries (PROTOCOLS.md 20), so it is a refusal.
            return "refused", 0, type(exc).__name__

    async def close(self) -> None:
        await self._session.close()


def _rejected(signal: Signal, response: bytes) -> int:
    if not response:
        return 0
    message = signal.response_type()
    message.ParseFromString(response)
    partial = message.partial_success
    return int(getattr(partial, "rejected_spans", 0) or getattr(partial, "rejected_log_records", 0))


async def _run(
    spec: StreamSpec,
    encoded: list[tuple[Encoded | None, Encoded | None]],
    start_at: float,
    duration_s: float,
    result: StreamResult,
    stop: Any,
) -> None:
    sender: _Sender
    if spec.transport == "grpc":
        sender = _GrpcSender(spec.grpc_target, spec.timeout_s)
    else:
        sender = _HttpSender(spec.http_base, spec.concurrency, spec.timeout_s, spec.transport == "http_json")
    last_stamp = 0
    inflight = 0

    async def send_unit(i: int) -> None:
        nonlocal last_stamp, inflight
        inflight += 1
        try:
            stamp = last_stamp = max(time.time_ns(), last_stamp + 1)
            second = int(time.time() - start_at)
            parts = [(bit, enc) for bit, enc in ((1, encoded[i][0]), (2, encoded[i][1])) if enc is not None]
            bodies = [enc.stamped(stamp) for _, enc in parts]
            outcomes = await asyncio.gather(
                *(sender.send(enc, body) for (_, enc), body in zip(parts, bodies, strict=True))
            )
            mask = 0
            for (bit, enc), (outcome, rejected, code) in zip(parts, outcomes, strict=True):
                result.add(enc.signal, "offered", enc.items, second)
                result.add(enc.signal, outcome, enc.items - rejected if outcome == "acked" else enc.items, second)
                if rejected:
                    result.add(enc.signal, "rejected", rejected, second)
                result.status_codes[code] = result.status_codes.get(code, 0) + 1
                if outcome == "acked":
                    mask |= bit
            result.acked_units.append((i, stamp, mask))
        finally:
            inflight -= 1

    end = start_at + duration_s
    await asyncio.sleep(max(0.0, start_at - time.time()))
    n = len(encoded)
    try:
        if spec.mode == "max":

            async def worker(k: int) -> None:
                i = k
                while time.time() < end and not stop.is_set():
                    await send_unit(i % n)
                    i += spec.concurrency

            await asyncio.gather(*(worker(k) for k in range(spec.concurrency)))
        else:
            # The rate counts spans, or log records when the stream sends no spans (a log-only load).
            per_unit = max(
                1, sum(t.items if t is not None else (lg.items if lg is not None else 0) for t, lg in encoded) // n
            )
            interval = per_unit / spec.rate_spans_per_s
            tasks: set[asyncio.Task[None]] = set()
            next_at, i = start_at, 0
            while next_at < end and not stop.is_set():
                delay = next_at - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if inflight < spec.concurrency:
                    task = asyncio.create_task(send_unit(i % n))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    second = int(time.time() - start_at)
                    for enc in encoded[i % n]:
                        if enc is not None:
                            result.add(enc.signal, "unsent", enc.items, second)
                i += 1
                next_at += interval
            if tasks:
                await asyncio.gather(*tasks)
    finally:
        await sender.close()


def run_process(spec: StreamSpec, out: Any, control: Any, stop: Any) -> None:
    """Entry point of a generator process (multiprocessing spawn).

    Builds and encodes its units, puts ``("ready", index)`` on ``out``, waits for ``(start_at, duration_s)`` on
    ``control``, runs, and puts ``("result", StreamResult)`` on ``out``. ``stop`` (an Event) ends it early.
    """
    if spec.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {spec.cpu})
    result = StreamResult(spec.index, spec.transport)
    try:
        units = build_units(spec.shape, spec.units, spec.seed)
        encoded = [encode(u, spec.transport) for u in units]
        result.unit_infos = [[_info_tuple(info) for info in u.infos] for u in units]
    except Exception as exc:  # reported to the harness, which stops the run with this message
        result.error = f"building the load failed: {exc!r}"
        out.put(("result", result))
        return
    out.put(("ready", spec.index))
    start_at, duration_s = control.get()
    if start_at is None:
        out.put(("result", result))
        return
    cpu0 = time.process_time()
    result.started_at = start_at
    try:
        if spec.transport == "grpc":
            asyncio.run(_run(spec, encoded, start_at, duration_s, result, stop))
        else:
            try:
                import uvloop

                uvloop.run(_run(spec, encoded, start_at, duration_s, result, stop))
            except ImportError:
                asyncio.run(_run(spec, encoded, start_at, duration_s, result, stop))
    except Exception as exc:
        result.error = f"load generator failed: {exc!r}"
    result.elapsed_s = time.time() - start_at
    result.cpu_seconds = time.process_time() - cpu0
    out.put(("result", result))
