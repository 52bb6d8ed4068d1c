"""Receive-path benchmark: OTLP (gRPC, HTTP protobuf, HTTP JSON) -> otlp receiver -> nop exporter.

    python -m bench.receive [--transport grpc|http|json|all] [--duration 10] [--spans-per-request 1000]

The daemon runs as a subprocess pinned to CPU 0; the load generator runs closed-loop in another process pinned
to CPU 1. The figure is accepted spans (the daemon's own counter) per CPU-second of the daemon process, all
threads counted, over a window after warm-up. Results go to bench/results/receive_transports.{json,md}
(``python -m bench run receive`` writes the harness report of the receive scenario to results/receive.*).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.gen import trace_requests
from bench.machine import machine_facts, machine_line
from bench.procstat import cpu_seconds, rss_bytes

TRACE_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RESULTS = Path(__file__).parent / "results"
# The harness writes results/receive.* for the receive scenario; this per-transport table has its own name.
REPORT_NAME = "receive_transports"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def window_rates(spans: float, cpu: float, wall: float) -> dict[str, float]:
    """The figures every daemon benchmark reports for its measuring window: spans accepted in it, the daemon's
    CPU-seconds (all threads), and the rates per CPU-second and per wall second."""
    return {
        "window_s": round(wall, 2),
        "accepted_spans": int(spans),
        "daemon_cpu_seconds": round(cpu, 2),
        "spans_per_cpu_second": int(spans / cpu) if cpu > 0 else 0,
        "spans_per_second_wall": int(spans / wall) if wall > 0 else 0,
        "daemon_cpu_utilisation": round(cpu / wall, 2) if wall > 0 else 0.0,
    }


def daemon_config(
    grpc_port: int, telemetry_port: int, *, http_port: int = 0, processors: Sequence[str] = (), tables: str = ""
) -> str:
    """A bench daemon's config: the otlp receiver on loopback (HTTP only with ``http_port``), then traces through
    ``processors`` (configured by the TOML ``tables``) into nop."""
    http = f"127.0.0.1:{http_port}" if http_port else ""
    return f"""
