"""Self-metrics of the pii processor, on the daemon's registry: matches by detector and action, values
scanned, bytes scanned. Counts only: the original values never leave the processor.

prometheus_client refuses to register a name twice on one registry, and each pipeline gets its own pii
instance, so the metric families are created once per daemon (SelfMetrics.shared) and each instance binds its
labels.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter

from pipeline.model import Signal
from pipeline.telemetry.metrics import SelfMetrics

PREFIX = "otelpipe_processor_pii"


class _Families:
    def __init__(self, registry: CollectorRegistry) -> None:
        base = ["processor", "pipeline", "otel_signal"]
        self.matches = Counter(
            f"{PREFIX}_matches",
            "values (or parts of values) masked, by detector or rule and by the action applied",
            [*base, "detector", "action"],
            registry=registry,
        )
        self.values_scanned = Counter(
            f"{PREFIX}_values_scanned",
            "values the strict detectors checked one by one (those the bulk pass flagged)",
            base,
            registry=registry,
        )
        self.bytes_scanned = Counter(
            f"{PREFIX}_bytes_scanned", "serialized bytes of batches the bulk pass scanned", base, registry=registry
        )
        self.batches_modified = Counter(
            f"{PREFIX}_batches_modified", "batches in which at least one value was masked", base, registry=registry
        )


class PiiMetrics:
    """Bound to one processor instance; label lookups are cached, not repeated per batch."""

    def __init__(self, metrics: SelfMetrics, processor: str, pipeline: str, signal: Signal) -> None:
        f = metrics.shared("processor.pii", lambda m: _Families(m.registry))
        self._labels = (processor, pipeline, signal.value)
        self._matches_family = f.matches
        self._matches: dict[tuple[str, str], Counter] = {}
        self._values = f.values_scanned.labels(*self._labels)
        self._bytes = f.bytes_scanned.labels(*self._labels)
        self._modified = f.batches_modified.labels(*self._labels)

    def record(self, nbytes: int, values: int, matches: Mapping[tuple[str, str], int], modified: bool) -> None:
        self._bytes.inc(nbytes)
        if values:
            self._values.inc(values)
        for key, n in matches.items():
            child = self._matches.get(key)
            if child is None:
                child = self._matches[key] = self._matches_family.labels(*self._labels, *key)
            child.inc(n)
        if modified:
            self._modified.inc()
