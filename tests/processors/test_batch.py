"""The batch processor: acknowledges on buffering, merges, splits, partitions by metadata, refuses when full,
retries a refusing next stage without losing anything, and drains on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest

from pipeline.component import Kind
from pipeline.consumer import Consumer
from pipeline.delivery.ledger import ledger_for
from pipeline.delivery.merge import LazyBatch
from pipeline.errors import Permanent, Refused
from pipeline.model import Batch, Signal
from processors.batch import FACTORY, BatchProcessor, BatchProcessorConfig
from tests.exporters.support import BlockingSleep, FakeSleep, async_test, wait_for
from tests.support.clock import FakeClock
from tests.support.data import traces_request
from tests.support.settings import make_settings, sample_value
from tests.support.sinks import SinkConsumer

LABELS = {"processor": "batch", "pipeline": "traces", "otel_signal": "traces"}


class FlakySink(SinkConsumer):
    """Refuses the first ``refusals`` calls, then records like SinkConsumer."""

    def __init__(self, refusals: int = 0, error: Exception | None = None) -> None:
        super().__init__()
        self.refusals = refusals
        self.error = error
        self.calls = 0

    async def consume(self, batch: Batch) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if self.refusals:
            self.refusals -= 1
            raise Refused("queue full", 1.0)
        await super().consume(batch)


def spans(n_traces: int = 1, per_trace: int = 2) -> Batch:
    return Batch.from_message(Signal.TRACES, traces_request(n_traces, per_trace))


def span_ids(batches: list[Batch]) -> list[bytes]:
    return [s.span_id for b in batches for rs in b.message.resource_spans for ss in rs.scope_spans for s in ss.spans]  # type: ignore[union-attr]


class Rig:
    def __init__(self, sink: Consumer, sleep: Any = None, **cfg: Any) -> None:
        self.clock = FakeClock()
        self.sleep = sleep if sleep is not None else FakeSleep(self.clock)
        self.settings = make_settings(Kind.PROCESSOR, "batch", frozenset({Signal.TRACES}), clock=self.clock)
        self.settings = type(self.settings)(**{**_fields(self.settings), "pipelines": ("traces",)})
        nexts: Mapping[Signal, Consumer] = {Signal.TRACES: sink}
        self.proc = BatchProcessor(self.settings, msgspec.convert(cfg, BatchProcessorConfig), nexts, sleep=self.sleep)

    def metric(self, name: str, **labels: str) -> float:
        return sample_value(self.settings.metrics, name, {**LABELS, **labels})

    async def __aenter__(self) -> Rig:
        await self.proc.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.proc.shutdown(self.clock.monotonic() + 10)


def _fields(settings: Any) -> dict[str, Any]:
    return {f: getattr(settings, f) for f in settings.__dataclass_fields__}


@async_test
async def test_acknowledges_on_buffering_and_sends_a_merged_batch_at_send_batch_size() -> None:
    sink = SinkConsumer()
    async with Rig(sink, sleep=BlockingSleep(), send_batch_size=6, timeout_ms=60_000) as rig:
        parts = [spans(1, 2) for _ in range(3)]
        for b in parts:
            await rig.proc.consume(b)  # returns at once: held by the processor
        await sink.wait_items(6)
        (merged,) = sink.batches
        assert isinstance(merged, LazyBatch)
        assert not merged.parsed
        assert span_ids([merged]) == span_ids(parts)
        assert rig.metric("otelpipe_processor_batch_sends_total", trigger="size") == 1


@async_test
async def test_timeout_sends_a_partial_batch() -> None:
    sink = SinkConsumer()
    async with Rig(sink, send_batch_size=1000, timeout_ms=200) as rig:
        await rig.proc.consume(spans(1, 3))
        await sink.wait_items(3)
        assert rig.metric("otelpipe_processor_batch_sends_total", trigger="timeout") == 1
        assert 0.2 in [round(s, 6) for s in rig.sleep.calls]


@async_test
async def test_send_batch_max_size_splits_large_requests() -> None:
    sink = SinkConsumer()
    async with Rig(sink, sleep=BlockingSleep(), send_batch_size=4, send_batch_max_size=4) as rig:
        big = spans(5, 2)
        await rig.proc.consume(big)
        await sink.wait_items(10)
        assert [b.items for b in sink.batches] == [4, 4, 2]
        assert span_ids(sink.batches) == span_ids([big])


@async_test
async def test_metadata_keys_partition_and_only_those_keys_travel_on() -> None:
    sink = SinkConsumer()
    async with Rig(sink, sleep=BlockingSleep(), send_batch_size=2, metadata_keys=["X-Tenant"]) as rig:
        t = spans(1, 1)

        def tenant(name: str) -> Batch:
            return Batch(t.signal, t.message, 1, t.nbytes, t.raw, {"x-tenant": (name,), "user-agent": ("sdk",)})

        for name in ("a", "b", "a", "b"):
            await rig.proc.consume(tenant(name))
        await sink.wait_items(4)
        assert sorted(dict(b.metadata)["x-tenant"][0] for b in sink.batches) == ["a", "b"]
        assert all(set(b.metadata) == {"x-tenant"} for b in sink.batches)


@async_test
async def test_metadata_cardinality_limit_refuses_retryably() -> None:
    sink = SinkConsumer()
    cfg = {"send_batch_size": 100, "metadata_keys": ["x-tenant"], "metadata_cardinality_limit": 1}
    async with Rig(sink, sleep=BlockingSleep(), **cfg) as rig:
        t = spans(1, 1)
        await rig.proc.consume(Batch(t.signal, t.message, 1, t.nbytes, t.raw, {"x-tenant": ("a",)}))
        with pytest.raises(Refused, match="metadata_cardinality_limit"):
            await rig.proc.consume(Batch(t.signal, t.message, 1, t.nbytes, t.raw, {"x-tenant": ("b",)}))
        assert rig.metric("otelpipe_processor_refused_items_total", reason="metadata_cardinality") == 1


@async_test
async def test_refusing_next_stage_is_retried_and_backpressure_reaches_the_sender() -> None:
    sink = FlakySink(refusals=1_000_000)
    one = spans(1, 2)
    async with Rig(sink, sleep=BlockingSleep(), send_batch_size=2, max_buffered_bytes=3 * one.nbytes) as rig:
        sent = [spans(1, 2) for _ in range(3)]
        for b in sent:
            await rig.proc.consume(b)
        await wait_for(lambda: sink.calls >= 1)
        with pytest.raises(Refused, match="max_buffered_bytes"):
            await rig.proc.consume(spans(1, 2))
        assert rig.metric("otelpipe_processor_refused_items_total", reason="buffer_full") == 2
        assert ledger_for(rig.settings.metrics).buffered_bytes() == 3 * one.nbytes
        sink.refusals = 0  # the next stage recovers; shutdown cuts the retry wait short and drains
    # Nothing lost, in order.
    assert span_ids(sink.batches) == span_ids(sent)
    assert rig.metric("otelpipe_processor_dropped_items_total", reason="shutdown") == 0


@async_test
async def test_refusals_are_retried_until_the_next_stage_accepts() -> None:
    sink = FlakySink(refusals=3)
    async with Rig(sink, send_batch_size=2) as rig:
        sent = [spans(1, 2), spans(1, 2)]
        for b in sent:
            await rig.proc.consume(b)
        await sink.wait_items(4)
        assert sink.calls >= 4
        assert span_ids(sink.batches) == span_ids(sent)
        waits = [round(s, 3) for s in rig.sleep.calls if s < 1.5]
        assert waits[:3] == [0.05, 0.1, 0.2]  # 50 ms doubling, capped by the hint


@async_test
async def test_permanent_rejection_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    sink = FlakySink(error=Permanent("bad data"))
    async with Rig(sink, send_batch_size=2) as rig:
        with caplog.at_level(logging.ERROR):
            await rig.proc.consume(spans(1, 2))
            await wait_for(lambda: rig.metric("otelpipe_processor_dropped_items_total", reason="permanent_error") == 2)
        assert any("rejected" in r.getMessage() for r in caplog.records)


@async_test
async def test_shutdown_flushes_partial_groups() -> None:
    sink = SinkConsumer()
    rig = Rig(sink, sleep=BlockingSleep(), send_batch_size=1000, timeout_ms=60_000)
    await rig.proc.start()
    await rig.proc.consume(spans(1, 3))
    await rig.proc.consume(spans(1, 2))
    assert sink.items() == 0
    await rig.proc.shutdown(rig.clock.monotonic() + 10)
    assert sink.items() == 5
    assert rig.metric("otelpipe_processor_batch_sends_total", trigger="flush") == 1
    with pytest.raises(Refused):
        await rig.proc.consume(spans())


@async_test
async def test_shutdown_deadline_counts_what_is_left_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    sink = FlakySink(refusals=1_000_000)
    rig = Rig(sink, send_batch_size=2)
    await rig.proc.start()
    await rig.proc.consume(spans(1, 2))
    await rig.proc.consume(spans(1, 1))
    await wait_for(lambda: sink.calls >= 1)
    with caplog.at_level(logging.ERROR):
        await rig.proc.shutdown(rig.clock.monotonic() + 0.5)
        await rig.proc.shutdown(rig.clock.monotonic() + 0.5)
    assert rig.metric("otelpipe_processor_dropped_items_total", reason="shutdown") == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].fields["dropped_items"] == 3
    assert ledger_for(rig.settings.metrics).by_component() == {}


def test_config_checks() -> None:
    with pytest.raises(msgspec.ValidationError, match="send_batch_max_size"):
        msgspec.convert({"send_batch_size": 100, "send_batch_max_size": 10}, BatchProcessorConfig)
    with pytest.raises(msgspec.ValidationError, match="metadata_keys"):
        msgspec.convert({"metadata_keys": ["a", "A"]}, BatchProcessorConfig)
    cfg = FACTORY.default_config()
    assert isinstance(cfg, BatchProcessorConfig)
    assert (cfg.send_batch_size, cfg.timeout_ms, cfg.send_batch_max_size) == (8192, 200, 0)


@async_test
async def test_consume_before_start_is_refused() -> None:
    rig = Rig(SinkConsumer())
    with pytest.raises(Refused, match="not started"):
        await rig.proc.consume(spans())
    await asyncio.sleep(0)