[service]
telemetry_endpoint = "127.0.0.1:{telemetry_port}"
log_level = "warning"
[receivers.otlp]
grpc_endpoint = "127.0.0.1:{grpc_port}"
http_endpoint = "{http}"
{tables}
[exporters.nop]
[pipelines.traces]
receivers = ["otlp"]
processors = {json.dumps(list(processors))}
exporters = ["nop"]
"""


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


def accepted_spans(telemetry_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{telemetry_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("otelpipe_receiver_accepted_spans_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_ready(telemetry_port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{telemetry_port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("daemon not ready in time")


def closed_loop_grpc(
    port: int, request_for: Callable[[int], bytes | None], stop_at: float, concurrency: int
) -> dict[str, int]:
    """Closed-loop OTLP/gRPC trace export until ``stop_at``: thread i sends ``request_for(i)``, then
    ``request_for(i + concurrency)`` and so on, each when the previous one was answered; a refused request is sent
    again. ``request_for`` returns None when there is nothing more to send. Counts of answers ok and refused."""
    import threading

    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)])
    call = channel.unary_unary(TRACE_PATH, request_serializer=None, response_deserializer=None)
    counts = {"ok": 0, "err": 0}
    lock = threading.Lock()

    def worker(i: int) -> None:
        ok = err = 0
        k = i
        while time.monotonic() < stop_at:
            payload = request_for(k)
            if payload is None:
                break
            try:
                call(payload, timeout=10)
                ok += 1
                k += concurrency
            except grpc.RpcError:
                err += 1  # refused: send the same request again
        with lock:
            counts["ok"] += ok
            counts["err"] += err

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    channel.close()
    return counts


def _load_grpc(port: int, payloads: list[bytes], stop_at: float, concurrency: int, out: Any) -> None:
    _pin(1)
    n = len(payloads)
    out.put(closed_loop_grpc(port, lambda k: payloads[k % n], stop_at, concurrency))


def _load_http(port: int, payloads: list[bytes], stop_at: float, concurrency: int, ctype: str, out: Any) -> None:
    import aiohttp

    _pin(1)

    async def main() -> dict[str, int]:
        counts = {"ok": 0, "err": 0}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

            async def worker(i: int) -> None:
                n = len(payloads)
                k = i
                while time.monotonic() < stop_at:
                    async with session.post(
                        f"http://127.0.0.1:{port}/v1/traces", data=payloads[k % n], headers={"Content-Type": ctype}
                    ) as r:
                        await r.read()
                        counts["ok" if r.status == 200 else "err"] += 1
                    k += 1

            await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return counts

    out.put(asyncio.run(main()))


def run_one(transport: str, duration_s: float, spans_per_request: int, warmup_s: float = 2.0) -> dict[str, Any]:
    if transport == "json":
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        from pipeline import otlpjson
        from pipeline.model import Signal

        payloads = []
        for raw in trace_requests(8, spans_per_request):
            msg = ExportTraceServiceRequest()
            msg.ParseFromString(raw)
            payloads.append(otlpjson.encode(Signal.TRACES, msg))
    else:
        payloads = trace_requests(16, spans_per_request)
    grpc_port, http_port, tel_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.toml"
        cfg.write_text(daemon_config(grpc_port, tel_port, http_port=http_port))
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", "-c", str(cfg)],
            preexec_fn=lambda: _pin(0),
        )
        try:
            wait_ready(tel_port, proc)
            ctx = mp.get_context("spawn")
            out: Any = ctx.Queue()
            stop_at = time.monotonic() + warmup_s + duration_s
            if transport == "grpc":
                loader = ctx.Process(target=_load_grpc, args=(grpc_port, payloads, stop_at, 8, out))
            else:
                ctype = "application/json" if transport == "json" else "application/x-protobuf"
                loader = ctx.Process(target=_load_http, args=(http_port, payloads, stop_at, 8, ctype, out))
            loader.start()
            time.sleep(warmup_s)  # bench timing, not a test: the window starts after warm-up
            cpu0, acc0, t0 = cpu_seconds(proc.pid), accepted_spans(tel_port), time.monotonic()
            peak_rss = rss_bytes(proc.pid)
            while time.monotonic() < stop_at - 0.2:
                time.sleep(0.2)
                peak_rss = max(peak_rss, rss_bytes(proc.pid))
            cpu1, acc1, t1 = cpu_seconds(proc.pid), accepted_spans(tel_port), time.monotonic()
            counts = out.get(timeout=60)
            loader.join(timeout=30)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    spans = acc1 - acc0
    cpu = cpu1 - cpu0
    return {
        "transport": transport,
        "spans_per_request": spans_per_request,
        "request_bytes_avg": sum(map(len, payloads)) // len(payloads),
        **window_rates(spans, cpu, t1 - t0),
        "requests_ok": counts["ok"],
        "requests_failed": counts["err"],
        "peak_rss_bytes": peak_rss,
        "daemon_exit_code": proc.returncode,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transport", choices=["grpc", "http", "json", "all"], default="all")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--spans-per-request", type=int, default=1000)
    ap.add_argument("--json-spans-per-request", type=int, default=100)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    transports = ["grpc", "http", "json"] if args.transport == "all" else [args.transport]
    runs = []
    for t in transports:
        spr = args.json_spans_per_request if t == "json" else args.spans_per_request
        r = run_one(t, args.duration, spr)
        print(json.dumps(r), flush=True)
        runs.append(r)
    machine = machine_facts()
    report = {"benchmark": "receive", "machine": machine, "date": time.strftime("%Y-%m-%d"), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{REPORT_NAME}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Receive path: OTLP -> otlp receiver -> nop exporter",
        "",
        f"{machine_line(machine)}. Daemon pinned to one core, load generator on the other; closed loop, "
        "8 concurrent requests.",
        "",
        "| transport | spans/request | spans per CPU-second | spans/s (wall) | daemon CPU | failed requests "
        "| peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['transport']} | {r['spans_per_request']} | {r['spans_per_cpu_second']:,} | "
            f"{r['spans_per_second_wall']:,} | {r['daemon_cpu_utilisation']:.0%} | {r['requests_failed']} | "
            f"{r['peak_rss_bytes'] / 2**20:.0f} MiB |"
        )
    (args.out / f"{REPORT_NAME}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
