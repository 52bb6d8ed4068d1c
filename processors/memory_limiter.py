"""The ``memory_limiter`` processor: refuse data, retryably, before the daemon runs out of memory.

Two measures, two limits:
- process RSS against a soft limit, ``limit_mib - spike_limit_mib``: the spike margin is the growth the
  daemon may see between two checks (``check_interval_ms``) without passing ``limit_mib``;
- bytes held in the pipeline's buffers (exporter queues, batchers: the ledger in pipeline/delivery/ledger.py)
  against ``buffered_limit_mib``; this one is known exactly at every request, so it reacts at once.

Above either, ``consume`` raises ``Refused`` with a ~1 s hint, which the receiver answers as UNAVAILABLE +
RetryInfo / 503 + Retry-After: OTLP clients retry instead of dropping. The limiter also registers itself as a
guard in the ledger, so the receivers refuse before they even read and decode a request (admission control).
Once both measures are back below their limits, data is accepted again.

RSS and the malloc tuning (DESIGN.md section 4): glibc keeps freed memory mapped, so RSS stays high after a
spike although the buffers emptied. When RSS is over the soft limit, the limiter first asks malloc to give free
pages back (``malloc_trim``), then reads RSS again, and refuses only if it is still over. This runs at most
once per check interval. The decision logic (``MemoryGuard``) is pure: time, RSS, buffered bytes and the
reclaim step are injected, so tests drive it with a fake clock and fake readings.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from typing import Annotated

import msgspec

from pipeline.clock import Clock
from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.delivery.ledger import ledger_for
from pipeline.delivery.memory import process_rss_bytes, release_free_memory
from pipeline.delivery.metrics import delivery_metrics
from pipeline.errors import DEFAULT_RETRY_AFTER_S, Refused
from pipeline.model import Batch, Signal

MIB = 1024 * 1024
# The collector's default spike margin when none is given.
DEFAULT_SPIKE_FRACTION = 0.2


class MemoryLimiterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # How often RSS is read (and, when over the soft limit, free memory returned to the OS).
    check_interval_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 1000
    # Hard limit on the process RSS; data is refused from limit_mib - spike_limit_mib on.
    limit_mib: Annotated[int, msgspec.Meta(ge=1, le=16_777_216)] = 1024
    # Growth allowed between checks; 0 = 20% of limit_mib.
    spike_limit_mib: Annotated[int, msgspec.Meta(ge=0, le=16_777_216)] = 0
    # Limit on bytes held in the pipeline's buffers; 0 = the soft limit (limit_mib - spike_limit_mib).
    buffered_limit_mib: Annotated[int, msgspec.Meta(ge=0, le=16_777_216)] = 0

    def __post_init__(self) -> None:
        if self.spike_limit_mib >= self.limit_mib:
            raise ValueError(f"spike_limit_mib: must be below limit_mib ({self.limit_mib}), got {self.spike_limit_mib}")

    @property
    def soft_limit_bytes(self) -> int:
        spike = self.spike_limit_mib or int(self.limit_mib * DEFAULT_SPIKE_FRACTION)
        return (self.limit_mib - spike) * MIB

    @property
    def buffered_limit_bytes(self) -> int:
        return self.buffered_limit_mib * MIB if self.buffered_limit_mib else self.soft_limit_bytes


class Over(enum.Enum):
    """What is over its limit (the ``reason`` label of refused items)."""

    RSS = "memory_rss"
    BUFFERED = "memory_buffered"


class MemoryGuard:
    """The limiter's decision, pure: readings and the reclaim step are injected, time is passed in."""

    def __init__(
        self,
        cfg: MemoryLimiterConfig,
        *,
        rss: Callable[[], int],
        buffered: Callable[[], int],
        reclaim: Callable[[], None],
    ) -> None:
        self._interval_s = cfg.check_interval_ms / 1000.0
        self.soft_limit = cfg.soft_limit_bytes
        self.buffered_limit = cfg.buffered_limit_bytes
        self._rss = rss
        self._buffered = buffered
        self._reclaim = reclaim
        self._next_check = float("-inf")
        self.last_rss = 0
        self.rss_over = False
        self.reclaims = 0

    def over(self, now: float) -> tuple[Over, int] | None:
        """What is over its limit now, with the reading; None when data may be accepted."""
        if now >= self._next_check:
            self._next_check = now + self._interval_s
            rss = self._rss()
            if rss > self.soft_limit:
                # Probably free memory malloc kept (see the module docstring): give it back, then look again.
                self._reclaim()
                self.reclaims += 1
                rss = self._rss()
            self.last_rss = rss
            self.rss_over = rss > self.soft_limit
        if self.rss_over:
            return Over.RSS, self.last_rss
        buffered = self._buffered()
        if buffered > self.buffered_limit:
            return Over.BUFFERED, buffered
        return None


