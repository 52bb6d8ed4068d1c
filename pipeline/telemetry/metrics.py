"""Self-metrics, named after the collector's own (``otelcol_receiver_accepted_spans`` becomes
``otelpipe_receiver_accepted_spans_total``) so collector dashboards port by a prefix change.

Each daemon owns one ``SelfMetrics`` (its own prometheus_client registry, so tests can run several in one
process). Components get small bound views at create time; label lookups happen once there, not per batch.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, ProcessCollector, disable_created_metrics
from prometheus_client.metrics import MetricWrapperBase

from pipeline import __version__
from pipeline.model import Signal

P = "otelpipe"
T = TypeVar("T")

# The collector exposes no *_created series; they double the scrape size for nothing here.
disable_created_metrics()  # type: ignore[no-untyped-call]


def _items(kind: str, what: str, doc: str, labels: list[str]) -> dict[Signal, tuple[str, str, list[str]]]:
    return {s: (f"{P}_{kind}_{what.format(item=s.item_name)}", doc.format(item=s.item_name), labels) for s in Signal}


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, process_metrics: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._shared: dict[str, Any] = {}
        r = self.registry
        if process_metrics:
            # otelpipe_process_resident_memory_bytes, otelpipe_process_cpu_seconds_total, ...
            ProcessCollector(namespace=P, registry=r)
        Info(f"{P}_build", "otelpipe build information", registry=r).info(
            {"version": __version__, "python": platform.python_version()}
        )

        def counters(kind: str, what: str, doc: str, labels: list[str]) -> dict[Signal, Counter]:
            return {
                s: Counter(name, d, lbl, registry=r) for s, (name, d, lbl) in _items(kind, what, doc, labels).items()
            }

        rl = ["receiver", "transport"]
        self.receiver_accepted = counters("receiver", "accepted_{item}", "{item} accepted by the pipeline", rl)
        self.receiver_refused = counters(
            "receiver", "refused_{item}", "{item} not accepted (refused downstream or rejected as bad)", rl
        )
        self.receiver_requests = Counter(
            f"{P}_receiver_requests",
            "export requests by outcome (ok, partial, invalid, too_large, unsupported, refused, draining, error)",
            ["receiver", "transport", "otel_signal", "outcome"],
            registry=r,
        )
        el = ["exporter"]
        self.exporter_sent = counters("exporter", "sent_{item}", "{item} the backend accepted", el)
        self.exporter_send_failed = counters(
            "exporter", "send_failed_{item}", "{item} in send attempts that failed (retried or not)", el
        )
        self.exporter_enqueue_failed = counters(
            "exporter", "enqueue_failed_{item}", "{item} refused because the sending queue was full", el
        )
        self.exporter_dropped = counters(
            "exporter", "dropped_{item}", "{item} dropped after being accepted, by reason", ["exporter", "reason"]
        )
        self.exporter_retries = Counter(f"{P}_exporter_retries", "send retries", el, registry=r)
        self.exporter_queue_size = Gauge(f"{P}_exporter_queue_size", "batches in the sending queue", el, registry=r)
        self.exporter_queue_capacity = Gauge(
            f"{P}_exporter_queue_capacity", "capacity of the sending queue, in batches", el, registry=r
        )
        pl = ["processor", "pipeline", "otel_signal"]
        self.processor_incoming = Counter(f"{P}_processor_incoming_items", "items into a processor", pl, registry=r)
        self.processor_outgoing = Counter(f"{P}_processor_outgoing_items", "items out of a processor", pl, registry=r)
        self.processor_dropped = Counter(
            f"{P}_processor_dropped_items", "items a processor dropped, by reason", [*pl, "reason"], registry=r
        )

    def shared(self, key: str, build: Callable[[SelfMetrics], T]) -> T:
        """What a component kind defines once per daemon (its own metric families, a ledger), built on first use.

        A reload creates new component instances on the same registry while the old ones drain; registering
        their families again would fail, so they share what the first instance built."""
        found = self._shared.get(key)
        if found is None:
            found = self._shared[key] = build(self)
        return cast(T, found)

    def receiver(self, receiver: str, transport: str) -> ReceiverMetrics:
        return ReceiverMetrics(self, receiver, transport)

    def exporter(self, exporter: str) -> ExporterMetrics:
        return ExporterMetrics(self, exporter)

    def processor(self, processor: str, pipeline: str, signal: Signal) -> ProcessorMetrics:
        return ProcessorMetrics(self, processor, pipeline, signal)


class ReceiverMetrics:
    def __init__(self, m: SelfMetrics, receiver: str, transport: str) -> None:
        self._m = m
        self._labels = (receiver, transport)
        self._accepted = {s: c.labels(receiver, transport) for s, c in m.receiver_accepted.items()}
        self._refused = {s: c.labels(receiver, transport) for s, c in m.receiver_refused.items()}
        self._requests: dict[tuple[Signal, str], MetricWrapperBase] = {}

    def accepted(self, signal: Signal, n: int) -> None:
        self._accepted[signal].inc(n)

    def refused(self, signal: Signal, n: int) -> None:
        self._refused[signal].inc(n)

    def request(self, signal: Signal, outcome: str) -> None:
        key = (signal, outcome)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self._m.receiver_requests.labels(*self._labels, signal.value, outcome)
        child.inc()  # type: ignore[attr-defined]


class ExporterMetrics:
    def __init__(self, m: SelfMetrics, exporter: str) -> None:
        self._m = m
        self.exporter = exporter
        self._sent = {s: c.labels(exporter) for s, c in m.exporter_sent.items()}
        self._failed = {s: c.labels(exporter) for s, c in m.exporter_send_failed.items()}
        self._enqueue_failed = {s: c.labels(exporter) for s, c in m.exporter_enqueue_failed.items()}
        self._retries = m.exporter_retries.labels(exporter)
        self.queue_size = m.exporter_queue_size.labels(exporter)
        self.queue_capacity = m.exporter_queue_capacity.labels(exporter)

    def sent(self, signal: Signal, n: int) -> None:
        self._sent[signal].inc(n)

    def send_failed(self, signal: Signal, n: int) -> None:
        self._failed[signal].inc(n)

    def enqueue_failed(self, signal: Signal, n: int) -> None:
        self._enqueue_failed[signal].inc(n)

    def dropped(self, signal: Signal, n: int, reason: str) -> None:
        self._m.exporter_dropped[signal].labels(self.exporter, reason).inc(n)

    def retried(self) -> None:
        self._retries.inc()


class ProcessorMetrics:
    def __init__(self, m: SelfMetrics, processor: str, pipeline: str, signal: Signal) -> None:
        self._m = m
        self._labels = (processor, pipeline, signal.value)
        self._in = m.processor_incoming.labels(*self._labels)
        self._out = m.processor_outgoing.labels(*self._labels)

    def incoming(self, n: int) -> None:
        self._in.inc(n)

    def outgoing(self, n: int) -> None:
        self._out.inc(n)

    def dropped(self, n: int, reason: str) -> None:
        self._m.processor_dropped.labels(*self._labels, reason).inc(n)
