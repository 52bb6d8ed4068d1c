"""Tail sampling benchmark: OTLP/gRPC -> tail_sampling (errors + latency + 10% probabilistic) -> nop exporter.

    python -m bench.tail_sampling [--part all|inprocess|throughput|memory] [--duration 10] [--runs 3]

- throughput: the daemon runs pinned to CPU 0, a closed-loop gRPC load generator pinned to CPU 1 sends 1000-span
  requests of 10-span traces (bench/gen.py) with trace ids made unique per request, so every trace is new (a
  replayed id would be a late span). Figures over a window that starts once decisions run at steady state:
  accepted spans per CPU-second of the daemon (all threads), decision latency p50/p99 (the processor's own
  histogram), share of spans kept. Median of ``--runs`` runs.
- memory: the same load into a daemon whose decision_wait is long enough that nothing is decided; RSS growth
  divided by the spans held (the processor's gauge): what one buffered span costs, everything included.
- inprocess: the same data through the pure core and through the alternative designs measured before choosing
  it (per-span costs, no network), so the choice can be checked on another machine.

Results go to bench/results/tail_sampling.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.gen import trace_requests
from bench.machine import machine_facts
from bench.tail_sampling_daemon import memory_run, throughput_run
from bench.tail_sampling_inprocess import inprocess, steady_state
from bench.tail_sampling_report import write_report

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "inprocess", "throughput", "memory"], default="all")
    ap.add_argument("--duration", type=float, default=10.0, help="throughput window, seconds")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--decision-wait-ms", type=int, default=5000)
    ap.add_argument(
        "--after-root-ms",
        default="0,1000",
        help="decision_wait_after_root_ms values to run, comma-separated (0: every trace waits decision_wait)",
    )
    ap.add_argument("--memory-requests", type=int, default=600, help="1000-span requests held for the RSS figure")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    report: dict[str, Any] = {"benchmark": "tail_sampling", "machine": machine_facts(), "date": time.strftime("%F")}
    templates = trace_requests(64, 1000)
    if args.part in ("all", "inprocess"):
        report["inprocess"] = inprocess()
        print(json.dumps(report["inprocess"]), flush=True)
        report["steady_state"] = steady_state()
        print(json.dumps(report["steady_state"]), flush=True)
    if args.part in ("all", "throughput"):
        runs = []
        for after_root_ms in (int(v) for v in args.after_root_ms.split(",")):
            for _ in range(args.runs):
                r = throughput_run(args.duration, args.decision_wait_ms, templates, after_root_ms)
                print(json.dumps(r), flush=True)
                runs.append(r)
        first = [r for r in runs if r["decision_wait_after_root_ms"] == runs[0]["decision_wait_after_root_ms"]]
        report["throughput"] = {
            "runs": runs,
            "median_spans_per_cpu_second": int(statistics.median(r["spans_per_cpu_second"] for r in first)),
            "medians_by_after_root_ms": {
                str(a): int(
                    statistics.median(r["spans_per_cpu_second"] for r in runs if r["decision_wait_after_root_ms"] == a)
                )
                for a in sorted({r["decision_wait_after_root_ms"] for r in runs})
            },
        }
    if args.part in ("all", "memory"):
        report["memory"] = memory_run(args.memory_requests, templates)
        print(json.dumps(report["memory"]), flush=True)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