class MemoryLimiter:
    """The processor: passes data on while memory is below the limits, refuses it (retryably) above."""

    def __init__(
        self,
        settings: CreateSettings,
        cfg: MemoryLimiterConfig,
        nexts: Mapping[Signal, Consumer],
        *,
        rss: Callable[[], int] = process_rss_bytes,
        reclaim: Callable[[], None] = release_free_memory,
    ) -> None:
        self._id = str(settings.id)
        self._pipeline = settings.pipelines[0] if settings.pipelines else ""
        self._nexts = nexts
        self._clock: Clock = settings.clock
        self._logger = settings.logger
        self._ledger = ledger_for(settings.metrics)
        self._guard = MemoryGuard(cfg, rss=rss, buffered=self._ledger.buffered_bytes, reclaim=self._reclaim(reclaim))
        dm = delivery_metrics(settings.metrics)
        self._refusing_gauge = dm.memory_limiter_refusing.labels(self._id, self._pipeline)
        self._reclaims = dm.memory_limiter_reclaims.labels(self._id, self._pipeline)
        self._refused = {
            (s, o): dm.processor_refused.labels(self._id, self._pipeline, s.value, o.value)
            for s in Signal
            for o in Over
        }
        self._refusing: Over | None = None
        self._running = False

    def _reclaim(self, reclaim: Callable[[], None]) -> Callable[[], None]:
        def counted() -> None:
            self._reclaims.inc()
            reclaim()

        return counted

    @property
    def mutates_data(self) -> bool:
        return False

    def consumer(self, signal: Signal) -> Consumer:
        return self

    async def consume(self, batch: Batch) -> None:
        reason = self._reason()
        if reason is not None:
            self._refused[batch.signal, self._refusing or Over.RSS].inc(batch.items)
            raise Refused(reason, DEFAULT_RETRY_AFTER_S)
        await self._nexts[batch.signal].consume(batch)

    def check(self) -> Refused | None:
        """The refusal to give now, or None (the guard the receivers ask before reading a request)."""
        reason = self._reason()
        return None if reason is None else Refused(reason, DEFAULT_RETRY_AFTER_S)

    def _reason(self) -> str | None:
        """Why data is refused now, or None. A reason, not a Refused: consume raises a new one where it stands, so
        no frame keeps a raised error in a local (a cycle with its traceback that holds the batch)."""
        over = self._guard.over(self._clock.monotonic())
        self._transition(over)
        if over is None:
            return None
        what, value = over
        limit = self._guard.soft_limit if what is Over.RSS else self._guard.buffered_limit
        measure = "process RSS" if what is Over.RSS else "buffered data"
        return f"memory limit: {measure} {value // MIB} MiB is above {limit // MIB} MiB; retry later"

    def _transition(self, over: tuple[Over, int] | None) -> None:
        now = over[0] if over is not None else None
        if now is self._refusing:
            return
        self._refusing = now
        self._refusing_gauge.set(0 if now is None else 1)
        fields = {
            "processor": self._id,
            "pipeline": self._pipeline,
            "rss_mib": self._guard.last_rss // MIB,
            "buffered_mib": self._ledger.buffered_bytes() // MIB,
            "soft_limit_mib": self._guard.soft_limit // MIB,
            "buffered_limit_mib": self._guard.buffered_limit // MIB,
        }
        if now is None:
            self._logger.info("memory limiter: below the limits again, accepting data", extra={"fields": fields})
        else:
            self._logger.log(
                logging.WARNING,
                "memory limiter: %s over the limit, refusing data (retryable)",
                "process RSS" if now is Over.RSS else "buffered data",
                extra={"fields": fields},
            )

    async def start(self) -> None:
        if not self._running:
            self._running = True
            self._ledger.guard(self, self.check)

    async def shutdown(self, deadline: float) -> None:
        self._running = False
        self._ledger.unguard(self)
        self._refusing_gauge.set(0)


def _create(settings: CreateSettings, cfg: MemoryLimiterConfig, nexts: Mapping[Signal, Consumer]) -> MemoryLimiter:
    return MemoryLimiter(settings, cfg, nexts)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="memory_limiter",
    config_type=MemoryLimiterConfig,
    create=_create,
    signals=frozenset(Signal),
)
