"""The ``forward`` connector, as in the collector: joins pipelines of the same signal, passing batches through
unchanged (for example one receiving pipeline feeding several differently processed ones)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.errors import Refused
from pipeline.model import Batch, Signal


class ForwardConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class _Input:
    mutates_data = False

    def __init__(self, owner: ForwardConnector, signal: Signal) -> None:
        self._owner = owner
        self._signal = signal

    async def consume(self, batch: Batch) -> None:
        nxt = self._owner.nexts.get(self._signal)
        if nxt is None or self._owner.stopped:
            raise Refused(f"connector {self._owner.id} is not running")
        await nxt.consume(batch)


class ForwardConnector:
    def __init__(self, settings: CreateSettings, nexts: Mapping[Signal, Consumer]) -> None:
        self.id = settings.id
        self.nexts = nexts  # filled by the graph before start()
        self.stopped = False

    def consumer(self, signal: Signal) -> Consumer:
        return _Input(self, signal)

    async def start(self) -> None:
        self.stopped = False

    async def shutdown(self, deadline: float) -> None:
        self.stopped = True


def _create(settings: CreateSettings, config: ForwardConfig, nexts: Mapping[Signal, Consumer]) -> ForwardConnector:
    return ForwardConnector(settings, nexts)


FACTORY = Factory(
    kind=Kind.CONNECTOR,
    type="forward",
    config_type=ForwardConfig,
    create=_create,
    signals=frozenset(Signal),
    connector_outputs={s: frozenset({s}) for s in Signal},
)
