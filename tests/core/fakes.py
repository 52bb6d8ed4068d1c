"""Small fake components for graph tests: they record lifecycle events into a shared journal."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.model import Batch, Signal


class FakeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    mutates: bool = False
    tag: str = ""


class _Port:
    def __init__(self, owner: FakeComponent, signal: Signal) -> None:
        self._owner = owner
        self._signal = signal
        self.mutates_data = owner.config.mutates

    async def consume(self, batch: Batch) -> None:
        o = self._owner
        o.received.append(batch)
        if o.config.mutates:
            kv = batch.message.resource_spans[0].resource.attributes.add()  # type: ignore[union-attr]
            kv.key, kv.value.string_value = "touched_by", str(o.settings.id)
            batch.mark_modified()
        nxt = o.nexts.get(self._signal)
        if nxt is not None:
            await nxt.consume(batch)


class FakeComponent:
    def __init__(
        self, settings: CreateSettings, config: FakeConfig, nexts: Mapping[Signal, Consumer], journal: list[str]
    ) -> None:
        self.settings = settings
        self.config = config
        self.nexts = nexts
        self.journal = journal
        self.received: list[Batch] = []
        self.name = f"{settings.kind.singular}:{settings.id}" + (
            f"@{settings.pipelines[0]}" if settings.pipelines else ""
        )

    def consumer(self, signal: Signal) -> Consumer:
        return _Port(self, signal)

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")

    async def shutdown(self, deadline: float) -> None:
        self.journal.append(f"stop {self.name}")


def fake_factories(journal: list[str], instances: list[FakeComponent]) -> list[Factory]:
    def create(settings: CreateSettings, config: FakeConfig, nexts: Mapping[Signal, Consumer]) -> FakeComponent:
        c = FakeComponent(settings, config, nexts, journal)
        instances.append(c)
        return c

    every = frozenset(Signal)
    return [
        Factory(Kind.RECEIVER, "rx", FakeConfig, create, every),
        Factory(Kind.PROCESSOR, "proc", FakeConfig, create, every),
        Factory(Kind.PROCESSOR, "shared", FakeConfig, create, every, shareable=True),
        Factory(Kind.EXPORTER, "sink", FakeConfig, create, every),
        Factory(
            Kind.CONNECTOR,
            "conn",
            FakeConfig,
            create,
            frozenset({Signal.TRACES}),
            connector_outputs={Signal.TRACES: frozenset({Signal.METRICS, Signal.TRACES})},
        ),
    ]
