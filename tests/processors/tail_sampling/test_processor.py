"""The async shell: consume -> buffer -> tick -> deliver, downstream refusals, shutdown, metrics. A fake clock
drives decisions; ``tick()`` is called explicitly, so nothing waits on the timer task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pipeline.component import Kind
from pipeline.consumer import Consumer
from pipeline.delivery.merge import LazyBatch
from pipeline.errors import Permanent, Refused
from pipeline.model import Batch, Signal, count_items
from pipeline.telemetry.health import Status
from pipeline.telemetry.metrics import SelfMetrics
from processors.tail_sampling import FACTORY
from processors.tail_sampling.processor import TailSamplingProcessor
from tests.processors.tail_sampling.builders import config, log, logs_request, request, span, span_ids, tid
from tests.support.clock import FakeClock
from tests.support.settings import make_settings, sample_value
from tests.support.sinks import SinkConsumer

ERRORS = {"name": "errors", "type": "status_code", "status_codes": ["ERROR"]}
P = "otelpipe_processor_tail_sampling"


class Env:
    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.metrics = SelfMetrics(process_metrics=False)
        signals = frozenset({Signal.TRACES, Signal.LOGS})
        self.settings = make_settings(Kind.PROCESSOR, "tail_sampling", signals, self.clock, self.metrics)
        self.traces, self.logs = SinkConsumer(), SinkConsumer()
        # Like the graph for a shareable processor: the mapping is filled after create().
        self.nexts: dict[Signal, Consumer] = {}
        cfg = config(options.pop("policies", [ERRORS]), **{"decision_wait_ms": 1000, **options})
        self.proc: TailSamplingProcessor = FACTORY.create(self.settings, cfg, self.nexts)
        self.nexts.update({Signal.TRACES: self.traces, Signal.LOGS: self.logs})

    def metric(self, name: str, **labels: str) -> float:
        return sample_value(self.metrics, name, {"processor": "tail_sampling", **labels})

    async def tick_after(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.proc.tick()


def run(test: Callable[[Env], Awaitable[None]], **options: Any) -> Env:
    env = Env(**options)

    async def go() -> None:
        await env.proc.start()
        try:
            await test(env)
        finally:
            await env.proc.shutdown(time.monotonic() + 5)

    asyncio.run(go())
    return env


def _sent_span_ids(sink: SinkConsumer) -> set[bytes]:
    return span_ids(b.message for b in sink.batches)


def test_buffers_then_sends_kept_traces_on_tick() -> None:
    error, normal = tid(), tid()
    req = request(span(error, status=2), span(error), span(normal))

    async def go(env: Env) -> None:
        await env.proc.consume(Batch.from_message(Signal.TRACES, req))
        assert env.traces.batches == []  # acknowledged = buffered
        await env.tick_after(1.0)
        assert _sent_span_ids(env.traces) == {s.span_id for s in req.resource_spans[0].scope_spans[0].spans[:2]}
        sent = env.traces.batches[0]
        assert sent.raw is not None  # unannotated: sent as built
        assert isinstance(sent, LazyBatch)  # the message is parsed only when asked for (above, by the test)
        assert sent.items == count_items(Signal.TRACES, sent.message) == 2
        assert env.metric(f"{P}_traces_decided_total", decision="kept", trigger="wait") == 1
        assert env.metric(f"{P}_policy_decisions_total", policy="errors", outcome="not_sampled") == 1
        assert env.metric(f"{P}_traces_held") == 0
        labels = {"processor": "tail_sampling", "pipeline": "test", "otel_signal": "traces", "reason": "not_sampled"}
        assert sample_value(env.metrics, "otelpipe_processor_dropped_items_total", labels) == 1
        assert env.metric(f"{P}_decision_latency_seconds_count") == 2

    run(go)


def test_logs_through_the_same_instance_follow_their_trace() -> None:
    t = tid()

    async def go(env: Env) -> None:
        await env.proc.consume(Batch.from_message(Signal.LOGS, logs_request(log(t, body="x"), log(body="free"))))
        assert env.logs.items() == 1  # the record without trace id passes at once
        await env.proc.consume(Batch.from_message(Signal.TRACES, request(span(t, status=2))))
        await env.tick_after(1.0)
        assert env.logs.items() == 2
        assert env.traces.items() == 1
        for batch in env.logs.batches + env.traces.batches:
            assert batch.items == count_items(batch.signal, batch.message)

    run(go)


def test_untraced_logs_pass_as_the_same_batch() -> None:
    async def go(env: Env) -> None:
        batch = Batch.from_message(Signal.LOGS, logs_request(log(body="a")))
        await env.proc.consume(batch)
        assert env.logs.batches == [batch]

    run(go)


def test_downstream_refusal_holds_and_retries_then_refuses_upstream_when_full() -> None:
    async def go(env: Env) -> None:
        env.traces.fail_with = Refused("busy", retry_after_s=2.0)
        for _ in range(3):
            await env.proc.consume(
                Batch.from_message(Signal.TRACES, request(span(tid(), status=2, attrs={"p": "x" * 900})))
            )
        await env.tick_after(1.0)
        assert env.proc.backlog_bytes > 0
        assert env.traces.items() == 0
        assert env.settings.health.run()[0] is Status.DEGRADED
        with pytest.raises(Refused):  # the backlog holds more than half of max_bytes
            await env.proc.consume(Batch.from_message(Signal.TRACES, request(span(tid()))))
        assert env.metric(f"{P}_refused_items_total", otel_signal="traces", reason="backlog") == 1
        env.traces.fail_with = None
        await env.tick_after(0.5)  # before the retry hint: still held
        assert env.traces.items() == 0
        await env.tick_after(2.0)
        assert env.traces.items() == 3
        assert env.proc.backlog_bytes == 0
        assert env.settings.health.run()[0] is Status.HEALTHY

    run(go, max_bytes=4096)


def test_permanent_downstream_error_is_counted_dropped() -> None:
    async def go(env: Env) -> None:
        env.traces.fail_with = Permanent("bad")
        await env.proc.consume(Batch.from_message(Signal.TRACES, request(span(tid(), status=2))))
        await env.tick_after(1.0)
        labels = {"processor": "tail_sampling", "pipeline": "test", "otel_signal": "traces"}
        value = sample_value(
            env.metrics, "otelpipe_processor_dropped_items_total", {**labels, "reason": "rejected_downstream"}
        )
        assert value == 1

    run(go)


@pytest.mark.parametrize("drop_pending", [False, True])
def test_shutdown_decides_and_flushes_or_drops_and_counts(drop_pending: bool) -> None:
    env = Env(drop_pending_traces_on_shutdown=drop_pending, decision_wait_ms=60_000)

    async def go() -> None:
        await env.proc.start()
        await env.proc.consume(Batch.from_message(Signal.TRACES, request(span(tid(), status=2), span(tid()))))
        await env.proc.shutdown(time.monotonic() + 5)
        await env.proc.shutdown(time.monotonic() + 5)  # idempotent
        with pytest.raises(Refused):
            await env.proc.consume(Batch.from_message(Signal.TRACES, request(span(tid()))))

    asyncio.run(go())
    labels = {"processor": "tail_sampling", "pipeline": "test", "otel_signal": "traces", "reason": "shutdown"}
    if drop_pending:
        assert env.traces.items() == 0
        assert sample_value(env.metrics, "otelpipe_processor_dropped_items_total", labels) == 2
    else:
        assert env.traces.items() == 1
        assert env.metric(f"{P}_traces_decided_total", decision="kept", trigger="shutdown") == 1


def test_shutdown_counts_what_the_downstream_still_refuses_at_the_deadline() -> None:
    env = Env(decision_wait_ms=60_000)

    async def go() -> None:
        await env.proc.start()
        await env.proc.consume(Batch.from_message(Signal.TRACES, request(span(tid(), status=2))))
        env.traces.fail_with = Refused("down")
        await env.proc.shutdown(time.monotonic() + 0.05)

    asyncio.run(go())
    labels = {"processor": "tail_sampling", "pipeline": "test", "otel_signal": "traces", "reason": "shutdown"}
    assert sample_value(env.metrics, "otelpipe_processor_dropped_items_total", labels) == 1


def test_shutdown_without_start_is_safe_and_consume_refuses_before_start() -> None:
    env = Env()

    async def go() -> None:
        with pytest.raises(Refused):
            await env.proc.consume(Batch.from_message(Signal.TRACES, request(span(tid()))))
        await env.proc.shutdown(time.monotonic() + 1)
        await env.proc.shutdown(time.monotonic() + 1)

    asyncio.run(go())
    assert env.metric(f"{P}_refused_items_total", otel_signal="traces", reason="not_running") == 1


def test_a_reload_on_the_same_registry_reuses_the_metric_families() -> None:
    env = Env()
    cfg = config([ERRORS])
    second = FACTORY.create(env.settings, cfg, env.nexts)  # would raise on a duplicate registration
    assert second is not env.proc
    assert env.metrics.registry.get_sample_value(f"{P}_traces_held", {"processor": "tail_sampling"}) is not None


def test_timer_task_decides_without_explicit_ticks() -> None:
    env = Env(decision_wait_ms=1)

    async def go() -> None:
        await env.proc.start()
        await env.proc.consume(Batch.from_message(Signal.TRACES, request(span(tid(), status=2))))
        env.clock.advance(1)
        await env.traces.wait_items(1, timeout_s=10)
        await env.proc.shutdown(time.monotonic() + 1)

    asyncio.run(go())
    assert env.traces.items() == 1


def test_metrics_batches_are_rejected() -> None:
    from tests.support.data import metrics_request

    async def go(env: Env) -> None:
        with pytest.raises(Permanent):
            await env.proc.consume(Batch.from_message(Signal.METRICS, metrics_request()))

    run(go)


class _Gate(SinkConsumer):
    """A downstream that holds each batch until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def consume(self, batch: Batch) -> None:
        self.entered.set()
        await self.release.wait()
        await super().consume(batch)


