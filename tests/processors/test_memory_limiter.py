"""The memory limiter: RSS with a spike margin and malloc's sticky RSS, buffered bytes, retryable refusals,
recovery; fake clock and fake RSS readings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest

from pipeline.component import Kind
from pipeline.consumer import Consumer
from pipeline.delivery.ledger import ledger_for
from pipeline.errors import Refused
from pipeline.model import Batch, Signal
from processors.memory_limiter import FACTORY, MIB, MemoryGuard, MemoryLimiter, MemoryLimiterConfig, Over
from tests.exporters.support import async_test
from tests.support.clock import FakeClock
from tests.support.cycles import cycles_after
from tests.support.data import traces_request
from tests.support.settings import make_settings, sample_value
from tests.support.sinks import SinkConsumer


class FakeMemory:
    """RSS readings a test sets; ``reclaim`` lowers RSS to ``after_reclaim`` (what malloc_trim would give back)."""

    def __init__(self, rss_mib: int) -> None:
        self.rss = rss_mib * MIB
        self.after_reclaim: int | None = None
        self.reads = 0
        self.reclaims = 0

    def read(self) -> int:
        self.reads += 1
        return self.rss

    def reclaim(self) -> None:
        self.reclaims += 1
        if self.after_reclaim is not None:
            self.rss = self.after_reclaim * MIB


def cfg(**values: Any) -> MemoryLimiterConfig:
    return msgspec.convert({"limit_mib": 1000, "spike_limit_mib": 200, **values}, MemoryLimiterConfig)


def test_soft_limit_is_limit_minus_spike_and_spike_defaults_to_a_fifth() -> None:
    assert cfg().soft_limit_bytes == 800 * MIB
    assert cfg(spike_limit_mib=0).soft_limit_bytes == 800 * MIB
    assert cfg(buffered_limit_mib=0).buffered_limit_bytes == 800 * MIB
    assert cfg(buffered_limit_mib=300).buffered_limit_bytes == 300 * MIB
    with pytest.raises(msgspec.ValidationError, match="spike_limit_mib"):
        cfg(spike_limit_mib=1000)


def test_rss_over_the_soft_limit_refuses_until_it_comes_down() -> None:
    mem = FakeMemory(900)
    guard = MemoryGuard(cfg(), rss=mem.read, buffered=lambda: 0, reclaim=mem.reclaim)
    assert guard.over(0.0) == (Over.RSS, 900 * MIB)
    assert mem.reclaims == 1  # tried to give free memory back first
    mem.rss = 100 * MIB
    assert guard.over(0.5) == (Over.RSS, 900 * MIB)  # not re-read before the check interval
    assert guard.over(1.0) is None


def test_sticky_rss_after_a_spike_is_reclaimed_instead_of_refusing() -> None:
    mem = FakeMemory(950)  # malloc kept the spike's memory mapped ...
    mem.after_reclaim = 300  # ... and malloc_trim gives most of it back
    guard = MemoryGuard(cfg(), rss=mem.read, buffered=lambda: 0, reclaim=mem.reclaim)
    assert guard.over(0.0) is None
    assert (mem.reclaims, guard.last_rss) == (1, 300 * MIB)
    assert guard.over(5.0) is None
    assert mem.reclaims == 1  # below the soft limit: no more reclaiming


def test_buffered_bytes_are_checked_at_every_request() -> None:
    mem = FakeMemory(100)
    buffered = [0]
    guard = MemoryGuard(cfg(buffered_limit_mib=50), rss=mem.read, buffered=lambda: buffered[0], reclaim=mem.reclaim)
    assert guard.over(0.0) is None
    buffered[0] = 60 * MIB
    assert guard.over(0.1) == (Over.BUFFERED, 60 * MIB)  # no waiting for the interval
    buffered[0] = 10 * MIB
    assert guard.over(0.2) is None
    assert mem.reads == 1


class Rig:
    def __init__(self, mem: FakeMemory, **values: Any) -> None:
        self.clock = FakeClock()
        settings = make_settings(Kind.PROCESSOR, "memory_limiter", frozenset({Signal.TRACES}), clock=self.clock)
        self.settings = settings
        self.sink = SinkConsumer()
        nexts: Mapping[Signal, Consumer] = {Signal.TRACES: self.sink}
        self.proc = MemoryLimiter(settings, cfg(**values), nexts, rss=mem.read, reclaim=mem.reclaim)

    def metric(self, name: str, **labels: str) -> float:
        return sample_value(self.settings.metrics, name, {"processor": "memory_limiter", "pipeline": "test", **labels})


def batch() -> Batch:
    return Batch.from_message(Signal.TRACES, traces_request(1, 4))


@async_test
async def test_processor_refuses_retryably_then_accepts_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    mem = FakeMemory(100)
    rig = Rig(mem)
    await rig.proc.start()
    await rig.proc.consume(batch())
    assert rig.sink.items() == 4
    mem.rss = 900 * MIB
    rig.clock.advance(1.0)
    with pytest.raises(Refused) as refused:
        await rig.proc.consume(batch())
    assert refused.value.retry_after_s == 1.0  # short: clients retry within their own timeout
    assert "process RSS 900 MiB is above 800 MiB" in refused.value.reason
    assert rig.metric("otelpipe_processor_refused_items_total", otel_signal="traces", reason="memory_rss") == 4
    assert rig.metric("otelpipe_memory_limiter_refusing") == 1
    mem.rss = 200 * MIB
    rig.clock.advance(1.0)
    await rig.proc.consume(batch())
    assert rig.sink.items() == 8
    assert rig.metric("otelpipe_memory_limiter_refusing") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("refusing data" in m for m in messages)
    assert any("accepting data" in m for m in messages)
    await rig.proc.shutdown(rig.clock.monotonic())


@async_test
async def test_a_refusal_leaves_no_reference_cycle() -> None:
    mem = FakeMemory(900)
    rig = Rig(mem)
    await rig.proc.start()
    assert cycles_after(lambda: rig.proc.consume(batch()).send(None), Refused) == []
    await rig.proc.shutdown(rig.clock.monotonic())


@async_test
async def test_guard_is_offered_to_receivers_while_running() -> None:
    mem = FakeMemory(900)
    rig = Rig(mem)
    ledger = ledger_for(rig.settings.metrics)
    assert ledger.refusal() is None  # not started: no guard
    await rig.proc.start()
    refused = ledger.refusal()
    assert isinstance(refused, Refused)
    assert "memory limit" in refused.reason
    await rig.proc.shutdown(rig.clock.monotonic())
    assert ledger.refusal() is None


@async_test
async def test_buffered_limit_uses_the_ledger() -> None:
    mem = FakeMemory(100)
    rig = Rig(mem, buffered_limit_mib=1)
    ledger = ledger_for(rig.settings.metrics)
    held = [0]
    owner = object()
    ledger.hold(owner, "exporter/x", lambda: held[0])
    await rig.proc.start()
    await rig.proc.consume(batch())
    held[0] = 2 * MIB
    with pytest.raises(Refused, match="buffered data 2 MiB is above 1 MiB"):
        await rig.proc.consume(batch())
    ledger.release(owner)
    await rig.proc.consume(batch())
    assert rig.sink.items() == 8


def test_factory_default_config_is_usable() -> None:
    cfg_ = FACTORY.default_config()
    assert isinstance(cfg_, MemoryLimiterConfig)
    assert (cfg_.limit_mib, cfg_.check_interval_ms) == (1024, 1000)
