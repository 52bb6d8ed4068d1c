"""The result of one benchmark run as plain data for the report (a part of runner.TargetRun, over RunState).

Per signal, the loss accounting (bench/accounting.py) from the generators' counts, the sinks' records and the
daemon's drop counters; latency percentiles from the sinks; the daemon's CPU and memory figures, over the steady
window where there is one; the load generators' own figures; the time series for the plots.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bench import accounting, loadgen, promtext, sinks
from bench.run_state import RunState

# Items held below which "RSS bytes per buffered span" is not reported (a batch processor holds up to ~8K).
MEANINGFUL_BUFFER = 50_000


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[index], 3)


def latency_summary(samples: list[float]) -> dict[str, Any]:
    values = sorted(samples)
    return {
        "count": len(values),
        "p50_ms": _quantile(values, 0.50),
        "p95_ms": _quantile(values, 0.95),
        "p99_ms": _quantile(values, 0.99),
        "max_ms": round(values[-1], 3) if values else None,
        # Every percentile from 0 to 100, for the latency plot (the raw samples are not kept in the report).
        "percentiles_ms": [_quantile(values, i / 100) for i in range(101)] if values else [],
    }


class ResultAssembly(RunState):
    """Fill in ``result`` from what the run recorded."""

    # ---------------------------------------------------------------- summarize
    def _summarize(
        self,
        streams: list[loadgen.StreamResult],
        final: sinks.Final | None,
        metrics: list[promtext.Sample] | None,
        rss0: int,
    ) -> None:
        r, load = self.result, self.scenario.load
        p = self.prefix
        exported_span_ids = set(_split_ids(final.span_trace_ids)) if final else set()
        exported_log_ids = set(_split_ids(final.log_trace_ids)) if final else set()
        sink_items = final.stats.get("items", {}) if final else {}
        on_purpose = set(accounting.ON_PURPOSE_REASONS) | set(load.on_purpose_reasons)
        accounts: dict[str, Any] = {}
        for signal, bit, item, ids, required in (
            ("traces", 1, "spans", exported_span_ids, load.required_traces),
            ("logs", 2, "log_records", exported_log_ids, load.required_logs),
        ):
            if signal not in load.signals():
                continue
            counts = _merge_counts(streams, signal)
            drops: dict[str, int] | None = None
            daemon_accepted = None
            if metrics is not None:
                daemon_accepted = int(promtext.total(metrics, f"{p}_receiver_accepted_{item}"))
                if self.target == "otelpipe":
                    drops = _otelpipe_drops(metrics, signal, item)
            facts: list[accounting.TraceFacts] = []
            for stream in streams:
                facts += accounting.acked_trace_facts(stream.unit_infos, stream.acked_units, required, bit)
            exported = int(sink_items.get(signal, 0)) + (int(sink_items.get("loki", 0)) if signal == "logs" else 0)
            acc = accounting.account(
                signal,
                counts,
                exported,
                drops,
                daemon_accepted,
                facts,
                ids if final and load.accounting == "full" else None,
                on_purpose,
                discard=load.accounting == "discard",
            )
            if self.target != "otelpipe":
                # The peer's drop counters are not mapped: only the id checks and exported counts are compared.
                acc.problems = [x for x in acc.problems if "lost" not in x and "more items" not in x]
            r["problems"] += acc.problems
            accounts[signal] = asdict(acc)
        r["accounts"] = accounts
        r["latency"] = {
            "traces": latency_summary(final.span_latency_ms if final else []),
            "logs": latency_summary(final.log_latency_ms if final else []),
        }
        r["pii_leaks"] = int(final.stats.get("pii_leaks", 0)) if final else None
        if load.scan_pii and r["pii_leaks"]:
            r["problems"].append(f"{r['pii_leaks']} exported requests carried a value of the PII vocabulary")
        self._cpu_and_memory(streams, rss0)

    def _cpu_and_memory(self, streams: list[loadgen.StreamResult], rss0: int) -> None:
        r, s = self.result, self.settings
        accepted_spans = sum(a["accepted"] for k, a in r["accounts"].items() if k == "traces")
        accepted_items = sum(a["accepted"] for a in r["accounts"].values())
        cpu = r.get("daemon_cpu_seconds") or 0.0
        has_spans = "traces" in r["accounts"]
        r["spans_per_cpu_second"] = round(accepted_spans / cpu) if cpu > 0 and has_spans else None
        r["items_per_cpu_second"] = round(accepted_items / cpu) if cpu > 0 else None
        # The steady window: after warm-up, before the load ends; spans accepted per CPU-second in it.
        warm = self.scenario.load.warmup_s
        window = [x for x in self.samples if "cpu_s" in x and "accepted_spans" in x and warm <= x["t"] <= s.duration_s]
        if len(window) >= 2 and window[-1]["cpu_s"] > window[0]["cpu_s"]:
            a, b = window[0], window[-1]
            r["window_spans_per_cpu_second"] = round(
                (b["accepted_spans"] - a["accepted_spans"]) / (b["cpu_s"] - a["cpu_s"])
            )
            r["window_cpu_utilisation"] = round((b["cpu_s"] - a["cpu_s"]) / (b["t"] - a["t"]), 3)
            r["window_accepted_spans_per_s"] = round((b["accepted_spans"] - a["accepted_spans"]) / (b["t"] - a["t"]))
        rss = [x["rss"] for x in self.samples if "rss" in x]
        steady = sorted(x["rss"] for x in window) if window else sorted(rss)
        r["baseline_rss_bytes"] = rss0
        r["peak_rss_bytes"] = max(rss, default=None)
        r["steady_rss_bytes"] = steady[len(steady) // 2] if steady else None
        # Only where buffered spans are what the daemon holds (tail sampling's decision wait): a batch processor's
        # few thousand pending items beside the caches and gRPC buffers would give a meaningless figure.
        per_span = sorted(
            (x["rss"] - rss0) / x["buffered_items"] for x in window if x.get("buffered_items", 0) >= MEANINGFUL_BUFFER
        )
        r["rss_bytes_per_buffered_span"] = round(per_span[len(per_span) // 2]) if per_span else None
        limit = self.scenario.load.max_peak_rss_mib
        if limit and r["peak_rss_bytes"] and r["peak_rss_bytes"] > limit << 20:
            r["problems"].append(
                f"peak RSS {r['peak_rss_bytes'] >> 20} MiB is over the scenario's bound of {limit} MiB"
            )
        elapsed = max((x.elapsed_s for x in streams), default=0.0)
        r["load"] = {
            "mode": s.mode,
            "rate_spans_per_s": s.rate_spans_per_s if s.mode == "rate" else None,
            "duration_s": s.duration_s,
            "streams": [
                {
                    "index": x.index,
                    "transport": x.transport,
                    "cpu_seconds": round(x.cpu_seconds, 3),
                    "cpu_utilisation": round(x.cpu_seconds / x.elapsed_s, 3) if x.elapsed_s else None,
                    "status_codes": x.status_codes,
                }
                for x in streams
            ],
            "generator_cpu_seconds": round(sum(x.cpu_seconds for x in streams), 3),
            "elapsed_s": round(elapsed, 3),
        }
        r["timeseries"] = {
            "samples": self.samples,
            "load_per_second": {
                signal: {
                    outcome: _merge_series(streams, signal, outcome) for outcome in ("offered", "acked", "refused")
                }
                for signal in ("traces", "logs")
            },
        }


def _split_ids(blob: bytes) -> list[bytes]:
    return [blob[i : i + 16] for i in range(0, len(blob), 16)]


def _merge_counts(streams: list[loadgen.StreamResult], signal: str) -> accounting.LoadCounts:
    total: dict[str, int] = dict.fromkeys(loadgen.OUTCOMES, 0)
    for stream in streams:
        for outcome, n in stream.counts.get(signal, {}).items():
            total[outcome] += n
    return accounting.LoadCounts(**total)


def _merge_series(streams: list[loadgen.StreamResult], signal: str, outcome: str) -> dict[str, int]:
    merged: dict[int, int] = {}
    for stream in streams:
        for second, n in stream.per_second.get(signal, {}).get(outcome, {}).items():
            merged[second] = merged.get(second, 0) + n
    return {str(k): merged[k] for k in sorted(merged)}


def _otelpipe_drops(metrics: list[promtext.Sample], signal: str, item: str) -> dict[str, int]:
    """Drop counters of one signal by reason: processors' (by otel_signal) plus exporters'."""
    drops = promtext.by_label(metrics, "otelpipe_processor_dropped_items", "reason", otel_signal=signal)
    for reason, n in promtext.by_label(metrics, f"otelpipe_exporter_dropped_{item}", "reason").items():
        drops[reason] = drops.get(reason, 0) + n
    return {reason: int(n) for reason, n in drops.items()}
