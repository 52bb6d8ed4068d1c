"""Read a daemon's Prometheus text exposition into sums the harness needs (either otelpipe or otelcol names)."""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, Mapping[str, str], float]


def parse(text: str) -> list[Sample]:
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.append((sample.name, sample.labels, float(sample.value)))
    return out


def fetch(url: str, timeout_s: float = 5.0) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return parse(response.read().decode("utf-8", "replace"))


def _name_matches(name: str, base: str) -> bool:
    # Counters appear as base_total in text format; match base with or without the suffix.
    return name == base or name == base + "_total"


def total(samples: list[Sample], base: str, **labels: str) -> float:
    """Sum of every sample of ``base`` (``_total`` optional) whose labels include ``labels``."""
    return sum(
        value
        for name, lbl, value in samples
        if _name_matches(name, base) and all(lbl.get(k) == v for k, v in labels.items())
    )


def by_label(samples: list[Sample], base: str, label: str, **labels: str) -> dict[str, float]:
    """Sums of ``base`` grouped by one label's value."""
    out: dict[str, float] = defaultdict(float)
    for name, lbl, value in samples:
        if _name_matches(name, base) and all(lbl.get(k) == v for k, v in labels.items()):
            out[lbl.get(label, "")] += value
    return dict(out)
