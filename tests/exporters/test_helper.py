"""The delivery chain with a scripted send function: no network, fake clock, injected sleep."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from pipeline.errors import Permanent, PermanentExportError, Refused
from pipeline.exporters.helper import (
    Backoff,
    MemoryQueue,
    PartialSuccess,
    parse_retry_after,
)
from pipeline.exporters.helper_config import RetryConfig
from pipeline.model import Batch, Signal
from pipeline.telemetry.health import Status
from tests.exporters.support import (
    BlockingSleep,
    Rig,
    ScriptedSend,
    async_test,
    dropped,
    metric,
    sent,
    spans,
    unavailable,
    wait_for,
)
from tests.support.cycles import cycles_after

# ----------------------------------------------------------------------------------------- success, retries


@async_test
async def test_queued_batch_is_acknowledged_then_sent_byte_for_byte() -> None:
    async with Rig(ScriptedSend()) as rig:
        batch = spans(2, 3)
        await rig.helper.consume(batch)
        await wait_for(lambda: sent(rig.settings) == 6)
        assert rig.send.calls == [batch]
        assert metric(rig.settings, "otelpipe_exporter_queue_capacity") == 1000
        assert rig.health() is Status.HEALTHY


@async_test
async def test_backoff_doubles_up_to_max_interval_then_succeeds() -> None:
    send = ScriptedSend(unavailable(), unavailable(), unavailable(), unavailable())
    async with Rig(send, retry_on_failure={"max_interval_ms": 4000}) as rig:
        await rig.helper.consume(spans(1, 2))
        await wait_for(lambda: sent(rig.settings) == 2)
        assert rig.sleep.calls == [1.0, 2.0, 4.0, 4.0]
        assert len(send.calls) == 5
        assert metric(rig.settings, "otelpipe_exporter_retries_total") == 4
        assert metric(rig.settings, "otelpipe_exporter_send_failed_spans_total") == 8
        assert dropped(rig.settings, "retries_exhausted") == 0


@async_test
async def test_jitter_stays_within_the_randomization_factor() -> None:
    send = ScriptedSend(*(unavailable() for _ in range(6)))
    async with Rig(send, retry_on_failure={"randomization_factor": 0.5, "multiplier": 1.0}) as rig:
        await rig.helper.consume(spans())
        await wait_for(lambda: sent(rig.settings) == 2)
        assert len(rig.sleep.calls) == 6
        assert all(0.5 <= s <= 1.5 for s in rig.sleep.calls)
        assert len(set(rig.sleep.calls)) > 1  # actually jittered


def test_backoff_is_pure_and_capped() -> None:
    cfg = RetryConfig(initial_interval_ms=100, randomization_factor=0.0, multiplier=3.0, max_interval_ms=500)
    b = Backoff(cfg, random.Random(1))
    assert [round(b.next_delay(), 6) for _ in range(4)] == [0.1, 0.3, 0.5, 0.5]


@async_test
async def test_server_retry_hint_is_a_floor_not_a_ceiling() -> None:
    send = ScriptedSend(unavailable(retry_after_s=7.5), unavailable(retry_after_s=0.1))
    async with Rig(send) as rig:
        await rig.helper.consume(spans())
        await wait_for(lambda: sent(rig.settings) == 2)
        # 7.5 s from the server beats the 1 s backoff; 0.1 s does not beat the 2 s that follows.
        assert rig.sleep.calls == [7.5, 2.0]


@async_test
async def test_max_elapsed_exhausted_drops_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    send = ScriptedSend(*(unavailable() for _ in range(10)))
    async with Rig(send, retry_on_failure={"multiplier": 1.0, "max_elapsed_ms": 2500}) as rig:
        with caplog.at_level(logging.ERROR):
            await rig.helper.consume(spans(1, 2))
            await wait_for(lambda: dropped(rig.settings, "retries_exhausted") == 2)
        # t=0 fail, wait 1; t=1 fail, wait 1; t=2 fail: 2 + 1 > 2.5, give up.
        assert len(send.calls) == 3
        assert rig.sleep.calls == [1.0, 1.0]
        assert sent(rig.settings) == 0
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert errors[0].fields["reason"] == "retries_exhausted"  # type: ignore[attr-defined]
        assert rig.health() is Status.DEGRADED


@async_test
async def test_drop_logs_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    send = ScriptedSend(*(PermanentExportError("INVALID_ARGUMENT: bad") for _ in range(5)))
    async with Rig(send) as rig:
        with caplog.at_level(logging.ERROR):
            for _ in range(5):
                await rig.helper.consume(spans(1, 1))
            await wait_for(lambda: dropped(rig.settings, "permanent_error") == 5)
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


@async_test
async def test_permanent_error_is_not_retried_and_counted() -> None:
    send = ScriptedSend(PermanentExportError("INVALID_ARGUMENT: bad span"))
    async with Rig(send) as rig:
        await rig.helper.consume(spans(1, 3))
        await wait_for(lambda: dropped(rig.settings, "permanent_error") == 3)
        assert len(send.calls) == 1
        assert rig.sleep.calls == []
        assert rig.health() is Status.DEGRADED
        await rig.helper.consume(spans(1, 1))
        await wait_for(lambda: sent(rig.settings) == 1)
        assert rig.health() is Status.HEALTHY  # a success ends the failing streak


@async_test
async def test_unexpected_exception_drops_the_batch_and_keeps_the_worker() -> None:
    send = ScriptedSend(KeyError("bug"))
    async with Rig(send, sending_queue={"num_consumers": 1}) as rig:
        await rig.helper.consume(spans(1, 1))
        await rig.helper.consume(spans(1, 4))
        await wait_for(lambda: sent(rig.settings) == 4)
        assert dropped(rig.settings, "permanent_error") == 1


@async_test
async def test_retry_disabled_drops_after_one_attempt() -> None:
    send = ScriptedSend(unavailable())
    async with Rig(send, retry_on_failure={"enabled": False}) as rig:
        await rig.helper.consume(spans(1, 2))
        await wait_for(lambda: dropped(rig.settings, "retries_exhausted") == 2)
        assert len(send.calls) == 1


@async_test
async def test_attempt_timeout_is_retryable() -> None:
    send = ScriptedSend(asyncio.Event())  # never answers: the per-attempt timeout ends it
    async with Rig(send, timeout_ms=1) as rig:
        await rig.helper.consume(spans(1, 2))
        await wait_for(lambda: sent(rig.settings) == 2)
        assert len(send.calls) == 2
        assert metric(rig.settings, "otelpipe_exporter_retries_total") == 1


@async_test
async def test_partial_success_counts_rejected_items(caplog: pytest.LogCaptureFixture) -> None:
    send = ScriptedSend(PartialSuccess(2, "2 spans too old"))
    async with Rig(send) as rig:
        with caplog.at_level(logging.WARNING):
            await rig.helper.consume(spans(1, 5))
            await wait_for(lambda: sent(rig.settings) == 3)
        assert dropped(rig.settings, "rejected_by_backend") == 2
        assert len(send.calls) == 1
        assert any("2 spans too old" in str(getattr(r, "fields", {})) for r in caplog.records)


# ----------------------------------------------------------------------------------------- queue


@async_test
async def test_full_queue_refuses_with_short_hint_and_counts() -> None:
    release = asyncio.Event()
    send = ScriptedSend(release)
    async with Rig(send, sending_queue={"queue_size": 1, "num_consumers": 1}) as rig:
        await rig.helper.consume(spans(1, 1))  # taken by the worker, in flight
        await send.called.wait()
        await rig.helper.consume(spans(1, 1))  # queued
        assert metric(rig.settings, "otelpipe_exporter_queue_size") == 1
        with pytest.raises(Refused) as refused:
            await rig.helper.consume(spans(1, 3))
        assert refused.value.retry_after_s == 1.0
        assert metric(rig.settings, "otelpipe_exporter_enqueue_failed_spans_total") == 3
        assert rig.health() is Status.DEGRADED
        release.set()
        await wait_for(lambda: sent(rig.settings) == 2)
        assert metric(rig.settings, "otelpipe_exporter_queue_size") == 0


@async_test
async def test_block_when_full_waits_for_room() -> None:
    release = asyncio.Event()
    send = ScriptedSend(release)
    queue = {"queue_size": 1, "num_consumers": 1, "when_full": "block", "block_timeout_ms": 10_000}
    async with Rig(send, sending_queue=queue) as rig:
        await rig.helper.consume(spans(1, 1))
        await send.called.wait()
        await rig.helper.consume(spans(1, 1))
        blocked = asyncio.ensure_future(rig.helper.consume(spans(1, 1)))
        await asyncio.sleep(0)
        assert not blocked.done()
        release.set()
        await blocked  # room appeared: accepted, not refused
        await wait_for(lambda: sent(rig.settings) == 3)
        assert metric(rig.settings, "otelpipe_exporter_enqueue_failed_spans_total") == 0


@async_test
async def test_block_when_full_refuses_after_block_timeout() -> None:
    release = asyncio.Event()
    send = ScriptedSend(release)
    queue = {"queue_size": 1, "num_consumers": 1, "when_full": "block", "block_timeout_ms": 1}
    async with Rig(send, sending_queue=queue, timeout_ms=60_000) as rig:
        await rig.helper.consume(spans(1, 1))
        await send.called.wait()
        await rig.helper.consume(spans(1, 1))
        with pytest.raises(Refused):
            await rig.helper.consume(spans(1, 2))
        assert metric(rig.settings, "otelpipe_exporter_enqueue_failed_spans_total") == 2
        release.set()


def test_memory_queue_bounds_bytes_but_never_starves_a_big_batch() -> None:
    q = MemoryQueue(capacity=10, max_bytes=100)
    big = spans(5, 5)
    assert big.nbytes > 100
    q.offer(big)  # nothing else held: it must be able to go
    with pytest.raises(Refused, match="max_bytes"):
        q.offer(spans(1, 1))  # now over budget
    assert len(q) == 1
    assert q.held_bytes == big.nbytes


@async_test
async def test_memory_queue_releases_bytes_on_done() -> None:
    q = MemoryQueue(capacity=10, max_bytes=1000)
    a, b = spans(1, 1), spans(1, 1)
    q.offer(Batch(Signal.TRACES, a.message, 1, 600))
    item = await q.get()
    assert item is not None
    with pytest.raises(Refused):
        q.offer(Batch(Signal.TRACES, b.message, 1, 600))  # the first is still held while being sent
    q.done(item)
    q.offer(Batch(Signal.TRACES, b.message, 1, 600))
    assert len(q) == 1


def test_memory_queue_refuses_past_queue_size_and_when_closed() -> None:
    q = MemoryQueue(capacity=1, max_bytes=10_000)
    q.offer(spans(1, 1))
    with pytest.raises(Refused, match="queue_size"):
        q.offer(spans(1, 1))
    q.close()
    assert [b.items for b in q.drain()] == [1]
    with pytest.raises(Refused, match="closed"):
        q.offer(spans(1, 1))


def test_a_full_memory_queue_refuses_without_a_reference_cycle() -> None:
    q = MemoryQueue(capacity=1, max_bytes=10_000)
    q.offer(spans(1, 1))
    refused = spans(1, 1)
    assert cycles_after(lambda: q.offer(refused), Refused) == []


# ----------------------------------------------------------------------------------------- lifecycle


@async_test
async def test_shutdown_drains_the_queue() -> None:
    rig = Rig(ScriptedSend(), sending_queue={"num_consumers": 2})
    await rig.helper.start()
    for _ in range(20):
        await rig.helper.consume(spans(1, 1))
    await rig.helper.shutdown(rig.clock.monotonic() + 30)
    assert sent(rig.settings) == 20
    assert dropped(rig.settings, "shutdown") == 0
    with pytest.raises(Refused):
        await rig.helper.consume(spans())


@async_test
async def test_shutdown_deadline_counts_leftovers_once(caplog: pytest.LogCaptureFixture) -> None:
    send = ScriptedSend(asyncio.Event())  # the first send never ends
    rig = Rig(send, sending_queue={"num_consumers": 1}, timeout_ms=3_600_000)
    await rig.helper.start()
    for _ in range(4):
        await rig.helper.consume(spans(1, 2))
    await send.called.wait()
    with caplog.at_level(logging.ERROR):
        await rig.helper.shutdown(rig.clock.monotonic())  # deadline already reached
        await rig.helper.shutdown(rig.clock.monotonic())  # idempotent: counted once
    assert dropped(rig.settings, "shutdown") == 8  # 1 in flight + 3 queued
    assert sent(rig.settings) == 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].fields["dropped_items"] == 8  # type: ignore[attr-defined]
    assert metric(rig.settings, "otelpipe_exporter_queue_size") == 0


@async_test
async def test_shutdown_cuts_a_backoff_wait_that_would_pass_the_deadline() -> None:
    sleep = BlockingSleep()
    send = ScriptedSend(unavailable())
    rig = Rig(send, sleep=sleep, retry_on_failure={"initial_interval_ms": 60_000, "max_interval_ms": 60_000})
    await rig.helper.start()
    await rig.helper.consume(spans(1, 3))
    await sleep.entered.wait()
    # The 60 s wait cannot end before this deadline: shutdown gives up on it at once instead of waiting.
    await rig.helper.shutdown(rig.clock.monotonic() + 5)
    assert dropped(rig.settings, "shutdown") == 3
    assert len(send.calls) == 1


@async_test
async def test_lifecycle_is_idempotent_and_safe_without_start() -> None:
    rig = Rig(ScriptedSend())
    with pytest.raises(Refused):
        await rig.helper.consume(spans())  # not started
    await rig.helper.shutdown(rig.clock.monotonic() + 1)
    await rig.helper.shutdown(rig.clock.monotonic() + 1)
    await rig.helper.start()  # a shut-down helper does not come back
    with pytest.raises(Refused):
        await rig.helper.consume(spans())


# ----------------------------------------------------------------------------------------- no queue


@async_test
async def test_without_queue_consume_sends_in_the_caller() -> None:
    send = ScriptedSend(unavailable())
    async with Rig(send, sending_queue={"enabled": False}) as rig:
        await rig.helper.consume(spans(1, 2))  # returns only once sent (after one retry)
        assert sent(rig.settings) == 2
        assert rig.sleep.calls == [1.0]
        assert metric(rig.settings, "otelpipe_exporter_queue_capacity") == 0


@async_test
async def test_without_queue_failures_reach_the_caller_not_the_drop_counters() -> None:
    send = ScriptedSend(PermanentExportError("INVALID_ARGUMENT: bad"), *(unavailable() for _ in range(5)))
    async with Rig(send, sending_queue={"enabled": False}, retry_on_failure={"max_elapsed_ms": 2000}) as rig:
        with pytest.raises(Permanent):
            await rig.helper.consume(spans(1, 2))
        with pytest.raises(Refused) as refused:
            await rig.helper.consume(spans(1, 2))
        assert refused.value.retry_after_s == 1.0
        assert dropped(rig.settings, "permanent_error") == 0
        assert dropped(rig.settings, "retries_exhausted") == 0


# ----------------------------------------------------------------------------------------- pure parts


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:00 GMT", now) == 40.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0  # in the past: retry now
    assert parse_retry_after("-5", now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_partial_success_from_otlp_response() -> None:
    reply = ExportLogsServiceResponse()
    reply.partial_success.rejected_log_records = 4
    reply.partial_success.error_message = "too big"
    assert PartialSuccess.from_otlp_response(Signal.LOGS, reply.SerializeToString()) == PartialSuccess(4, "too big")
    assert PartialSuccess.from_otlp_response(Signal.LOGS, ExportLogsServiceResponse().SerializeToString()) is None
    assert PartialSuccess.from_otlp_response(Signal.LOGS, b"\xff\xff") is None  # unreadable OK stays OK
