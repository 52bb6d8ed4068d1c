"""Consumers that record what reaches them, and can be told to refuse or reject."""

from __future__ import annotations

import asyncio

from pipeline.errors import ConsumeError
from pipeline.model import Batch, Signal


class SinkConsumer:
    """Records every batch; ``fail_with`` makes the next consume calls raise that error instead."""

    def __init__(self, mutates_data: bool = False) -> None:
        self._mutates = mutates_data
        self.batches: list[Batch] = []
        self.fail_with: ConsumeError | None = None
        self._changed = asyncio.Event()

    @property
    def mutates_data(self) -> bool:
        return self._mutates

    async def consume(self, batch: Batch) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.batches.append(batch)
        self._changed.set()

    def items(self, signal: Signal | None = None) -> int:
        return sum(b.items for b in self.batches if signal is None or b.signal is signal)

    async def wait_items(self, n: int, timeout_s: float = 10.0) -> None:
        """Wait (event-driven, with a deadline) until at least ``n`` items arrived."""
        async with asyncio.timeout(timeout_s):
            while self.items() < n:
                self._changed.clear()
                await self._changed.wait()
