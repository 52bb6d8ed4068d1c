"""Self-metrics of the delivery work (queues on disk, batchers, memory limiter, reloads).

They live next to the core ``SelfMetrics`` in the same registry, created once per registry on first use, with
the same naming rules (``otelpipe_`` prefix, collector names where one exists, ``_total`` on counters).
Components bind their label children once, at create time.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from pipeline.model import Signal
from pipeline.telemetry.metrics import SelfMetrics

P = "otelpipe"


class DeliveryMetrics:
    def __init__(self, m: SelfMetrics) -> None:
        r = m.registry
        el = ["exporter"]
        self.queue_bytes = Gauge(
            f"{P}_exporter_queue_bytes", "bytes held by the sending queue (queued and in flight)", el, registry=r
        )
        self.queue_disk_bytes = Gauge(
            f"{P}_exporter_queue_disk_bytes", "bytes of the disk queue's segment files", el, registry=r
        )
        self.queue_recovered = {
            s: Counter(
                f"{P}_exporter_queue_recovered_{s.item_name}",
                f"{s.item_name} found in a disk queue at start (left by a previous run) and sent again",
                el,
                registry=r,
            )
            for s in Signal
        }
        self.queue_corrupt_records = Counter(
            f"{P}_exporter_queue_corrupt_records",
            "records of a disk queue skipped because their checksum or framing was wrong",
            el,
            registry=r,
        )
        self.queue_corrupt_bytes = Counter(
            f"{P}_exporter_queue_corrupt_bytes", "bytes of a disk queue skipped as corrupt", el, registry=r
        )
        self.queue_write_errors = Counter(
            f"{P}_exporter_queue_write_errors",
            "writes to a disk queue that failed (disk full, I/O error); the data was refused, not lost",
            [*el, "reason"],
            registry=r,
        )
        self.exporter_batch_sends = Counter(
            f"{P}_exporter_batch_sends",
            "batches formed after the sending queue, by what triggered the send",
            [*el, "trigger"],
            registry=r,
        )
        pl = ["processor", "pipeline", "otel_signal"]
        self.processor_batch_sends = Counter(
            f"{P}_processor_batch_sends",
            "batches sent by the batch processor, by trigger (size, bytes, timeout, flush)",
            [*pl, "trigger"],
            registry=r,
        )
        self.processor_refused = Counter(
            f"{P}_processor_refused_items",
            "items a processor refused (a retryable error went back to the sender)",
            [*pl, "reason"],
            registry=r,
        )
        self.memory_limiter_refusing = Gauge(
            f"{P}_memory_limiter_refusing",
            "1 while the memory limiter refuses data",
            ["processor", "pipeline"],
            registry=r,
        )
        self.memory_limiter_reclaims = Counter(
            f"{P}_memory_limiter_reclaims",
            "times the memory limiter asked the allocator to return free memory (RSS over the soft limit)",
            ["processor", "pipeline"],
            registry=r,
        )
        self.reloads = Counter(
            f"{P}_service_reloads",
            "SIGHUP reloads by outcome (applied, unchanged, invalid, failed)",
            ["outcome"],
            registry=r,
        )


def delivery_metrics(metrics: SelfMetrics) -> DeliveryMetrics:
    """The delivery metrics registered in ``metrics``' registry (created on first use)."""
    return metrics.shared("delivery.metrics", DeliveryMetrics)
