"""The Consumer protocol: the only way data moves, one way, from a receiver towards exporters.

``await next.consume(batch)`` returning means the batch is held downstream (buffered, queued or exported);
raising ``Refused`` means "try later", ``Permanent`` means "bad data". Nothing else travels back.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pipeline.model import Batch


@runtime_checkable
class Consumer(Protocol):
    # True when consume() changes the batch's message in place; the fan-out then gives it a private clone.
    @property
    def mutates_data(self) -> bool: ...

    async def consume(self, batch: Batch) -> None: ...
