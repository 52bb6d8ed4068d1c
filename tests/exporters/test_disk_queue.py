"""The disk queue on a real directory: recovery, corruption, full disk, limits, fsync, reload handover.

(``kill -9`` of the real daemon with a disk queue is in tests/delivery/test_faults.py.)
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
from pathlib import Path

import pytest

from pipeline.delivery.metrics import delivery_metrics
from pipeline.errors import Refused, StartError
from pipeline.exporters.queue import DiskQueue, QueueItem
from pipeline.exporters.queue.disk import FileOps
from pipeline.model import Batch, Signal
from pipeline.telemetry.metrics import SelfMetrics
from pipeline.telemetry.ratelimit import RateLimitedLog
from tests.exporters.support import async_test
from tests.support.cycles import cycles_after
from tests.support.data import logs_request, traces_request
from tests.support.settings import sample_value

LOG = logging.getLogger("otelpipe.exporter.test")


class CountingOps(FileOps):
    """Real file operations, counting fsyncs; a write can be told to fail like a full disk."""

    def __init__(self) -> None:
        self.fsyncs = 0
        self.fail_writes: int | None = None  # errno to raise on writev

    def writev(self, fd: int, parts: list[bytes]) -> int:
        if self.fail_writes is not None:
            # A full disk often takes part of the write first: the queue must cut it off again.
            os.write(fd, parts[0][:10])
            raise OSError(self.fail_writes, os.strerror(self.fail_writes))
        return super().writev(fd, parts)

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        super().fsync(fd)


def make_queue(
    path: Path,
    metrics: SelfMetrics | None = None,
    *,
    exporter: str = "otlp",
    capacity: int = 1000,
    max_bytes: int = 64 * 1024 * 1024,
    fsync: str = "never",
    ops: FileOps | None = None,
) -> DiskQueue:
    metrics = metrics or SelfMetrics(process_metrics=False)
    return DiskQueue(
        path,
        capacity=capacity,
        max_bytes=max_bytes,
        fsync=fsync,
        fsync_interval_s=0.01,
        exporter=exporter,
        metrics=delivery_metrics(metrics),
        logger=LOG,
        log=RateLimitedLog(LOG),
        ops=ops,
    )


def logs(tag: str, n: int = 2) -> Batch:
    req = logs_request(n)
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            for r in sl.log_records:
                r.body.string_value = f"{tag}:{r.body.string_value}"
    return Batch.from_message(Signal.LOGS, req, {"x-tenant": (tag,)})


def bodies(batch: Batch) -> list[str]:
    return [r.body.string_value for rl in batch.message.resource_logs for sl in rl.scope_logs for r in sl.log_records]  # type: ignore[union-attr]


async def take(q: DiskQueue) -> QueueItem:
    item = await asyncio.wait_for(q.get(), 5)
    assert item is not None
    return item


def files(path: Path, suffix: str) -> list[Path]:
    return sorted(path.glob("*" + suffix))


@async_test
async def test_round_trip_keeps_data_metadata_and_order_then_deletes_the_segment(tmp_path: Path) -> None:
    q = make_queue(tmp_path / "q")
    await q.start()
    sent = [logs(f"r{i}") for i in range(3)]
    for b in sent:
        q.offer(b)
    assert len(q) == 3
    got = [await take(q) for _ in range(3)]
    assert [bodies(i.batch) for i in got] == [bodies(b) for b in sent]
    assert [dict(i.batch.metadata) for i in got] == [{"x-tenant": (f"r{i}",)} for i in range(3)]
    assert [i.batch.serialize() for i in got] == [b.serialize() for b in sent]
    assert q.held_bytes == sum(b.nbytes for b in sent)
    for item in got:
        q.done(item)
    assert q.held_bytes == 0
    q.close()
    assert await q.get() is None
    await q.stop()
    assert files(tmp_path / "q", ".seg") == []  # everything done: nothing left on disk


@async_test
async def test_what_is_not_done_is_sent_again_after_a_restart_in_order(tmp_path: Path) -> None:
    metrics = SelfMetrics(process_metrics=False)
    q = make_queue(tmp_path / "q", metrics)
    await q.start()
    for i in range(5):
        q.offer(logs(f"r{i}", n=3))
    first, second = await take(q), await take(q)
    q.done(first)
    q.keep(second)  # undecided at shutdown: kept
    q.close()
    await q.stop()

    again = make_queue(tmp_path / "q", metrics)
    await again.start()
    assert len(again) == 4
    got = [await take(again) for _ in range(4)]
    assert [bodies(i.batch)[0] for i in got] == ["r1:line 0", "r2:line 0", "r3:line 0", "r4:line 0"]
    recovered = sample_value(metrics, "otelpipe_exporter_queue_recovered_log_records_total", {"exporter": "otlp"})
    assert recovered == 12
    for item in got:
        again.done(item)
    again.close()
    await again.stop()


@async_test
async def test_a_corrupt_record_is_skipped_and_counted_never_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = SelfMetrics(process_metrics=False)
    q = make_queue(tmp_path / "q", metrics)
    await q.start()
    for i in range(3):
        q.offer(logs(f"r{i}"))
    q.close()
    await q.stop()
    (segment,) = files(tmp_path / "q", ".seg")
    data = bytearray(segment.read_bytes())
    size = len(data) // 3
    data[size + size // 2] ^= 0xFF  # inside the second record's payload
    segment.write_bytes(bytes(data))

    again = make_queue(tmp_path / "q", metrics)
    await again.start()
    with caplog.at_level(logging.ERROR):
        first, third = await take(again), await take(again)
    assert [bodies(first.batch)[0], bodies(third.batch)[0]] == ["r0:line 0", "r2:line 0"]
    assert sample_value(metrics, "otelpipe_exporter_queue_corrupt_records_total", {"exporter": "otlp"}) == 1
    assert any("corrupt record" in r.getMessage() for r in caplog.records)
    again.done(first)
    again.done(third)
    again.close()
    await again.stop()
    assert files(tmp_path / "q", ".seg") == []  # the corrupt record counts as done: the segment goes


@async_test
async def test_garbage_and_a_torn_tail_are_skipped_at_recovery(tmp_path: Path) -> None:
    metrics = SelfMetrics(process_metrics=False)
    q = make_queue(tmp_path / "q", metrics)
    await q.start()
    q.offer(logs("a"))
    q.offer(logs("b"))
    q.close()
    await q.stop()
    (segment,) = files(tmp_path / "q", ".seg")
    data = segment.read_bytes()
    half = len(data) // 2
    # Garbage between the two records, and the start of a third record cut short by a crash.
    segment.write_bytes(data[:half] + os.urandom(100) + data[half:] + data[:30])
    again = make_queue(tmp_path / "q", metrics)
    await again.start()
    assert [bodies((await take(again)).batch)[0] for _ in range(2)] == ["a:line 0", "b:line 0"]
    assert sample_value(metrics, "otelpipe_exporter_queue_corrupt_bytes_total", {"exporter": "otlp"}) == 100
    again.close()
    await again.stop()


@async_test
async def test_over_max_bytes_refuses_until_records_are_done(tmp_path: Path) -> None:
    batch = Batch.from_message(Signal.TRACES, traces_request(1, 3))
    record = batch.nbytes + 28  # the record header
    q = make_queue(tmp_path / "q", max_bytes=2 * record + record // 2)
    await q.start()
    q.offer(batch)
    q.offer(batch)
    assert q.disk_bytes == 2 * record
    with pytest.raises(Refused, match="max_bytes"):
        q.offer(batch)
    q.done(await take(q))
    with pytest.raises(Refused, match="max_bytes"):
        q.offer(batch)  # a done record still takes space until its whole segment is done
    q.done(await take(q))
    q.offer(batch)  # nothing left to send: the queue takes data again
    q.close()
    await q.stop()


@async_test
async def test_queue_size_refuses_and_block_waits_for_room(tmp_path: Path) -> None:
    q = make_queue(tmp_path / "q", capacity=1)
    await q.start()
    q.offer(logs("a"))
    with pytest.raises(Refused, match="queue_size"):
        q.offer(logs("b"))
    waiter = asyncio.ensure_future(q.put(logs("b"), timeout_s=10))
    await asyncio.sleep(0)
    assert not waiter.done()
    item = await take(q)
    q.done(item)
    await asyncio.wait_for(waiter, 5)
    assert len(q) == 1
    q.close()
    await q.stop()


@async_test
async def test_a_full_disk_queue_refuses_without_a_reference_cycle(tmp_path: Path) -> None:
    q = make_queue(tmp_path / "q", capacity=1)
    await q.start()
    q.offer(logs("a"))
    refused = logs("b")
    assert cycles_after(lambda: q.offer(refused), Refused) == []
    q.close()
    await q.stop()


@async_test
async def test_a_full_disk_refuses_cleanly_and_recovers(tmp_path: Path) -> None:
    metrics = SelfMetrics(process_metrics=False)
    ops = CountingOps()
    q = make_queue(tmp_path / "q", metrics, ops=ops)
    await q.start()
    q.offer(logs("a"))
    (segment,) = files(tmp_path / "q", ".seg")
    size = segment.stat().st_size
    ops.fail_writes = errno.ENOSPC
    with pytest.raises(Refused, match="disk is full"):
        q.offer(logs("b"))
    assert segment.stat().st_size == size  # the partial record was cut off
    labels = {"exporter": "otlp", "reason": "disk_full"}
    assert sample_value(metrics, "otelpipe_exporter_queue_write_errors_total", labels) == 1
    ops.fail_writes = None
    q.offer(logs("c"))
    assert [bodies((await take(q)).batch)[0] for _ in range(2)] == ["a:line 0", "c:line 0"]
    q.close()
    await q.stop()


@async_test
async def test_fsync_always_is_a_group_commit(tmp_path: Path) -> None:
    ops = CountingOps()
    q = make_queue(tmp_path / "q", fsync="always", ops=ops)
    await q.start()

    async def produce(i: int) -> None:
        q.offer(logs(f"r{i}"))
        await q.sync()

    await asyncio.gather(*(produce(i) for i in range(20)))
    assert 1 <= ops.fsyncs < 20  # requests waiting at the same moment share one fsync
    synced = ops.fsyncs
    await q.sync()  # nothing new: no fsync
    assert ops.fsyncs == synced
    q.close()
    await q.stop()


@async_test
async def test_segments_roll_and_done_segments_are_deleted(tmp_path: Path) -> None:
    q = make_queue(tmp_path / "q", max_bytes=64 * 1024)  # 8 KiB segments
    await q.start()
    for i in range(150):
        q.offer(logs(f"r{i}", n=4))
    assert len(files(tmp_path / "q", ".seg")) > 3
    items = [await take(q) for _ in range(150)]
    for item in items[:-1]:
        q.done(item)
    assert len(files(tmp_path / "q", ".seg")) == 1  # only the segment of the last record is left
    q.done(items[-1])
    q.close()
    await q.stop()
    assert files(tmp_path / "q", ".seg") == []


@async_test
async def test_a_reload_hands_the_store_to_the_new_instance(tmp_path: Path) -> None:
    metrics = SelfMetrics(process_metrics=False)
    old = make_queue(tmp_path / "q", metrics)
    await old.start()
    for i in range(4):
        old.offer(logs(f"r{i}"))
    in_flight = await take(old)
    new = make_queue(tmp_path / "q", metrics)
    await new.start()  # same exporter id, same path: shares the store
    old.close()
    assert await old.get() is None  # the old instance stops taking at once
    old.keep(in_flight)  # its send was cut short: first in line for the new instance
    await old.stop()
    got = [bodies((await take(new)).batch)[0] for _ in range(4)]
    assert got == ["r0:line 0", "r1:line 0", "r2:line 0", "r3:line 0"]
    new.close()
    await new.stop()


@async_test
async def test_another_exporter_or_process_cannot_use_the_same_path(tmp_path: Path) -> None:
    first = make_queue(tmp_path / "q", exporter="otlp")
    await first.start()
    with pytest.raises(StartError, match="already used by exporter otlp"):
        await make_queue(tmp_path / "q", exporter="otlphttp").start()
    first.close()
    await first.stop()
    lock = os.open(tmp_path / "q" / "LOCK", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another process would
        with pytest.raises(StartError, match="locked by another process"):
            await make_queue(tmp_path / "q").start()
    finally:
        os.close(lock)
