from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pipeline.consumer import Consumer
from pipeline.errors import ConsumeError, Permanent, Refused
from pipeline.fanout import FanOut, fan_out
from pipeline.model import Batch, Signal
from tests.support.cycles import cycles_after
from tests.support.data import traces_request
from tests.support.sinks import SinkConsumer


def batch() -> Batch:
    return Batch.from_message(Signal.TRACES, traces_request())


def test_single_consumer_is_not_wrapped() -> None:
    sink = SinkConsumer()
    assert fan_out([sink]) is sink


def test_refusal_from_one_branch_is_reported_after_all_branches_ran() -> None:
    a, b, c = SinkConsumer(), SinkConsumer(), SinkConsumer()
    b.fail_with = Refused("queue full", retry_after_s=2.0)
    with pytest.raises(Refused) as info:
        asyncio.run(FanOut([a, b, c]).consume(batch()))
    assert info.value.retry_after_s == 2.0
    assert len(a.batches) == 1
    assert len(c.batches) == 1


def test_refused_wins_over_permanent() -> None:
    a, b = SinkConsumer(), SinkConsumer()
    a.fail_with = Permanent("bad")
    b.fail_with = Refused("busy")
    with pytest.raises(Refused):
        asyncio.run(FanOut([a, b]).consume(batch()))


class _Failing:
    """Raises a new error at every call (SinkConsumer re-raises one stored error, a cycle of its own)."""

    mutates_data = False

    def __init__(self, error: Callable[[], ConsumeError]) -> None:
        self._error = error

    async def consume(self, batch: Batch) -> None:
        raise self._error()


def test_collected_errors_leave_no_reference_cycle() -> None:
    def run() -> None:
        branches: list[Consumer] = [
            _Failing(lambda: Permanent("bad")),
            SinkConsumer(),
            _Failing(lambda: Refused("busy")),
        ]
        FanOut(branches).consume(batch()).send(None)

    assert cycles_after(run, Refused) == []


def test_all_mutating_last_takes_original_others_get_clones() -> None:
    a, b = SinkConsumer(mutates_data=True), SinkConsumer(mutates_data=True)
    original = batch()
    asyncio.run(FanOut([a, b]).consume(original))
    assert a.batches[0] is not original
    assert a.batches[0].message == original.message
    assert b.batches[0] is original


def test_mixed_consumers_readers_share_writers_clone() -> None:
    r, w = SinkConsumer(), SinkConsumer(mutates_data=True)
    original = batch()
    asyncio.run(FanOut([w, r]).consume(original))
    assert r.batches[0] is original
    assert w.batches[0] is not original
