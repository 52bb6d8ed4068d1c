"""The switchable link between a receiver and its pipelines, so a reload can re-point a running receiver."""

from __future__ import annotations

import asyncio

from pipeline.consumer import Consumer
from pipeline.model import Batch


class Relay:
    """What a receiver feeds: forwards to its current target, which a reload can swap.

    Requests are counted per target generation, so a reload can wait until those already on their way into the
    old graph have finished before it shuts that graph down.
    """

    __slots__ = ("_generation", "_idle", "_inflight", "_target")

    def __init__(self, target: Consumer) -> None:
        self._target = target
        self._generation = 0
        self._inflight: dict[int, int] = {}
        self._idle: dict[int, asyncio.Event] = {}

    @property
    def mutates_data(self) -> bool:
        return self._target.mutates_data

    async def consume(self, batch: Batch) -> None:
        generation, target = self._generation, self._target
        self._inflight[generation] = self._inflight.get(generation, 0) + 1
        try:
            await target.consume(batch)
        finally:
            left = self._inflight[generation] - 1
            if left:
                self._inflight[generation] = left
            else:
                del self._inflight[generation]
                idle = self._idle.pop(generation, None)
                if idle is not None:
                    idle.set()

    def retarget(self, target: Consumer) -> int:
        """Send from now on into ``target``; returns the generation of the previous target."""
        previous = self._generation
        self._generation += 1
        self._target = target
        return previous

    async def drained(self, generation: int) -> None:
        """Until no request is on its way into the target of ``generation``."""
        if not self._inflight.get(generation):
            return
        idle = self._idle.setdefault(generation, asyncio.Event())
        await idle.wait()
