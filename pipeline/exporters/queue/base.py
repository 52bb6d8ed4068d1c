"""The SendingQueue protocol and the wake-up helpers its implementations share."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from pipeline.model import Batch


@dataclass(slots=True, eq=False)
class QueueItem:
    """A batch taken from a queue; hand it back with ``done`` (decided) or ``keep`` (undecided at shutdown)."""

    batch: Batch
    # Where a persistent queue stores it (opaque to everyone else).
    ref: object = None


class SendingQueue(Protocol):
    """A bounded queue between ``consume`` and the send workers.

    ``offer``/``put`` raise ``pipeline.errors.Refused`` (with the reason: full, over max_bytes, disk full, I/O
    error) instead of returning; the helper counts and logs it and passes it to the sender as a retryable error.
    """

    @property
    def persistent(self) -> bool:
        """True when what is left at shutdown survives for the next start (nothing to count as dropped)."""
        ...

    @property
    def capacity(self) -> int:
        """Batches the queue holds at most (queued and in flight)."""
        ...

    @property
    def held_bytes(self) -> int:
        """Bytes of batches this process holds in memory for the queue (queued or in flight)."""
        ...

    def __len__(self) -> int:
        """Batches waiting to be taken."""
        ...

    async def start(self) -> None:
        """Open the queue (a disk queue recovers what a previous run left); raise StartError on failure."""
        ...

    def offer(self, batch: Batch) -> None:
        """Add without waiting for room."""
        ...

    async def put(self, batch: Batch, timeout_s: float) -> None:
        """Add, waiting up to ``timeout_s`` for room."""
        ...

    async def sync(self) -> None:
        """Return once what was offered so far is as durable as the queue promises (fsync = "always")."""
        ...

    async def get(self) -> QueueItem | None:
        """The next batch; None once the queue is closed and has nothing more for this consumer."""
        ...

    def done(self, item: QueueItem) -> None:
        """The item's outcome is recorded (sent or dropped and counted): forget it."""
        ...

    def keep(self, item: QueueItem) -> None:
        """The item was not decided (shutdown): a persistent queue keeps it for later, a memory queue forgets it
        (the caller counts it as dropped)."""
        ...

    def close(self) -> None:
        """Refuse new batches; ``get`` hands out what is left (or stops at once for a disk queue another
        exporter instance still uses), then None."""
        ...

    def drain(self) -> list[Batch]:
        """Remove and return the batches still queued in memory (final shutdown; empty for a disk queue)."""
        ...

    async def stop(self) -> None:
        """Release files and locks; called once, after the workers ended."""
        ...


def wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        fut = waiters.popleft()
        if not fut.done():
            fut.set_result(None)
            return


def wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        fut = waiters.popleft()
        if not fut.done():
            fut.set_result(None)


async def wait_turn(waiters: deque[asyncio.Future[None]], timeout_s: float | None = None) -> None:
    """Wait to be woken by ``wake_one``/``wake_all`` (or the timeout). A waiter woken and cancelled at once
    passes its wake-up on, so no item is left waiting for a consumer that went away."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(fut)
    try:
        if timeout_s is None:
            await fut
        else:
            await asyncio.wait({fut}, timeout=timeout_s)
    except asyncio.CancelledError:
        if fut.done() and not fut.cancelled():
            wake_one(waiters)
        raise
    finally:
        fut.cancel()
