"""The report of a run: JSON (stable keys, documented in bench/README.md), Markdown and a PNG of plots.

The top-level JSON keys are otelpipe's figures (``scenario``, ``offered_spans``, ``accepted_spans``,
``refused_spans``, ``exported_spans``, ``lost_spans``, ``spans_per_cpu_second``, ``latency_p99_ms``,
``peak_rss_bytes``, ...); ``targets`` holds the full result of each target, ``peer`` says whether the reference
collector ran (and why not), ``ratio`` is otelpipe / otelcol for the headline figures.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_line

SCHEMA = "otelpipe-bench/1"
ITEMS = {"traces": "spans", "logs": "log_records"}
FIELDS = ("offered", "accepted", "refused", "failed", "timeout", "unsent", "exported", "dropped_on_purpose", "lost")


def _ratio(ours: Any, peer: Any) -> float | None:
    if isinstance(ours, int | float) and isinstance(peer, int | float) and peer:
        return round(ours / peer, 3)
    return None


def _latency(result: dict[str, Any]) -> dict[str, Any]:
    lat: dict[str, dict[str, Any]] = result.get("latency", {})
    traces = lat.get("traces", {})
    return traces if traces.get("count") else lat.get("logs", {})


def build(
    scenario: str,
    description: str,
    settings: dict[str, Any],
    machine: dict[str, Any],
    results: dict[str, dict[str, Any]],
    peer_requested: bool,
) -> dict[str, Any]:
    ours = results["otelpipe"]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "scenario": scenario,
        "description": description,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "settings": settings,
        "other_load_present": ours.get("other_load", {}).get("present"),
    }
    accounts = ours.get("accounts", {})
    for signal, item in ITEMS.items():
        acc = accounts.get(signal)
        for name in FIELDS:
            report[f"{name}_{item}"] = acc.get(name) if acc else None
        report[f"counted_drop_{item}"] = sum(acc.get("counted_drops", {}).values()) if acc else None
    report["missing_required_traces"] = sum(a.get("missing_required_traces", 0) for a in accounts.values())
    lat = _latency(ours)
    for q in ("p50", "p95", "p99"):
        report[f"latency_{q}_ms"] = lat.get(f"{q}_ms")
    for key in (
        "spans_per_cpu_second",
        "items_per_cpu_second",
        "window_spans_per_cpu_second",
        "daemon_cpu_seconds",
        "peak_rss_bytes",
        "steady_rss_bytes",
        "baseline_rss_bytes",
        "rss_bytes_per_buffered_span",
        "pii_leaks",
    ):
        report[key] = ours.get(key)
    problems = [f"otelpipe: {p}" for p in ours.get("problems", [])]
    peer = results.get("otelcol")
    if not peer_requested:
        report["peer"] = {"status": "not requested"}
    elif peer is None or "absent" in peer:
        reason = (peer or {}).get("absent", "not run")
        report["peer"] = {"status": "absent", "reason": reason}
    else:
        report["peer"] = {"status": "ran", "notes": peer.get("peer_notes", []), "crashed": peer.get("crashed")}
        problems += [f"otelcol: {p}" for p in peer.get("problems", [])]
        peer_lat = _latency(peer)
        report["ratio"] = {
            "spans_per_cpu_second": _ratio(ours.get("spans_per_cpu_second"), peer.get("spans_per_cpu_second")),
            "items_per_cpu_second": _ratio(ours.get("items_per_cpu_second"), peer.get("items_per_cpu_second")),
            "latency_p99_ms": _ratio(lat.get("p99_ms"), peer_lat.get("p99_ms")),
            "peak_rss_bytes": _ratio(ours.get("peak_rss_bytes"), peer.get("peak_rss_bytes")),
        }
    report["problems"] = problems
    # ok: otelpipe ran to the end, lost nothing and kept what it had to (the peer's problems are information).
    report["ok"] = not ours.get("problems") and not ours.get("crashed") and "absent" not in ours
    report["targets"] = results
    return report


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and unit != "ms":
        value = round(value)
    if unit == "MiB":
        return f"{value / 2**20:,.0f} MiB"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if isinstance(value, int | float):
        return f"{value:,.0f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}"
    return str(value)


def _load_words(s: dict[str, Any]) -> str:
    if s.get("mode") == "rate":
        return f"open-loop load at {s.get('rate_spans_per_s') or 0:,.0f} items/s"
    return "closed-loop load at max"


def _pinning_words(s: dict[str, Any]) -> str:
    if s.get("pinned"):
        return f"daemon pinned to CPU {s.get('daemon_cpu')}, load generators and sinks on CPU {s.get('load_cpu')}."
    return "nothing pinned."


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    results = report["targets"]
    names = [n for n in ("otelpipe", "otelcol") if n in results and "absent" not in results[n]]
    s = report["settings"]
    lines = [
        f"# bench: {report['scenario']}",
        "",
        report["description"],
        "",
        f"Run {report['date']}: {_load_words(s)} for {s.get('duration_s')} s; " + _pinning_words(s),
        f"{machine_line(m)}. Other load during the run: "
        + ("**yes** (see other_load in the JSON)" if report.get("other_load_present") else "no")
        + f" (1-min load average before: {results['otelpipe'].get('other_load', {}).get('loadavg_before', '-')}).",
        "",
    ]
    peer = report["peer"]
    if peer["status"] == "absent":
        lines += [f"**Reference collector: absent.** {peer['reason']}", ""]
    elif peer["status"] == "not requested":
        lines += ["Reference collector: not requested (`--peer otelcol` runs it side by side).", ""]
    header = "| | " + " | ".join(names) + (" | otelpipe / otelcol |" if len(names) == 2 else " |")
    lines += [header, "|---" * (len(names) + 1 + (len(names) == 2)) + "|"]
    ratio = report.get("ratio", {})
    rows = [
        ("spans per CPU-second", "spans_per_cpu_second", "", "spans_per_cpu_second"),
        ("items per CPU-second (spans + log records)", "items_per_cpu_second", "", "items_per_cpu_second"),
        ("latency p50", ("p50_ms",), "ms", None),
        ("latency p95", ("p95_ms",), "ms", None),
        ("latency p99", ("p99_ms",), "ms", "latency_p99_ms"),
        ("daemon CPU-seconds", "daemon_cpu_seconds", "", None),
        ("peak RSS", "peak_rss_bytes", "MiB", "peak_rss_bytes"),
        ("steady RSS", "steady_rss_bytes", "MiB", None),
        ("RSS bytes per buffered span", "rss_bytes_per_buffered_span", "", None),
    ]
    for label, key, unit, ratio_key in rows:
        cells = []
        for n in names:
            value = _latency(results[n]).get(key[0]) if isinstance(key, tuple) else results[n].get(key)
            cells.append(_fmt(value, unit))
        extra = f" | {_fmt(ratio.get(ratio_key)) if ratio_key else ''}" if len(names) == 2 else ""
        if ratio_key and len(names) == 2 and ratio.get(ratio_key) is not None:
            extra = f" | {ratio[ratio_key]:.2f}x"
        lines.append(f"| {label} | " + " | ".join(cells) + extra + " |")
    lines += ["", "## Accounting (items)", ""]
    lines += [
        "| target | signal | offered | accepted | refused | failed | timeout | unsent | exported | "
        "dropped on purpose | counted drops | lost | missing required traces |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        for signal, acc in results[n].get("accounts", {}).items():
            lost = acc["lost"] if n == "otelpipe" else f"({acc['lost']}, drops not mapped)"
            lines.append(
                f"| {n} | {signal} | {acc['offered']:,} | {acc['accepted']:,} | {acc['refused']:,} | {acc['failed']:,} "
                f"| {acc['timeout']:,} | {acc['unsent']:,} | {acc['exported']:,} | {acc['dropped_on_purpose']:,} "
                f"| {sum(acc['counted_drops'].values()):,} | {lost} | {acc['missing_required_traces']:,} |"
            )
    lines += ["", "lost = accepted - exported - dropped on purpose - counted drops (must be 0).", ""]
    if peer["status"] == "ran" and peer.get("notes"):
        lines += ["Peer configuration notes: " + "; ".join(peer["notes"]), ""]
    lines += ["## Verdict", ""]
    lines += ["**OK**: nothing lost, every required trace exported." if report["ok"] else "**NOT OK**:"]
    lines += [f"- {p.splitlines()[0]}" for p in report["problems"]]
    lines += ["", f"![plots]({report['scenario']}.png)", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {n: r for n, r in report["targets"].items() if "absent" not in r}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    ax_tp, ax_lat, ax_rss = axes
    for name, result in results.items():
        samples = result.get("timeseries", {}).get("samples", [])
        key = "accepted_spans" if any(s.get("accepted_spans") for s in samples) else "accepted_logs"
        exp_key = "exported_spans" if key == "accepted_spans" else "exported_logs"
        for k, style, label in ((key, "-", "accepted"), (exp_key, "--", "exported")):
            pts = [(s["t"], s[k]) for s in samples if k in s]
            rates = [
                ((t0 + t1) / 2, (v1 - v0) / (t1 - t0)) for (t0, v0), (t1, v1) in itertools.pairwise(pts) if t1 > t0
            ]
            if rates:
                ax_tp.plot([x for x, _ in rates], [y for _, y in rates], style, label=f"{name} {label}")
        lat = _latency(result).get("percentiles_ms", [])
        if lat:
            ax_lat.plot(list(range(len(lat))), lat, label=name)
        rss = [(s["t"], s["rss"] / 2**20) for s in samples if "rss" in s]
        if rss:
            ax_rss.plot([t for t, _ in rss], [v for _, v in rss], label=name)
    ax_tp.set(title="throughput (items/s)", xlabel="seconds")
    ax_lat.set(title="end-to-end latency by percentile", xlabel="percentile", ylabel="ms", yscale="log")
    ax_rss.set(title="daemon RSS (MiB)", xlabel="seconds")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"bench {report['scenario']}: {report['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    name = report["scenario"]
    paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"]
    paths[0].write_text(json.dumps(report, indent=1, sort_keys=False, default=str) + "\n")
    paths[1].write_text(markdown(report))
    plot(report, paths[2])
    return paths


def readme_table(results_dir: Path) -> str:
    """The README's table: one row per committed scenario report."""
    lines = [
        "| scenario | spans (or log records) per CPU-second | p99 latency | peak RSS | lost (spans, logs) "
        "| vs otelcol (per CPU-s) | other load |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("schema") != SCHEMA:
            continue
        ratios = data.get("ratio") or {}
        ratio = ratios.get("spans_per_cpu_second") or ratios.get("items_per_cpu_second")
        peer = data.get("peer", {}).get("status")
        vs = f"{ratio:.2f}x" if ratio else ("absent" if peer == "absent" else "-")
        lost = [data.get("lost_spans"), data.get("lost_log_records")]
        lost_s = ", ".join(str(x) for x in lost if x is not None) or "-"
        per_cpu = data.get("spans_per_cpu_second") or data.get("items_per_cpu_second")
        lines.append(
            f"| [{data['scenario']}](results/{path.stem}.md) | {_fmt(per_cpu)} "
            f"| {_fmt(data.get('latency_p99_ms'), 'ms')} | {_fmt(data.get('peak_rss_bytes'), 'MiB')} | {lost_s} | {vs} "
            f"| {'yes' if data.get('other_load_present') else 'no'} |"
        )
    return "\n".join(lines)