def test_shutdown_lets_the_timer_tick_in_progress_finish_its_delivery() -> None:
    env = Env(decision_wait_ms=1)
    gate = _Gate()
    env.nexts[Signal.TRACES] = gate

    async def go() -> None:
        await env.proc.start()
        await env.proc.consume(Batch.from_message(Signal.TRACES, request(span(tid(), status=2))))
        env.clock.advance(1)
        async with asyncio.timeout(10):
            await gate.entered.wait()  # the timer's tick is delivering
        stopping = asyncio.create_task(env.proc.shutdown(time.monotonic() + 10))
        await asyncio.sleep(0)  # let shutdown reach its wait on the timer task
        assert not stopping.done()
        gate.release.set()
        await stopping

    asyncio.run(go())
    assert gate.items() == 1


def test_shared_instance_labels_each_signal_with_its_own_pipeline() -> None:
    import dataclasses

    metrics = SelfMetrics(process_metrics=False)
    settings = dataclasses.replace(
        make_settings(Kind.PROCESSOR, "tail_sampling", frozenset({Signal.TRACES, Signal.LOGS}), metrics=metrics),
        pipelines=("traces/sampled", "logs"),
    )
    FACTORY.create(settings, config([ERRORS]), {Signal.TRACES: SinkConsumer(), Signal.LOGS: SinkConsumer()})
    get = metrics.registry.get_sample_value
    name = "otelpipe_processor_incoming_items_total"
    base = {"processor": "tail_sampling"}
    assert get(name, {**base, "pipeline": "traces/sampled", "otel_signal": "traces"}) == 0.0
    assert get(name, {**base, "pipeline": "logs", "otel_signal": "logs"}) == 0.0
    assert get(name, {**base, "pipeline": "", "otel_signal": "traces"}) is None
