"""The ``debug`` exporter: writes batches to otelpipe's own log, all signals, no queue.

Options as in the collector's debug exporter: verbosity "basic" (one INFO line per batch with its counts),
"normal" (plus one line per resource: service.name and item count) or "detailed" (plus the batch as OTLP/JSON);
sampling_initial / sampling_thereafter log the first N batches of a signal each second, then every Mth, so a
busy pipeline cannot flood the log. Every batch is counted as sent, logged or not: sampling limits the log, not
the data path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from pipeline import otlpjson
from pipeline.clock import Clock
from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.model import Batch, Signal

VERBOSITIES = ("basic", "normal", "detailed")


class DebugConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    verbosity: str = "basic"
    sampling_initial: Annotated[int, msgspec.Meta(ge=1)] = 2
    sampling_thereafter: Annotated[int, msgspec.Meta(ge=1)] = 500

    def __post_init__(self) -> None:
        if self.verbosity not in VERBOSITIES:
            raise ValueError(f'verbosity: expected "basic", "normal" or "detailed", got {self.verbosity!r}')


class Sampler:
    """The first ``initial`` events of each clock second pass, then every ``thereafter``-th (zap's sampler)."""

    def __init__(self, clock: Clock, initial: int, thereafter: int) -> None:
        self._clock = clock
        self._initial = initial
        self._thereafter = thereafter
        self._tick = -math.inf
        self._count = 0

    def allow(self) -> bool:
        tick = math.floor(self._clock.monotonic())
        if tick != self._tick:
            self._tick, self._count = tick, 0
        self._count += 1
        if self._count <= self._initial:
            return True
        return (self._count - self._initial) % self._thereafter == 0


def _resources(batch: Batch) -> list[Any]:
    m: Any = batch.message
    if batch.signal is Signal.TRACES:
        return list(m.resource_spans)
    if batch.signal is Signal.LOGS:
        return list(m.resource_logs)
    return list(m.resource_metrics)


def _resource_items(signal: Signal, res: Any) -> int:
    if signal is Signal.TRACES:
        return sum(len(ss.spans) for ss in res.scope_spans)
    if signal is Signal.LOGS:
        return sum(len(sl.log_records) for sl in res.scope_logs)
    n = 0
    for sm in res.scope_metrics:
        for metric in sm.metrics:
            kind = metric.WhichOneof("data")
            if kind is not None:
                n += len(getattr(metric, kind).data_points)
    return n


def _service_name(res: Any) -> str:
    for kv in res.resource.attributes:
        if kv.key == "service.name":
            return str(kv.value.string_value)
    return ""


class DebugExporter:
    def __init__(self, settings: CreateSettings, cfg: DebugConfig) -> None:
        self._id = str(settings.id)
        self._logger = settings.logger
        self._verbosity = VERBOSITIES.index(cfg.verbosity)
        self._metrics = settings.metrics.exporter(self._id)
        self._samplers = {s: Sampler(settings.clock, cfg.sampling_initial, cfg.sampling_thereafter) for s in Signal}

    @property
    def mutates_data(self) -> bool:
        return False

    def consumer(self, signal: Signal) -> Consumer:
        return self

    async def start(self) -> None:
        return None

    async def shutdown(self, deadline: float) -> None:
        return None

    async def consume(self, batch: Batch) -> None:
        self._metrics.sent(batch.signal, batch.items)
        if self._samplers[batch.signal].allow():
            self._log_batch(batch)

    def _log_batch(self, batch: Batch) -> None:
        signal, item_name = batch.signal.value, batch.signal.item_name
        resources = _resources(batch)
        self._logger.info(
            "%s: %d resources, %d %s",
            signal,
            len(resources),
            batch.items,
            item_name,
            extra={
                "fields": {"exporter": self._id, "signal": signal, "resources": len(resources), item_name: batch.items}
            },
        )
        if self._verbosity >= 1:
            for i, res in enumerate(resources):
                service, items = _service_name(res), _resource_items(batch.signal, res)
                self._logger.info(
                    "%s resource #%d service.name=%s: %d %s",
                    signal,
                    i,
                    service,
                    items,
                    item_name,
                    extra={
                        "fields": {
                            "exporter": self._id,
                            "signal": signal,
                            "resource": i,
                            "service_name": service,
                            item_name: items,
                        }
                    },
                )
        if self._verbosity >= 2:
            text = otlpjson.encode(batch.signal, batch.message).decode()
            self._logger.info("%s", text, extra={"fields": {"exporter": self._id, "signal": signal}})


def _create(settings: CreateSettings, cfg: DebugConfig, nexts: Mapping[Signal, Consumer]) -> DebugExporter:
    return DebugExporter(settings, cfg)


FACTORY = Factory(kind=Kind.EXPORTER, type="debug", config_type=DebugConfig, create=_create, signals=frozenset(Signal))
