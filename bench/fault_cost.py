"""What the delivery stages cost: the cost table of the fault benchmark (``python -m bench.faults --cost-only``).

The exporter helper (memory or disk queue, with and without its batcher, each fsync mode) and the batch and
memory_limiter processors, driven in-process with a no-op send: 1000-span requests of bench/gen.py (~360 KB) from
8 concurrent producers. Each case reports CPU microseconds per request and spans per CPU-second, including the
event loop and the fsync threads; no daemon and no network, so it runs apart from the fault scenarios.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.gen import trace_requests


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
