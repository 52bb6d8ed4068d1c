"""What a benchmark run samples (a part of runner.TargetRun, over run_state.RunState).

Every ``SAMPLE_INTERVAL_S`` while the load runs, and while the daemon drains: the daemon's CPU-seconds (all
threads) and RSS from /proc, its /metrics (accepted items, items held inside processors, exporter queue sizes)
and the sinks' counters. Around the whole run: the machine's busy CPU and its load average, to tell whether
another workload shared the machine.
"""

from __future__ import annotations

import os
import time
import urllib.request
from typing import Any

import msgspec

from bench import promtext
from bench.procstat import cpu_seconds, rss_bytes
from bench.run_state import RunState

SAMPLE_INTERVAL_S = 1.0


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine spent busy so far (all cores), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        parts = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def loadavg() -> float:
    with open("/proc/loadavg", encoding="ascii") as f:
        return float(f.read().split()[0])


class Sampling(RunState):
    """Sample the daemon and the sinks; rates from the samples."""

    # ---------------------------------------------------------------- measure
    def _metrics(self) -> list[promtext.Sample] | None:
        try:
            return promtext.fetch(f"http://127.0.0.1:{self.ports['telemetry']}/metrics")
        except (OSError, ValueError):
            return None

    def _sink_stats(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['sink_http']}/bench/stats", timeout=5) as r:
                stats: dict[str, Any] = msgspec.json.decode(r.read())
                return stats
        except (OSError, ValueError):
            return {}

    def _buffered(self, m: list[promtext.Sample]) -> tuple[float, float]:
        """(items held inside processors, batches in exporter queues) by the daemon's own counters."""
        p = self.prefix
        held = (
            promtext.total(m, f"{p}_processor_incoming_items")
            - promtext.total(m, f"{p}_processor_outgoing_items")
            - promtext.total(m, f"{p}_processor_dropped_items")
        )
        return max(0.0, held), promtext.total(m, f"{p}_exporter_queue_size")

    def _sample(self, t0: float) -> dict[str, Any]:
        pid = self.daemon.pid
        sample: dict[str, Any] = {"t": round(time.monotonic() - t0, 3)}
        try:
            sample["cpu_s"] = cpu_seconds(pid)
            sample["rss"] = rss_bytes(pid)
        except (OSError, IndexError, ValueError):
            return sample
        m = self._metrics()
        if m is not None:
            p = self.prefix
            sample["accepted_spans"] = promtext.total(m, f"{p}_receiver_accepted_spans")
            sample["accepted_logs"] = promtext.total(m, f"{p}_receiver_accepted_log_records")
            sample["buffered_items"], sample["queued_batches"] = self._buffered(m)
        stats = self._sink_stats()
        items = stats.get("items", {})
        sample["exported_spans"] = items.get("traces", 0)
        sample["exported_logs"] = items.get("logs", 0) + items.get("loki", 0)
        sample["sink_idle_s"] = stats.get("idle_s", 0.0)
        self.samples.append(sample)
        return sample

    def _rate(self, key: str) -> float:
        with_key = [x for x in self.samples if key in x]
        if len(with_key) < 2:
            return 0.0
        a, b = with_key[-2], with_key[-1]
        dt = b["t"] - a["t"]
        return float((b[key] - a[key]) / dt) if dt > 0 else 0.0
