"""The ``nop`` exporter, as in the collector: accepts everything and does nothing. For benchmarks of the
receive path and for pipelines that only feed connectors' side effects."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.model import Batch, Signal


class NopConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class NopExporter:
    mutates_data = False

    async def consume(self, batch: Batch) -> None:
        return None

    def consumer(self, signal: Signal) -> Consumer:
        return self

    async def start(self) -> None:
        return None

    async def shutdown(self, deadline: float) -> None:
        return None


def _create(settings: CreateSettings, config: NopConfig, nexts: Mapping[Signal, Consumer]) -> NopExporter:
    return NopExporter()


FACTORY = Factory(kind=Kind.EXPORTER, type="nop", config_type=NopConfig, create=_create, signals=frozenset(Signal))
