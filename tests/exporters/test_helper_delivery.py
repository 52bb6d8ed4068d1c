"""The helper's delivery work beyond the memory queue: batching after the queue, and a disk queue behind it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pipeline.delivery.ledger import ledger_for
from pipeline.delivery.merge import LazyBatch
from pipeline.errors import ConfigError, Refused
from pipeline.exporters.helper import ExporterHelper
from pipeline.model import Batch, Signal
from tests.exporters.support import (
    BlockingSleep,
    Rig,
    ScriptedSend,
    async_test,
    config,
    dropped,
    exporter_settings,
    metric,
    sent,
    spans,
    unavailable,
    wait_for,
)
from tests.support.data import logs_request

# ----------------------------------------------------------------------------------------- batch stage


@async_test
async def test_batching_merges_queued_requests_without_decoding_them() -> None:
    send = ScriptedSend()
    async with Rig(send, batch={"send_batch_size": 6, "timeout_ms": 60_000}) as rig:
        parts = [spans(1, 2) for _ in range(3)]
        for b in parts:
            await rig.helper.consume(b)
        await wait_for(lambda: sent(rig.settings) == 6)
        (merged,) = send.calls
        assert isinstance(merged, LazyBatch)
        assert not merged.parsed
        assert merged.serialize() == b"".join(p.serialize() for p in parts)
        trigger = {"exporter": "otlp", "trigger": "size"}
        assert metric(rig.settings, "otelpipe_exporter_batch_sends_total", **trigger) == 1


@async_test
async def test_batch_timeout_sends_what_is_there() -> None:
    send = ScriptedSend()
    async with Rig(send, batch={"send_batch_size": 1000, "timeout_ms": 200}) as rig:
        await rig.helper.consume(spans(1, 2))
        await wait_for(lambda: sent(rig.settings) == 2)  # the fake sleep moved the clock past the timeout
        assert [b.items for b in send.calls] == [2]
        assert 0.2 in [round(s, 6) for s in rig.sleep.calls]


@async_test
async def test_batches_do_not_mix_signals_or_client_metadata() -> None:
    send = ScriptedSend()
    async with Rig(send, batch={"send_batch_size": 1000, "timeout_ms": 200}) as rig:
        t = spans(1, 1)
        tenant_a = Batch(t.signal, t.message, t.items, t.nbytes, t.raw, {"x-tenant": ("a",)})
        tenant_b = Batch(t.signal, t.message, t.items, t.nbytes, t.raw, {"x-tenant": ("b",)})
        for b in (tenant_a, tenant_b, tenant_a, Batch.from_message(Signal.LOGS, logs_request(2))):
            await rig.helper.consume(b)
        await wait_for(lambda: sum(b.items for b in send.calls) == 5)
        got = sorted((b.signal.value, dict(b.metadata).get("x-tenant", ("",))[0], b.items) for b in send.calls)
        assert got == [("logs", "", 2), ("traces", "a", 2), ("traces", "b", 1)]


@async_test
async def test_a_request_over_send_batch_max_bytes_is_split() -> None:
    send = ScriptedSend()
    big = spans(8, 4)
    async with Rig(send, batch={"send_batch_max_bytes": big.nbytes // 3, "timeout_ms": 0}) as rig:
        await rig.helper.consume(big)
        await wait_for(lambda: sent(rig.settings) == 32)
        assert len(send.calls) >= 3
        assert all(len(b.serialize()) <= big.nbytes // 3 for b in send.calls)


@async_test
async def test_merged_batch_retries_as_one_and_every_item_is_counted_once() -> None:
    send = ScriptedSend(unavailable(), unavailable())
    async with Rig(send, batch={"send_batch_size": 4, "timeout_ms": 60_000}) as rig:
        for _ in range(2):
            await rig.helper.consume(spans(1, 2))
        await wait_for(lambda: sent(rig.settings) == 4)
        assert [b.items for b in send.calls] == [4, 4, 4]
        assert metric(rig.settings, "otelpipe_exporter_send_failed_spans_total") == 8


def test_batching_needs_the_queue() -> None:
    with pytest.raises(ConfigError, match=r"exporters\.otlp\.batch: .*sending_queue\.enabled"):
        ExporterHelper(exporter_settings("otlp"), config(batch={}, sending_queue={"enabled": False}), ScriptedSend())


@async_test
async def test_shutdown_deadline_counts_items_held_by_the_batch_stage_once() -> None:
    release = asyncio.Event()
    send = ScriptedSend(release)  # the first merged batch hangs
    # A sleep that never ends by itself: the group timeout does not fire.
    rig = Rig(send, sleep=BlockingSleep(), batch={"send_batch_size": 2, "timeout_ms": 60_000}, timeout_ms=3_600_000)
    await rig.helper.start()
    for _ in range(3):
        await rig.helper.consume(spans(1, 1))  # 2 go out (hanging), 1 waits in a group
    await send.called.wait()
    await rig.helper.shutdown(rig.clock.monotonic())
    assert dropped(rig.settings, "shutdown") == 3
    assert sent(rig.settings) == 0


# ----------------------------------------------------------------------------------------- disk queue


def disk(path: Path, **extra: Any) -> dict[str, Any]:
    return {"type": "disk", "path": str(path), "num_consumers": 1, **extra}


@async_test
async def test_disk_queue_keeps_what_shutdown_cut_short_and_sends_it_after_restart(tmp_path: Path) -> None:
    down = ScriptedSend(unavailable())
    waiting = BlockingSleep()  # the retry wait outlasts the shutdown deadline
    rig = Rig(down, sleep=waiting, sending_queue=disk(tmp_path / "q"))
    await rig.helper.start()
    for _ in range(3):
        await rig.helper.consume(spans(1, 2))
    await waiting.entered.wait()
    await rig.helper.shutdown(rig.clock.monotonic())  # backend still down at the deadline
    assert dropped(rig.settings, "shutdown") == 0  # on disk for the next start: not a drop
    assert sent(rig.settings) == 0

    up = ScriptedSend()
    again = Rig(up, sending_queue=disk(tmp_path / "q"))
    await again.helper.start()
    await wait_for(lambda: sent(again.settings) == 6)
    recovered = metric(again.settings, "otelpipe_exporter_queue_recovered_spans_total")
    assert recovered == 6
    await again.helper.shutdown(again.clock.monotonic() + 10)
    assert list((tmp_path / "q").glob("*.seg")) == []


@async_test
async def test_disk_queue_with_batching_acknowledges_records_only_after_the_send(tmp_path: Path) -> None:
    send = ScriptedSend()
    async with Rig(send, sending_queue=disk(tmp_path / "q"), batch={"send_batch_size": 4, "timeout_ms": 200}) as rig:
        for _ in range(4):
            await rig.helper.consume(spans(1, 1))
        await wait_for(lambda: sent(rig.settings) == 4)
        assert [b.items for b in send.calls] == [4]
        assert isinstance(send.calls[0], LazyBatch)
        assert not send.calls[0].parsed
        assert rig.helper.queue is not None
        assert len(rig.helper.queue) == 0
    assert list((tmp_path / "q").glob("*.seg")) == []


@async_test
async def test_disk_queue_over_its_limit_refuses_the_sender(tmp_path: Path) -> None:
    hang = asyncio.Event()
    send = ScriptedSend(hang)
    one = spans(1, 3)
    queue = disk(tmp_path / "q", max_bytes=2 * (one.nbytes + 28) + 10)
    async with Rig(send, sending_queue=queue, timeout_ms=3_600_000) as rig:
        await rig.helper.consume(spans(1, 3))
        await rig.helper.consume(spans(1, 3))
        with pytest.raises(Refused, match="max_bytes") as refused:
            await rig.helper.consume(spans(1, 3))
        assert refused.value.retry_after_s == 1.0
        assert metric(rig.settings, "otelpipe_exporter_enqueue_failed_spans_total") == 3
        hang.set()


@async_test
async def test_buffered_bytes_are_in_the_ledger_while_held() -> None:
    hang = asyncio.Event()
    send = ScriptedSend(hang)
    rig = Rig(send, timeout_ms=3_600_000)
    ledger = ledger_for(rig.settings.metrics)
    await rig.helper.start()
    batch = spans(2, 2)
    await rig.helper.consume(batch)
    await send.called.wait()
    assert ledger.buffered_bytes() == batch.nbytes
    assert metric(rig.settings, "otelpipe_exporter_queue_bytes") == batch.nbytes
    hang.set()
    await wait_for(lambda: ledger.buffered_bytes() == 0)
    await rig.helper.shutdown(rig.clock.monotonic() + 5)
    assert ledger.by_component() == {}
