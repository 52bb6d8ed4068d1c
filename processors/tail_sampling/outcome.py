"""What the pure core of the tail sampling processor (engine.py) hands its shell after a call.

Everything that leaves goes into an ``Outcome`` (requests to send, built by slicing) and every count into
``Stats`` (plain numbers; the shell turns them into metrics once per tick), under the label values below; the
decision latency goes into a ``Histogram`` of plain bucket counts that metrics.py exposes. Plain data with no
engine state, kept apart so that the engine's two halves (engine.py, decide.py) and the shell share it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence

from pipeline.delivery.merge import LazyBatch
from pipeline.model import Batch, Signal
from processors.tail_sampling.annotate import annotate_spans
from processors.tail_sampling.config import AnnotationsConfig
from processors.tail_sampling.policies import Decision
from processors.tail_sampling.wire import RequestBuilder

# Decision triggers (label values).
WAIT = "wait"
ROOT = "root"
MAX_DURATION = "max_duration"
BUDGET = "budget"
SHUTDOWN = "shutdown"

# Drop reasons (otelpipe_processor_dropped_items_total{reason}).
NOT_SAMPLED = "not_sampled"
LATE_NOT_SAMPLED = "late_not_sampled"
DROPPED_ON_SHUTDOWN = "shutdown"
LOG_POLICY = "log_policy"

# Decision latency buckets, seconds (first span -> decision): fine around common decision waits (5, 10, 30 s),
# so "p99 under decision_wait + 1 s" can be read off the histogram.
_FINE = (0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 5.5, 6, 7.5, 10, 10.5, 11, 12.5, 15, 20, 30, 30.5, 31)
LATENCY_BUCKETS: tuple[float, ...] = (*_FINE, 45, 60, 90, 120, 300)


class Histogram:
    """Bucket counts kept as plain ints (observing costs a bisect, not a metric update per trace)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class Stats:
    """Counts since the shell last took them."""

    def __init__(self) -> None:
        self.decided: Counter[tuple[str, str]] = Counter()  # (kept|dropped, trigger) -> traces
        self.dropped_spans: Counter[str] = Counter()  # reason -> spans
        self.dropped_logs: Counter[str] = Counter()  # reason -> log records
        self.late_spans: Counter[str] = Counter()  # kept | dropped | error_rechecked
        self.logs: Counter[tuple[str, str]] = Counter()  # (path, kept|dropped) -> records
        self.filter_false_positives = 0.0  # expected value
        # (deciding policy, kept|dropped) -> [traces, spans, span bytes]; policy "" = no policy sampled.
        self.by_policy: dict[tuple[str, str], list[int]] = {}

    def take(self) -> Stats:
        taken = Stats()
        taken.__dict__, self.__dict__ = self.__dict__, taken.__dict__
        return taken


class Outcome:
    """What to send downstream after one call: requests built by slicing, plus, when annotations are on, the
    decision behind each kept trace id."""

    __slots__ = ("decisions", "logs", "spans")

    def __init__(self, annotate: bool = False) -> None:
        self.spans = RequestBuilder()
        self.logs = RequestBuilder()
        self.decisions: dict[bytes, Decision] | None = {} if annotate else None

    def __bool__(self) -> bool:
        return bool(self.spans) or bool(self.logs)

    def batches(self, annotations: AnnotationsConfig) -> list[Batch]:
        """The requests to send, kept spans annotated. They carry their bytes and are parsed only if something
        downstream reads the message (the pii processor and the exporters work on the bytes)."""
        out: list[Batch] = []
        for raw, items in self.spans.encode():
            batch: Batch = LazyBatch(Signal.TRACES, raw, items)
            if self.decisions and annotate_spans(batch.message, self.decisions, annotations):
                batch.mark_modified()
            out.append(batch)
        out.extend(LazyBatch(Signal.LOGS, raw, items) for raw, items in self.logs.encode())
        return out
