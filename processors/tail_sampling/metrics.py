"""Self-metrics of the tail sampling processor (``otelpipe_processor_tail_sampling_*``, labelled by processor id).

The metric families are created once per prometheus registry: a SIGHUP reload builds a new processor on the
same registry while the old one drains, so families are shared per daemon (SelfMetrics.shared), and each
instance takes label children. The decision latency histogram is a custom collector over plain bucket counts
(outcome.Histogram), shared by every instance with the same id, so it stays cumulative across reloads and costs
a bisect per trace instead of a metric update.

The engine counts in plain numbers; ``Publisher.publish`` moves them into these families once per tick.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client import Histogram as PromHistogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.model import Signal
from pipeline.telemetry.metrics import ProcessorMetrics, SelfMetrics
from processors.tail_sampling.engine import Histogram, Stats, TailSampler

PREFIX = "otelpipe_processor_tail_sampling"
_LATENCY = f"{PREFIX}_decision_latency_seconds"
_LATENCY_HELP = "time from a trace's first span (or log record) to its decision"


class _LatencyCollector(Collector):
    def __init__(self) -> None:
        self.histograms: dict[str, Histogram] = {}

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(_LATENCY, _LATENCY_HELP, labels=["processor"])

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(_LATENCY, _LATENCY_HELP, labels=["processor"])
        for processor, h in sorted(self.histograms.items()):
            counts = list(h.counts)
            buckets = []
            running = 0
            for bound, n in zip(h.bounds, counts, strict=False):
                running += n
                buckets.append((repr(float(bound)), running))
            buckets.append(("+Inf", running + counts[-1]))
            family.add_metric([processor], buckets, sum_value=h.sum)
        yield family


class Families:
    def __init__(self, registry: CollectorRegistry) -> None:
        p = ["processor"]
        self.traces_held = Gauge(f"{PREFIX}_traces_held", "traces buffered for a decision", p, registry=registry)
        self.spans_held = Gauge(f"{PREFIX}_spans_held", "spans buffered", p, registry=registry)
        self.log_records_held = Gauge(f"{PREFIX}_log_records_held", "log records buffered", p, registry=registry)
        self.bytes_held = Gauge(
            f"{PREFIX}_bytes_held",
            "bytes of buffered telemetry (item sizes from the wire) plus decided data waiting for the downstream",
            p,
            registry=registry,
        )
        self.backlog_bytes = Gauge(
            f"{PREFIX}_backlog_bytes", "decided data the downstream refused, held for a retry", p, registry=registry
        )
        self.policy_decisions = Counter(
            f"{PREFIX}_policy_decisions",
            "policy votes: sampled / not_sampled (drop policies: dropped / not_dropped)",
            [*p, "policy", "outcome"],
            registry=registry,
        )
        self.traces_decided = Counter(
            f"{PREFIX}_traces_decided",
            "traces decided, by decision (kept, dropped) and trigger (wait, root, max_duration, budget, shutdown)",
            [*p, "decision", "trigger"],
            registry=registry,
        )
        self.spans_decided = Counter(
            f"{PREFIX}_spans_decided",
            "spans of decided traces, by the policy that decided (empty: no policy sampled) and decision",
            [*p, "policy", "decision"],
            registry=registry,
        )
        self.late_spans = Counter(
            f"{PREFIX}_late_spans",
            "spans of already decided traces: kept, dropped, or error_rechecked (an ERROR span the dropped-id "
            "filter matched, decided again by the policies)",
            [*p, "outcome"],
            registry=registry,
        )
        self.log_records = Counter(
            f"{PREFIX}_log_records",
            "log records by path (trace, late, no_trace, no_spans) and outcome (kept, dropped)",
            [*p, "path", "outcome"],
            registry=registry,
        )
        self.refused = Counter(
            f"{PREFIX}_refused_items",
            "items refused upstream with a retryable error, by reason (budget, backlog, not_running)",
            [*p, "otel_signal", "reason"],
            registry=registry,
        )
        self.false_positives = Counter(
            f"{PREFIX}_dropped_filter_false_positives",
            "expected number of new trace ids the dropped-id filter mistook for dropped ones (each lookup adds "
            "the filter's current false-positive rate)",
            p,
            registry=registry,
        )
        self.tick_duration = PromHistogram(
            f"{PREFIX}_tick_duration_seconds",
            "duration of one decision tick (all slices)",
            p,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.latency = _LatencyCollector()
        registry.register(self.latency)


class Publisher:
    """One processor instance's view: label children bound once, stats moved in per tick."""

    def __init__(
        self, metrics: SelfMetrics, processor: str, pipelines: Mapping[Signal, str], signals: frozenset[Signal]
    ) -> None:
        f = self.families = metrics.shared("processor.tail_sampling", lambda m: Families(m.registry))
        self._processor = processor
        self.latency = f.latency.histograms.setdefault(processor, Histogram())
        self._processor_metrics: dict[Signal, ProcessorMetrics] = {
            s: metrics.processor(processor, pipelines.get(s, ""), s)
            for s in (Signal.TRACES, Signal.LOGS)
            if s in signals
        }
        self.traces_held = f.traces_held.labels(processor)
        self.spans_held = f.spans_held.labels(processor)
        self.log_records_held = f.log_records_held.labels(processor)
        self.bytes_held = f.bytes_held.labels(processor)
        self.backlog_bytes = f.backlog_bytes.labels(processor)
        self.false_positives = f.false_positives.labels(processor)
        self.tick_duration = f.tick_duration.labels(processor)

    def refused(self, signal: Signal, n: int, reason: str) -> None:
        self.families.refused.labels(self._processor, signal.value, reason).inc(n)

    def dropped(self, signal: Signal, n: int, reason: str) -> None:
        pm = self._processor_metrics.get(signal)
        if pm is not None and n:
            pm.dropped(n, reason)

    def publish(self, engine: TailSampler, backlog_bytes: int) -> None:
        stats: Stats = engine.stats.take()
        f = self.families
        p = self._processor
        for policy, outcome, n in engine.policies.take_votes():
            f.policy_decisions.labels(p, policy, outcome).inc(n)
        for (decision, trigger), n in stats.decided.items():
            f.traces_decided.labels(p, decision, trigger).inc(n)
        for (policy, decision), (_, spans, _) in stats.by_policy.items():
            f.spans_decided.labels(p, policy, decision).inc(spans)
        for outcome, n in stats.late_spans.items():
            f.late_spans.labels(p, outcome).inc(n)
        for (path, outcome), n in stats.logs.items():
            f.log_records.labels(p, path, outcome).inc(n)
        for reason, n in stats.dropped_spans.items():
            self.dropped(Signal.TRACES, n, reason)
        for reason, n in stats.dropped_logs.items():
            self.dropped(Signal.LOGS, n, reason)
        if stats.filter_false_positives:
            self.false_positives.inc(stats.filter_false_positives)
        self.traces_held.set(engine.held_traces)
        self.spans_held.set(engine.held_spans)
        self.log_records_held.set(engine.held_logs)
        self.bytes_held.set(engine.held_bytes + backlog_bytes)
        self.backlog_bytes.set(backlog_bytes)
