"""The tail sampling benchmark's daemon parts: throughput and memory of ``otelpipe run`` end to end.

The daemon (OTLP/gRPC -> tail_sampling -> nop) runs pinned to CPU 0; a closed-loop gRPC load generator in its own
process, pinned to CPU 1, sends the requests of tail_sampling_setup.py. The figures come from the daemon's
/metrics (scraped before and after a window), /proc (CPU-seconds, RSS) and the generator's counts.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.procstat import cpu_seconds, rss_bytes
from bench.receive import _pin, closed_loop_grpc, free_port, wait_ready, window_rates
from bench.tail_sampling_setup import daemon_config, trace_id_offsets, unique_request

P = "otelpipe_processor_tail_sampling"


def _load(port: int, templates: list[bytes], stop_at: float, concurrency: int, limit: int, out: Any) -> None:
    """Closed loop: ``concurrency`` threads, each sends its next unique request when the previous one returns."""
    _pin(1)
    offsets = [trace_id_offsets(t) for t in templates]
    n = len(templates)

    def request_for(k: int) -> bytes | None:
        if limit and k >= limit:
            return None
        return unique_request(templates[k % n], offsets[k % n], k // n + 1)

    out.put(closed_loop_grpc(port, request_for, stop_at, concurrency))


def scrape(port: int) -> dict[str, float]:
    """Every sample of /metrics, labels included in the key, summed over nothing."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items() if (k == name or k.startswith(name + "{")) and all(w in k for w in want))


def latency_quantiles(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """p50 / p99 of the decisions made between two scrapes, as the upper bound of the histogram bucket that
    holds them (no interpolation: "p99 <= 5.5 s" is what the histogram proves)."""
    name = f"{P}_decision_latency_seconds_bucket"
    buckets: list[tuple[float, float]] = []
    for k, v in after.items():
        if k.startswith(name + "{"):
            bound = k.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), v - before.get(k, 0.0)))
    buckets.sort()
    count = buckets[-1][1] if buckets else 0.0
    out = {"decisions": count}
    for q in (0.5, 0.99):
        out[f"p{int(q * 100)}_at_most"] = next((upper for upper, cum in buckets if count and cum >= q * count), 0.0)
    return out


def _daemon(tmp: str, decision_wait_ms: int, after_root_ms: int = 0) -> tuple[subprocess.Popen[bytes], int, int]:
    """The daemon pinned to CPU 0 (not yet ready: callers wait_ready inside their try/finally)."""
    grpc_port, tel_port = free_port(), free_port()
    cfg = Path(tmp) / "bench.toml"
    cfg.write_text(daemon_config(grpc_port, tel_port, decision_wait_ms, after_root_ms))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "-c", str(cfg)], preexec_fn=lambda: _pin(0))
    return proc, grpc_port, tel_port


def throughput_run(
    duration_s: float, decision_wait_ms: int, templates: list[bytes], after_root_ms: int = 0
) -> dict[str, Any]:
    warmup_s = decision_wait_ms / 1000 + 3.0  # decisions at steady state before the window opens
    with tempfile.TemporaryDirectory() as tmp:
        proc, grpc_port, tel_port = _daemon(tmp, decision_wait_ms, after_root_ms)
        try:
            wait_ready(tel_port, proc)
            ctx = mp.get_context("spawn")
            out: Any = ctx.Queue()
            stop_at = time.monotonic() + warmup_s + duration_s
            loader = ctx.Process(target=_load, args=(grpc_port, templates, stop_at, 8, 0, out))
            loader.start()
            time.sleep(warmup_s)  # benchmark pacing, not a test
            s0, cpu0, t0 = scrape(tel_port), cpu_seconds(proc.pid), time.monotonic()
            peak_rss = rss_bytes(proc.pid)
            while time.monotonic() < stop_at - 0.3:
                time.sleep(0.25)
                peak_rss = max(peak_rss, rss_bytes(proc.pid))
            s1, cpu1, t1 = scrape(tel_port), cpu_seconds(proc.pid), time.monotonic()
            counts = out.get(timeout=120)
            loader.join(timeout=60)
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    def delta(name: str, **labels: str) -> float:
        return total(s1, name, **labels) - total(s0, name, **labels)

    spans = delta("otelpipe_receiver_accepted_spans_total")
    cpu = cpu1 - cpu0
    decided_in = delta(f"{P}_spans_decided_total")
    kept = delta(f"{P}_spans_decided_total", decision="kept")
    return {
        "decision_wait_ms": decision_wait_ms,
        "decision_wait_after_root_ms": after_root_ms,
        **window_rates(spans, cpu, t1 - t0),
        "spans_decided": int(decided_in),
        "kept_share": round(kept / decided_in, 3) if decided_in else 0.0,
        "latency": latency_quantiles(s0, s1),
        "refused_requests": counts["err"],
        "ok_requests": counts["ok"],
        "spans_held_at_end": int(total(s1, f"{P}_spans_held")),
        "peak_rss_bytes": peak_rss,
    }


def memory_run(n_requests: int, templates: list[bytes]) -> dict[str, Any]:
    """RSS per buffered span: fill a daemon that decides nothing (decision_wait 10 min)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, grpc_port, tel_port = _daemon(tmp, 600_000)
        try:
            wait_ready(tel_port, proc)
            rss0 = rss_bytes(proc.pid)
            ctx = mp.get_context("spawn")
            out: Any = ctx.Queue()
            loader = ctx.Process(target=_load, args=(grpc_port, templates, time.monotonic() + 600, 4, n_requests, out))
            loader.start()
            counts = out.get(timeout=600)
            loader.join(timeout=60)
            # The gauges are published once per tick: wait for the last requests to show.
            deadline = time.monotonic() + 10
            s = scrape(tel_port)
            while total(s, f"{P}_spans_held") < counts["ok"] * 1000 and time.monotonic() < deadline:
                time.sleep(0.1)
                s = scrape(tel_port)
            rss1 = rss_bytes(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    held = total(s, f"{P}_spans_held")
    request_bytes = statistics.mean(len(t) for t in templates)
    return {
        "requests": counts["ok"],
        "spans_held": int(held),
        "bytes_held_accounted": int(total(s, f"{P}_bytes_held")),
        "request_bytes_per_span": round(request_bytes / 1000, 1),
        "rss_before_bytes": rss0,
        "rss_after_bytes": rss1,
        "rss_per_span_bytes": round((rss1 - rss0) / held, 1) if held else 0.0,
    }
