"""The PII benchmark's end-to-end part (``python -m bench.pii e2e``): the daemon on one core, fed over OTLP/gRPC.

The daemon runs pinned to CPU 0 (``python -m bench.pii serve CONFIG``, with the bench-only pre-filter below
registered) and the load generator (bench.receive) on CPU 1; the figure is accepted spans per CPU-second of the
daemon.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.pii_data import Mix, trace_requests
from bench.procstat import cpu_seconds, rss_bytes
from bench.receive import _load_grpc, _pin, daemon_config, free_port, wait_ready, window_rates
from pipeline.component import CreateSettings, Factory, Kind, Registry
from pipeline.consumer import Consumer
from pipeline.model import Batch, Signal


class _KeepQuarter:
    """Stands in for tail sampling keeping ~25% of traces: a new request with the spans of traces whose id starts
    below 0x40, built through the protobuf API (its raw bytes are unknown, as after real sampling)."""

    mutates_data = True

    def __init__(self, nxt: Consumer) -> None:
        self._next = nxt

    async def consume(self, batch: Batch) -> None:
        src = batch.message
        assert isinstance(src, ExportTraceServiceRequest)
        out = ExportTraceServiceRequest()
        kept = 0
        for rs in src.resource_spans:
            new_rs = out.resource_spans.add()
            new_rs.resource.CopyFrom(rs.resource)
            for ss in rs.scope_spans:
                new_ss = new_rs.scope_spans.add()
                new_ss.scope.CopyFrom(ss.scope)
                spans = [s for s in ss.spans if s.trace_id[0] < 0x40]
                new_ss.spans.extend(spans)
                kept += len(spans)
        await self._next.consume(Batch(Signal.TRACES, out, kept, batch.nbytes, None, batch.metadata))

    def consumer(self, signal: Signal) -> Consumer:
        return self

    async def start(self) -> None:
        return None

    async def shutdown(self, deadline: float) -> None:
        return None


class _KeepConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


def _keep_create(settings: CreateSettings, config: _KeepConfig, nexts: Mapping[Signal, Consumer]) -> _KeepQuarter:
    return _KeepQuarter(nexts[Signal.TRACES])


KEEP_QUARTER = Factory(Kind.PROCESSOR, "bench_keep_quarter", _KeepConfig, _keep_create, frozenset({Signal.TRACES}))


def _config(grpc_port: int, tel_port: int, processors: list[str]) -> str:
    tables = "".join(f"[processors.{p}]\n" for p in processors)
    return daemon_config(grpc_port, tel_port, processors=processors, tables=tables)


def serve(config_path: Path) -> int:
    """The daemon with the bench-only pre-filter registered (``python -m bench.pii serve CONFIG``)."""
    from config.loader import load_config
    from pipeline.components import default_registry
    from pipeline.service import run_service

    registry = Registry([*default_registry(), KEEP_QUARTER])
    return run_service([config_path], registry, load_config([config_path], registry))


def _accepted(tel_port: int) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{tel_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("otelpipe_receiver_accepted_spans_total{")
    )


def e2e_one(
    name: str, processors: list[str], payloads: list[bytes], duration_s: float, warmup_s: float = 2.0
) -> dict[str, Any]:
    grpc_port, tel_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.toml"
        cfg.write_text(_config(grpc_port, tel_port, processors))
        proc = subprocess.Popen([sys.executable, "-m", "bench.pii", "serve", str(cfg)], preexec_fn=lambda: _pin(0))
        try:
            wait_ready(tel_port, proc)
            ctx = mp.get_context("spawn")
            out: Any = ctx.Queue()
            stop_at = time.monotonic() + warmup_s + duration_s
            loader = ctx.Process(target=_load_grpc, args=(grpc_port, payloads, stop_at, 4, out))
            loader.start()
            time.sleep(warmup_s)  # bench timing, not a test: the window starts after warm-up
            cpu0, acc0, t0 = cpu_seconds(proc.pid), _accepted(tel_port), time.monotonic()
            while time.monotonic() < stop_at - 0.2:
                time.sleep(0.2)
            cpu1, acc1, t1 = cpu_seconds(proc.pid), _accepted(tel_port), time.monotonic()
            rss = rss_bytes(proc.pid)
            counts = out.get(timeout=60)
            loader.join(timeout=30)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    spans, cpu = acc1 - acc0, cpu1 - cpu0
    return {
        "scenario": name,
        "processors": processors,
        **window_rates(spans, cpu, t1 - t0),
        "requests_failed": counts["err"],
        "rss_bytes": rss,
    }


def e2e(duration_s: float) -> dict[str, Any]:
    # 64 distinct requests: ~35,000 distinct PII values per cycle, far more than the result cache holds, so
    # re-sending them does not turn into cache hits.
    payloads, stats = trace_requests(64)
    light, _ = trace_requests(64, seed=8, mix=Mix(ratio=0.01))
    results = []
    for name, processors, load in (
        ("receive only (reference)", [], payloads),
        ("every span kept and masked", ["pii"], payloads),
        ("25% kept (simulated pre-filter), then masked", ["bench_keep_quarter", "pii"], payloads),
        ("25% kept (simulated pre-filter), no masking (reference)", ["bench_keep_quarter"], payloads),
        ("every span kept and masked, 1% of values with PII", ["pii"], light),
        ("25% kept (simulated pre-filter), then masked, 1% of values with PII", ["bench_keep_quarter", "pii"], light),
    ):
        run = e2e_one(name, processors, load, duration_s)
        print(json.dumps(run), flush=True)
        results.append(run)
    return {"runs": results, "request_bytes_avg": sum(map(len, payloads)) // len(payloads), "data": stats}
