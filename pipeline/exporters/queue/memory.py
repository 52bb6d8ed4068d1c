"""The in-memory sending queue: bounded by batches and by bytes held (queued plus being sent)."""

from __future__ import annotations

import asyncio
from collections import deque

from pipeline.errors import Refused
from pipeline.exporters.queue.base import QueueItem, wait_turn, wake_all, wake_one
from pipeline.model import Batch


class MemoryQueue:
    """Full means ``queue_size`` batches waiting, or ``max_bytes`` held; either refuses the next batch."""

    persistent = False

    def __init__(self, capacity: int, max_bytes: int) -> None:
        self._capacity = capacity
        self._max_bytes = max_bytes
        # Each batch with the size it was counted with (a consumer may re-serialize it and change nbytes).
        self._items: deque[tuple[Batch, int]] = deque()
        self._held_bytes = 0
        self._closed = False
        self._getters: deque[asyncio.Future[None]] = deque()
        # Putters only wait in when_full = "block"; they are all woken when room may have appeared.
        self._putters: deque[asyncio.Future[None]] = deque()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def held_bytes(self) -> int:
        return self._held_bytes

    def __len__(self) -> int:
        return len(self._items)

    async def start(self) -> None:
        return None

    def _refusal(self, nbytes: int) -> str | None:
        """Why a batch of ``nbytes`` cannot go in now, or None. A reason, not a Refused: callers raise a new one
        where they stand, so no frame keeps a raised error in a local (a cycle with its traceback)."""
        if self._closed:
            return "the sending queue is closed (shutting down)"
        if len(self._items) >= self._capacity:
            return f"the sending queue is full ({self._capacity} batches, queue_size)"
        # A batch larger than max_bytes still goes in when nothing else is held, or it could never be sent.
        if self._held_bytes + nbytes > self._max_bytes and self._held_bytes:
            return f"the sending queue holds {self._held_bytes} bytes (max_bytes {self._max_bytes})"
        return None

    def _push(self, batch: Batch) -> None:
        self._items.append((batch, batch.nbytes))
        self._held_bytes += batch.nbytes
        wake_one(self._getters)

    def offer(self, batch: Batch) -> None:
        reason = self._refusal(batch.nbytes)
        if reason is not None:
            raise Refused(reason)
        self._push(batch)

    async def put(self, batch: Batch, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while True:
            reason = self._refusal(batch.nbytes)
            if reason is None:
                self._push(batch)
                return
            remaining = end - loop.time()
            if self._closed or remaining <= 0:
                raise Refused(reason)
            await wait_turn(self._putters, remaining)

    async def sync(self) -> None:
        return None

    async def get(self) -> QueueItem | None:
        while not self._items:
            if self._closed:
                return None
            await wait_turn(self._getters)
        batch, nbytes = self._items.popleft()
        wake_all(self._putters)
        return QueueItem(batch, nbytes)

    def done(self, item: QueueItem) -> None:
        assert isinstance(item.ref, int)
        self._held_bytes -= item.ref
        wake_all(self._putters)

    def keep(self, item: QueueItem) -> None:
        self.done(item)  # nothing survives in memory; the helper counts it as dropped

    def close(self) -> None:
        self._closed = True
        wake_all(self._getters)
        wake_all(self._putters)

    def drain(self) -> list[Batch]:
        left = list(self._items)
        self._items.clear()
        self._held_bytes -= sum(nbytes for _, nbytes in left)
        wake_all(self._putters)
        return [batch for batch, _ in left]

    async def stop(self) -> None:
        return None
