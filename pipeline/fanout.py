"""Fan-out: one consumer feeding several pipelines or exporters.

Consumers that do not mutate share the original batch; each mutating consumer gets a private clone, except
that when every consumer mutates, the last one may take the original (nobody else holds a reference to it).
Consumers are called in order. A refusal from one branch is reported upstream after every branch was tried;
the sender then retries and the branches that accepted see a duplicate, the trade-off OTLP accepts
(PROTOCOLS.md 3).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.consumer import Consumer
from pipeline.errors import ConsumeError, Permanent, Refused
from pipeline.model import Batch


class FanOut:
    def __init__(self, consumers: Sequence[Consumer]) -> None:
        if len(consumers) < 2:
            raise ValueError("a fan-out needs at least two consumers")
        self._readers = [c for c in consumers if not c.mutates_data]
        self._writers = [c for c in consumers if c.mutates_data]
        # Nobody else keeps the original when every consumer mutates: the last one may have it.
        self._last_takes_original = not self._readers

    @property
    def mutates_data(self) -> bool:
        return False  # mutating branches get their own clones

    async def consume(self, batch: Batch) -> None:
        errors: list[ConsumeError] = []
        for c in self._readers:
            try:
                await c.consume(batch)
            except ConsumeError as exc:
                errors.append(exc)
        last = len(self._writers) - 1
        for i, c in enumerate(self._writers):
            b = batch if (i == last and self._last_takes_original) else batch.clone()
            try:
                await c.consume(b)
            except ConsumeError as exc:
                errors.append(exc)
        if errors:
            try:
                raise _combine(errors)
            finally:
                # Each error's traceback holds this frame: without the list, no cycle keeps the batch alive.
                del errors


def _combine(errors: list[ConsumeError]) -> ConsumeError:
    refused = [e for e in errors if isinstance(e, Refused)]
    if refused:
        # Retryable wins: the sender retries and every branch gets another chance.
        return Refused("; ".join(e.reason for e in refused), max(e.retry_after_s for e in refused))
    permanent = [e for e in errors if isinstance(e, Permanent)]
    if len(permanent) == 1:
        return permanent[0]
    if permanent:
        counts = [e.rejected for e in permanent]
        rejected = None if None in counts else max(c for c in counts if c is not None)
        return Permanent("; ".join(e.reason for e in permanent), rejected)
    return errors[0]


def fan_out(consumers: Sequence[Consumer]) -> Consumer:
    return consumers[0] if len(consumers) == 1 else FanOut(consumers)
