"""The exporter helper: the delivery chain every network exporter uses.

    consume(batch)
      │ queue enabled: put the batch in the bounded queue and return (acknowledged); a disk queue with
      │ fsync = "always" returns after the fsync. Full / over max_bytes / disk error -> Refused (~1 s hint)
      │ and enqueue_failed counted; when_full = "block" first waits up to block_timeout_ms.
      │ queue disabled: run the chain below in the caller; failure -> Refused, permanent -> Permanent.
      ▼
    SendingQueue             MemoryQueue or DiskQueue (pipeline/exporters/queue)
      ▼
    [batch stage]            with a [batch] table: one assembler merges queue items per signal and client
      │                      metadata (send_batch_size items, send_batch_max_bytes, timeout_ms) and hands the
      │                      merged batch to a sender (pipeline/exporters/batching.py)
      ▼ num_consumers senders, owned by one asyncio.TaskGroup
    RetryStage -> TimeoutStage -> send(batch)        (pipeline/exporters/retry.py)
      ▼
    outcome recorded, then the queue items are handed back: ``done`` (a disk queue acknowledges the records)
    or, when shutdown cut the send short, ``keep`` (a disk queue keeps them for the next start)

Every acknowledged batch ends in exactly one counted outcome: ``sent`` (minus items a partial_success
rejected, dropped as "rejected_by_backend"), dropped as "permanent_error" or "retries_exhausted", or, at the
shutdown deadline, dropped as "shutdown" (memory queue) / kept on disk for the next start (disk queue).

A new exporter (Jaeger, Loki, ...) plugs in with three pieces: a config Struct subclassing
``ExporterHelperConfig``, a ``Sender`` (start / send / close) that translates its client's errors into
RetryableExportError / PermanentExportError, and a factory whose create returns
``QueuedExporter(settings, cfg, sender)``.

Time is injected: ``settings.clock`` measures elapsed time, batch timeouts and the shutdown deadline (a
``time.monotonic()`` value in production), and an injectable async ``sleep`` does the waits, so tests check
backoff and batch timeouts without waiting.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Sequence
from typing import Protocol

from config.decode import format_path
from pipeline.component import CreateSettings
from pipeline.consumer import Consumer
from pipeline.delivery.ledger import ledger_for
from pipeline.delivery.metrics import delivery_metrics
from pipeline.errors import ConfigError, Permanent, Refused
from pipeline.exporters.batching import BatchStage, Delivery
from pipeline.exporters.helper_config import ExporterHelperConfig
from pipeline.exporters.queue import DiskQueue, MemoryQueue, QueueItem, SendingQueue
from pipeline.exporters.retry import (
    PERMANENT_ERROR,
    REJECTED_BY_BACKEND,
    SHUTDOWN,
    Backoff,
    FailureTracker,
    PartialSuccess,
    RetryStage,
    SendFn,
    SleepFn,
    Stopping,
    TimeoutStage,
    Undelivered,
    parse_retry_after,
)
from pipeline.model import Batch, Signal
from pipeline.telemetry.health import CheckResult, HealthChecks, Status
from pipeline.telemetry.ratelimit import RateLimitedLog

__all__ = [
    "Backoff",
    "ExporterHelper",
    "ExporterHelperConfig",
    "FailureTracker",
    "MemoryQueue",
    "PartialSuccess",
    "QueueItem",
    "QueuedExporter",
    "RetryStage",
    "SendFn",
    "Sender",
    "SendingQueue",
    "SleepFn",
    "Stopping",
    "TimeoutStage",
    "Undelivered",
    "parse_retry_after",
]


class _State(enum.Enum):
    NEW = "not started"
    RUNNING = "running"
    STOPPING = "shutting down"
    STOPPED = "shut down"


class ExporterHelper:
    """The Consumer of a queued exporter: queue, workers, batching, retry, timeout, outcomes and health."""

    def __init__(
        self,
        settings: CreateSettings,
        cfg: ExporterHelperConfig,
        send: SendFn,
        *,
        sleep: SleepFn = asyncio.sleep,
        rng: random.Random | None = None,
        queue: SendingQueue | None = None,
    ) -> None:
        self._id = str(settings.id)
        self._clock = settings.clock
        self._sleep = sleep
        self._logger = settings.logger
        self._log = RateLimitedLog(settings.logger, clock=settings.clock)
        self._metrics = settings.metrics.exporter(self._id)
        self._delivery_metrics = delivery_metrics(settings.metrics)
        self._ledger = ledger_for(settings.metrics)
        self._health: HealthChecks = settings.health
        self._health_name = f"exporter/{self._id}"
        qcfg = cfg.sending_queue
        self._stopping = Stopping(keeps_data=qcfg.enabled and qcfg.type == "disk")
        self._failures = FailureTracker(settings.clock)
        self._send: SendFn = RetryStage(
            TimeoutStage(send, cfg.timeout_ms / 1000.0),
            cfg.retry_on_failure,
            clock=settings.clock,
            sleep=sleep,
            rng=rng if rng is not None else random.Random(),
            metrics=self._metrics,
            log=self._log,
            stopping=self._stopping,
            failures=self._failures,
        )
        if cfg.batch is not None and not qcfg.enabled:
            key = format_path((settings.kind.value, self._id, "batch"))
            raise ConfigError([f"{key}: batching happens after the queue; it needs sending_queue.enabled = true"])
        self._queue: SendingQueue | None = None
        if qcfg.enabled:
            self._queue = queue if queue is not None else self._make_queue(cfg, settings)
        self._batch = cfg.batch
        self._num_consumers = qcfg.num_consumers
        self._block_s = qcfg.block_timeout_ms / 1000.0 if qcfg.when_full == "block" else 0.0
        self._state = _State.NEW
        self._runner: asyncio.Task[None] | None = None
        self._stage: BatchStage | None = None
        self._shutdown_task: asyncio.Future[None] | None = None
        self._shutdown_dropped = 0
        # Sends running in callers' tasks (queue disabled), so shutdown can let them finish first.
        self._sync_inflight = 0
        self._sync_idle = asyncio.Event()
        self._sync_idle.set()

        queue_ref = self._queue
        self._metrics.queue_capacity.set(queue_ref.capacity if queue_ref is not None else 0)
        # Read at scrape time: always current, and no gauge update on the data path.
        self._metrics.queue_size.set_function(lambda: len(queue_ref) if queue_ref is not None else 0)
        self._delivery_metrics.queue_bytes.labels(self._id).set_function(
            lambda: queue_ref.held_bytes if queue_ref is not None else 0
        )
        if isinstance(queue_ref, DiskQueue):
            self._delivery_metrics.queue_disk_bytes.labels(self._id).set_function(lambda: queue_ref.disk_bytes)

    def _make_queue(self, cfg: ExporterHelperConfig, settings: CreateSettings) -> SendingQueue:
        qcfg = cfg.sending_queue
        if qcfg.type == "disk":
            return DiskQueue(
                qcfg.path,
                capacity=qcfg.queue_size,
                max_bytes=qcfg.max_bytes,
                fsync=qcfg.fsync,
                fsync_interval_s=qcfg.fsync_interval_ms / 1000.0,
                exporter=self._id,
                metrics=self._delivery_metrics,
                logger=settings.logger,
                log=self._log,
            )
        return MemoryQueue(qcfg.queue_size, qcfg.max_bytes)

    @property
    def queue(self) -> SendingQueue | None:
        return self._queue

    # Consumer --------------------------------------------------------------------------------------------

    @property
    def mutates_data(self) -> bool:
        return False

    async def consume(self, batch: Batch) -> None:
        if self._state is not _State.RUNNING:
            raise Refused(f"exporter {self._id} is {self._state.value}")
        queue = self._queue
        if queue is None:
            await self._send_now(batch)
            return
        try:
            queue.offer(batch)
        except Refused as refused:
            if not self._block_s:
                raise self._enqueue_failed(batch, refused) from None
            try:
                await queue.put(batch, self._block_s)
            except Refused as still:
                raise self._enqueue_failed(batch, still) from None
        await queue.sync()

    def _enqueue_failed(self, batch: Batch, refused: Refused) -> Refused:
        self._metrics.enqueue_failed(batch.signal, batch.items)
        self._log.log(
            logging.WARNING,
            "queue_full",
            "sending queue refused data",
            exporter=self._id,
            signal=batch.signal.value,
            items=batch.items,
            reason=refused.reason,
        )
        return Refused(f"exporter {self._id}: {refused.reason}", refused.retry_after_s)

    async def _send_now(self, batch: Batch) -> None:
        self._sync_inflight += 1
        self._sync_idle.clear()
        try:
            result = await self._send(batch)
        except Undelivered as exc:
            # Nothing was acknowledged yet: the caller hears the outcome, the receiver counts the refusal.
            if exc.reason == PERMANENT_ERROR:
                raise Permanent(f"exporter {self._id}: {exc.detail}") from exc
            raise Refused(f"exporter {self._id}: {exc.detail}") from exc
        finally:
            self._sync_inflight -= 1
            if self._sync_inflight == 0:
                self._sync_idle.set()
        self._record_sent(batch, result)

    # Lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._state is not _State.NEW:
            return
        if self._queue is not None:
            await self._queue.start()  # a disk queue recovers here; StartError propagates
            queue = self._queue
            self._ledger.hold(self, f"exporter/{self._id}", lambda: queue.held_bytes)
        self._state = _State.RUNNING
        self._health.register(self._health_name, self._check)
        if self._queue is not None:
            self._runner = asyncio.create_task(self._run(), name=f"exporter/{self._id}/senders")

    async def shutdown(self, deadline: float) -> None:
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(self._shutdown(deadline))
        # Shielded: a caller cancelled mid-way must not leave batches neither sent nor counted.
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self, deadline: float) -> None:
        was_running = self._state is _State.RUNNING
        self._state = _State.STOPPING
        self._stopping.begin(deadline)
        if self._queue is not None:
            self._queue.close()
        if self._runner is not None:
            runner = self._runner
            await asyncio.wait({runner}, timeout=max(0.0, deadline - self._clock.monotonic()))
            if not runner.done():
                runner.cancel()  # the TaskGroup cancels the workers; each settles its batch in flight
                await asyncio.wait({runner})
            if not runner.cancelled() and runner.exception() is not None:
                self._logger.error("exporter %s: send workers failed", self._id, exc_info=runner.exception())
        elif self._sync_inflight:
            idle = asyncio.ensure_future(self._sync_idle.wait())
            try:
                await asyncio.wait({idle}, timeout=max(0.0, deadline - self._clock.monotonic()))
            finally:
                idle.cancel()
        if self._stage is not None:
            self._stage.settle_leftovers()
        if self._queue is not None:
            for batch in self._queue.drain():
                self._drop_at_shutdown(batch)
            if was_running:
                await self._queue.stop()
        if self._shutdown_dropped:
            self._logger.error(
                "exporter %s: shutdown deadline reached, %d items dropped",
                self._id,
                self._shutdown_dropped,
                extra={"fields": {"exporter": self._id, "dropped_items": self._shutdown_dropped}},
            )
        self._ledger.release(self)
        self._health.unregister(self._health_name)
        self._state = _State.STOPPED

    # Workers ---------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        async with asyncio.TaskGroup() as tg:
            if self._batch is None:
                for i in range(self._num_consumers):
                    tg.create_task(self._worker(queue), name=f"exporter/{self._id}/sender-{i}")
                return
            self._stage = BatchStage(
                queue,
                self._batch,
                Delivery(self._deliver, self._settle),
                clock=self._clock,
                sleep=self._sleep,
                senders=self._num_consumers,
                sends=self._delivery_metrics.exporter_batch_sends,
                exporter=self._id,
            )
            self._stage.run(tg)

    async def _worker(self, queue: SendingQueue) -> None:
        while (item := await queue.get()) is not None:
            decided = False
            try:
                decided = await self._deliver(item.batch)
            finally:
                self._settle([item], decided)

    async def _deliver(self, batch: Batch) -> bool:
        """Send and record the outcome; False when shutdown cut it short (undecided: kept or counted)."""
        try:
            result = await self._send(batch)
        except Undelivered as exc:
            if exc.reason == SHUTDOWN:
                return False
            self._record_drop(batch, exc)
            return True
        self._record_sent(batch, result)
        return True

    def _settle(self, items: Sequence[QueueItem], decided: bool) -> None:
        queue = self._queue
        assert queue is not None
        for item in items:
            if decided:
                queue.done(item)
                continue
            if not queue.persistent:
                self._drop_at_shutdown(item.batch)
            queue.keep(item)

    # Outcomes --------------------------------------------------------------------------------------------

    def _record_sent(self, batch: Batch, result: PartialSuccess | None) -> None:
        if result is None:
            self._metrics.sent(batch.signal, batch.items)
            return
        rejected = min(max(result.rejected, 0), batch.items)
        self._metrics.sent(batch.signal, batch.items - rejected)
        if rejected:
            self._metrics.dropped(batch.signal, rejected, REJECTED_BY_BACKEND)
        # OTLP: a partial success is never retried; its message is for the operator.
        self._log.log(
            logging.WARNING,
            "partial_success",
            "backend rejected part of a batch" if rejected else "backend accepted a batch with a warning",
            exporter=self._id,
            signal=batch.signal.value,
            rejected=rejected,
            message=result.message,
        )

    def _record_drop(self, batch: Batch, exc: Undelivered) -> None:
        self._metrics.dropped(batch.signal, batch.items, exc.reason)
        self._log.log(
            logging.ERROR,
            exc.reason,
            "export failed, data dropped",
            exporter=self._id,
            signal=batch.signal.value,
            items=batch.items,
            reason=exc.reason,
            error=exc.detail,
        )

    def _drop_at_shutdown(self, batch: Batch) -> None:
        # Logged once, with the total, at the end of shutdown.
        self._metrics.dropped(batch.signal, batch.items, SHUTDOWN)
        self._shutdown_dropped += batch.items

    # Health ----------------------------------------------------------------------------------------------

    def _check(self) -> CheckResult:
        runner = self._runner
        if self._state is _State.RUNNING and runner is not None and runner.done():
            return CheckResult(Status.UNHEALTHY, "send workers stopped")
        since = self._failures.failing_since
        if since is not None:
            failing_s = self._clock.monotonic() - since
            return CheckResult(Status.DEGRADED, f"sends failing for {failing_s:.0f}s: {self._failures.last_error}")
        if self._queue is not None and len(self._queue) >= self._queue.capacity:
            return CheckResult(Status.DEGRADED, "sending queue full")
        return CheckResult(Status.HEALTHY)


# --------------------------------------------------------------------------------------------- exporters


class Sender(Protocol):
    """The exporter-specific part: a client opened in start(), one I/O call per batch, closed at the end."""

    async def start(self) -> None:
        """Open the client; raise StartError when it cannot work (bad certificate file, ...)."""
        ...

    async def send(self, batch: Batch) -> PartialSuccess | None:
        """Send one batch; raise RetryableExportError / PermanentExportError, nothing else."""
        ...

    async def close(self) -> None:
        """Release the client; called once, after the helper has drained."""
        ...


class QueuedExporter:
    """An exporter instance: a Sender behind the delivery chain. Every signal shares one queue."""

    def __init__(
        self,
        settings: CreateSettings,
        cfg: ExporterHelperConfig,
        sender: Sender,
        *,
        sleep: SleepFn = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.sender = sender
        self.helper = ExporterHelper(settings, cfg, sender.send, sleep=sleep, rng=rng)
        self._sender_started = False
        self._closed = False

    def consumer(self, signal: Signal) -> Consumer:
        return self.helper

    async def start(self) -> None:
        if self._sender_started or self._closed:
            return
        await self.sender.start()
        self._sender_started = True
        try:
            await self.helper.start()
        except BaseException:
            self._closed = True
            await self.sender.close()
            raise

    async def shutdown(self, deadline: float) -> None:
        # Drain first: the client must stay open for the batches still queued.
        await self.helper.shutdown(deadline)
        if self._sender_started and not self._closed:
            self._closed = True
            await self.sender.close()
        self._closed = True
