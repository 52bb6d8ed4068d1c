"""The ledger of what the pipeline holds in memory, and the memory guards receivers consult before reading.

Buffering components (exporter queues, batchers, processor buffers) register a cheap function that returns
the bytes they hold; the memory limiter adds them up as its "buffered bytes" measure, and
``otelpipe_buffered_bytes{component}`` shows them. Memory limiters register a guard; receivers ask
``refusal()`` before they read a request, so an over-limit daemon turns data away before spending memory
and CPU on decoding it (admission control). A guard re-evaluates itself when it is asked and its check
interval has passed, so there is no background task, and a daemon that refuses everything still notices
when memory comes back down.

There is one ledger per ``SelfMetrics`` (one per daemon; tests run several in a process). Registrations are
keyed by the registering object, not by name: during a reload an old and a new instance with the same id
coexist, and the old one's release must not remove the new one's entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.errors import Refused
from pipeline.telemetry.metrics import SelfMetrics

Guard = Callable[[], Refused | None]


class BufferLedger:
    def __init__(self) -> None:
        self._holders: dict[int, tuple[str, Callable[[], int]]] = {}
        self._guards: dict[int, Guard] = {}

    # Buffered bytes --------------------------------------------------------------------------------------

    def hold(self, owner: object, component: str, held_bytes: Callable[[], int]) -> None:
        """Count ``held_bytes()`` as buffered by ``component`` until ``release(owner)``."""
        self._holders[id(owner)] = (component, held_bytes)

    def release(self, owner: object) -> None:
        self._holders.pop(id(owner), None)

    def buffered_bytes(self) -> int:
        return sum(fn() for _, fn in self._holders.values())

    def by_component(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for component, fn in self._holders.values():
            out[component] = out.get(component, 0) + fn()
        return out

    # Memory guards ---------------------------------------------------------------------------------------

    def guard(self, owner: object, check: Guard) -> None:
        self._guards[id(owner)] = check

    def unguard(self, owner: object) -> None:
        self._guards.pop(id(owner), None)

    @property
    def guarded(self) -> bool:
        return bool(self._guards)

    def refusal(self) -> Refused | None:
        """The first guard's refusal, or None when every guard admits data (or there is none)."""
        for check in list(self._guards.values()):
            refused = check()
            if refused is not None:
                return refused
        return None


class _BufferedCollector(Collector):
    def __init__(self, ledger: BufferLedger) -> None:
        self._ledger = ledger

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "otelpipe_buffered_bytes",
            "bytes of telemetry held in memory by each buffering component (queues, batchers)",
            labels=["component"],
        )
        for component, held in sorted(self._ledger.by_component().items()):
            family.add_metric([component], held)
        yield family


def _new_ledger(metrics: SelfMetrics) -> BufferLedger:
    ledger = BufferLedger()
    metrics.registry.register(_BufferedCollector(ledger))
    return ledger


def ledger_for(metrics: SelfMetrics) -> BufferLedger:
    """The daemon's ledger (created, and its gauge registered, on first use)."""
    return metrics.shared("delivery.ledger", _new_ledger)
