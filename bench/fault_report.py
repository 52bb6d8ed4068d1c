"""The fault benchmark's report: bench/results/faults.{json,md}, a row per scenario and the cost table.

``Row`` is one scenario's accounting by span id (bench/faults.py fills it in); ``write_report`` renders the rows
and the cost cases (bench/fault_cost.py) as JSON with stable keys and as the Markdown tables of faults.md.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.fault_rig import CLIENT_GIVE_UP_S, SPANS_PER_REQUEST
from bench.machine import machine_facts, machine_line


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
        f"{machine_line(machine)}. Reproduce: `python -m bench.faults` "
        f"({args.rate:g} requests/s of "
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
