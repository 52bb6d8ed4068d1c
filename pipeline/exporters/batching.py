"""Batching after the queue: the exporter helper's batch stage.

    queue.get() ──► assembler (one task) ──► merged batch ──► senders (num_consumers tasks) ──► retry ─► send
                    Batcher per (signal, client metadata)

The assembler takes items from the queue as they come, groups them with the pure ``Batcher`` and, when a group
is ready (``send_batch_size`` items, ``send_batch_max_bytes``, or ``timeout_ms`` after its first item), merges
it by concatenating the requests' bytes (pipeline/delivery/merge.py: no decode) and hands it to a free sender.
It takes a new item only while a sender slot is free or a group is still filling, so at most ``num_consumers``
merged batches wait, and the queue stays the one place where data waits.

The items of a group are handed back to the queue together once the merged batch's outcome is recorded
(``done``), or undecided at the shutdown deadline (``keep``: a disk queue keeps them for the next start). A
single request larger than ``send_batch_max_bytes`` is split by items into pieces that fit.

Requests with different client metadata are not merged (an exporter may route on it, e.g. a tenant header).
With the receiver's ``include_metadata = true`` every request carries all its headers, so put a batch
processor with ``metadata_keys`` in front to keep only the keys that matter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from pipeline.clock import Clock
from pipeline.delivery.batcher import Batcher, Group, Trigger
from pipeline.delivery.merge import merge, split_to_fit
from pipeline.exporters.helper_config import BatchConfig
from pipeline.exporters.queue import QueueItem, SendingQueue
from pipeline.exporters.retry import SleepFn
from pipeline.model import Batch, Metadata


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the stage needs from the helper: send one batch and record its outcome (False = undecided at
    shutdown), and hand queue items back."""

    deliver: Callable[[Batch], Awaitable[bool]]
    settle: Callable[[Sequence[QueueItem], bool], None]


def partition_key(batch: Batch) -> Hashable:
    """Batches merge only with batches of the same signal and the same client metadata."""
    metadata: Metadata = batch.metadata
    return (batch.signal, tuple(sorted(metadata.items())) if metadata else ())


class BatchStage:
    def __init__(
        self,
        queue: SendingQueue,
        cfg: BatchConfig,
        delivery: Delivery,
        *,
        clock: Clock,
        sleep: SleepFn,
        senders: int,
        sends: Counter,
        exporter: str,
    ) -> None:
        self._queue = queue
        self._max_bytes = cfg.send_batch_max_bytes
        self._batcher: Batcher[QueueItem] = Batcher(
            cfg.send_batch_size, cfg.send_batch_max_bytes, cfg.timeout_ms / 1000
        )
        self._delivery = delivery
        self._clock = clock
        self._sleep = sleep
        self._senders = senders
        # A slot per sender: the assembler only hands over a group when a sender is free.
        self._slots = asyncio.Semaphore(senders)
        self._channel: asyncio.Queue[Group[QueueItem] | None] = asyncio.Queue()
        self._sends = {t: sends.labels(exporter, t.value) for t in Trigger}

    def run(self, tg: asyncio.TaskGroup) -> None:
        tg.create_task(self._assemble(), name="batch-assembler")
        for i in range(self._senders):
            tg.create_task(self._send_groups(), name=f"batch-sender-{i}")

    def settle_leftovers(self) -> None:
        """After the tasks ended: groups no sender took are undecided."""
        while not self._channel.empty():
            group = self._channel.get_nowait()
            if group is not None:
                self._delivery.settle(group.entries, False)

    # Assembler --------------------------------------------------------------------------------------------

    async def _assemble(self) -> None:
        getter: asyncio.Future[QueueItem | None] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(self._queue.get())
                await self._wait(getter)
                now = self._clock.monotonic()
                if getter.done():
                    item = getter.result()
                    getter = None
                    if item is None:
                        break  # closed, and nothing more for us
                    for group in self._batcher.add(
                        partition_key(item.batch), item, item.batch.items, item.batch.nbytes, now
                    ):
                        await self._hand_over(group)
                for group in self._batcher.due(now):
                    await self._hand_over(group)
            for group in self._batcher.flush():
                await self._hand_over(group)
        finally:
            if getter is not None:
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    taken = await getter
                    if taken is not None:  # got an item just as we were cancelled
                        self._delivery.settle([taken], False)
            for group in self._batcher.flush():
                self._delivery.settle(group.entries, False)
            for _ in range(self._senders):
                self._channel.put_nowait(None)

    async def _wait(self, getter: asyncio.Future[QueueItem | None]) -> None:
        """Until the next item arrives or the oldest group's timeout passes, whichever is first."""
        deadline = self._batcher.next_deadline()
        if deadline is None or len(self._queue):
            # Nothing is waiting for a timeout, or the next item is already there: no timer to start.
            await asyncio.wait({getter})
            return
        remaining = deadline - self._clock.monotonic()
        if remaining <= 0:
            return
        sleeper = asyncio.ensure_future(self._sleep(remaining))
        waiting: set[asyncio.Future[Any]] = {getter, sleeper}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()

    async def _hand_over(self, group: Group[QueueItem]) -> None:
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            self._delivery.settle(group.entries, False)
            raise
        self._sends[group.trigger].inc()
        self._channel.put_nowait(group)

    # Senders ----------------------------------------------------------------------------------------------

    async def _send_groups(self) -> None:
        while (group := await self._channel.get()) is not None:
            decided = False
            try:
                decided = await self._send_group(group)
            finally:
                self._delivery.settle(group.entries, decided)
                self._slots.release()

    async def _send_group(self, group: Group[QueueItem]) -> bool:
        merged = merge([item.batch for item in group.entries])
        pieces = [merged]
        if self._max_bytes and merged.nbytes > self._max_bytes and merged.items > 1:
            pieces = split_to_fit(merged, 0, self._max_bytes)
        for piece in pieces:
            if not await self._delivery.deliver(piece):
                return False
        return True
