"""The ``pii`` processor: masks PII in every batch of traces, logs or metrics, then passes it on.

It holds no data and owns no task: ``consume`` masks the batch (engine.py, synchronous, a few milliseconds
for a 1000-span request) and awaits the next consumer, so back-pressure and errors flow through unchanged.
The batch it receives is never changed (``mutates_data`` is false, so a shared batch needs no clone): when
something is masked, a new batch carries the masked bytes on, and its message is parsed only on demand.

Fail closed: if masking itself fails (a bug, or bytes that do not match the message), the batch is refused as
``Permanent`` rather than forwarded unmasked; the error is logged (rate-limited) without any value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pipeline.compiled import is_compiled
from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.delivery.merge import LazyBatch
from pipeline.errors import Permanent
from pipeline.model import Batch, Signal
from pipeline.telemetry.ratelimit import RateLimitedLog
from processors.pii.config import PiiConfig
from processors.pii.engine import Engine
from processors.pii.metrics import PiiMetrics


class _Input:
    """The consumer for one signal: mask, then pass on."""

    # The batch it receives is never changed: a masked batch is a new one, built from new bytes.
    mutates_data = False

    def __init__(self, owner: PiiProcessor, signal: Signal, nxt: Consumer, metrics: PiiMetrics) -> None:
        self._owner = owner
        self._signal = signal
        self._next = nxt
        self._metrics = metrics

    async def consume(self, batch: Batch) -> None:
        await self._next.consume(self._owner.mask(batch, self._metrics))


class PiiProcessor:
    def __init__(self, settings: CreateSettings, config: PiiConfig, nexts: Mapping[Signal, Consumer]) -> None:
        self.id = settings.id
        self.engine = Engine(config)
        self._config = config
        self._logger = settings.logger
        self._errors = RateLimitedLog(settings.logger, clock=settings.clock)
        pipeline = settings.pipelines[0] if settings.pipelines else ""
        self._inputs = {
            signal: _Input(self, signal, nexts[signal], PiiMetrics(settings.metrics, str(self.id), pipeline, signal))
            for signal in settings.signals
            if signal in nexts
        }
        self._started = False

    def consumer(self, signal: Signal) -> Consumer:
        return self._inputs[signal]

    def mask(self, batch: Batch, metrics: PiiMetrics) -> Batch:
        """The batch to pass on: ``batch`` itself when nothing matched, else a new one holding the masked bytes
        (parsed only if something downstream asks for the message)."""
        raw = batch.serialize()
        try:
            outcome = self.engine.process(batch.signal, raw)
        except Exception as exc:
            # Never forward a batch that may still hold what it was meant to hide.
            self._errors.log(
                logging.ERROR,
                "mask_failed",
                "pii masking failed; batch refused",
                error=type(exc).__name__,
                signal=batch.signal.value,
                items=batch.items,
            )
            raise Permanent(f"pii masking failed ({type(exc).__name__})") from exc
        metrics.record(len(raw), outcome.values_scanned, outcome.matches, outcome.changed)
        if outcome.raw is None:
            return batch
        # Attributes may have been removed, never items: the count stays.
        return LazyBatch(batch.signal, outcome.raw, batch.items, batch.metadata)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        fields: dict[str, object] = {
            "detectors": list(self._config.detectors),
            "rules": [r.name for r in self._config.rules],
            "blocked_keys": len(self._config.blocked_keys),
            "allowed_keys": len(self._config.allowed_keys),
            "every_attribute": self.engine.every_key,
        }
        if "hash" in self._config.used_actions():
            fields["hash_key_id"] = self.engine.masker.key_id
        # Whether the hot path runs compiled (a regular install) or as Python source (setup.py says when).
        fields["compiled"] = is_compiled(Engine.__module__)
        self._logger.info("pii masking ready", extra={"fields": fields})
        if self.engine.every_key:
            # allowed_keys, or a blocked_keys glob without literal text: no bulk prefilter can find the keys.
            self._logger.warning("pii: every attribute is visited one by one (slower); see docs/pii.md")

    async def shutdown(self, deadline: float) -> None:
        # Nothing buffered, no task: shutdown only marks the instance stopped (idempotent, safe before start).
        self._started = False


def _create(settings: CreateSettings, config: PiiConfig, nexts: Mapping[Signal, Consumer]) -> PiiProcessor:
    return PiiProcessor(settings, config, nexts)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="pii",
    config_type=PiiConfig,
    create=_create,
    signals=frozenset(Signal),
)
