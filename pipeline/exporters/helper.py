"""The exporter helper: the delivery chain every network exporter uses.

    consume(batch)
      │ queue enabled: put the batch in the bounded queue and return (acknowledged). Full -> Refused (~1 s
      │ hint) and enqueue_failed counted; when_full = "block" first waits up to block_timeout_ms.
      │ queue disabled: run the chain below in the caller; failure -> Refused, permanent -> Permanent.
      ▼
    SendingQueue             MemoryQueue now; a disk queue plugs in behind the same interface
      ▼ num_consumers workers, owned by one asyncio.TaskGroup
    [batch stage]            comes with the disk queue: batching after the queue, as the collector does. It sits
      │                      between the workers and _deliver, and hands the queue items back (done) once the
      │                      merged batch's outcome is recorded, so a disk queue deletes only what was decided
      ▼
    RetryStage               exponential backoff with jitter, the server's retry hint as a floor, until
      │                      max_elapsed_ms; raises Undelivered(reason) when it gives up
      ▼
    TimeoutStage             timeout_ms per attempt; expiry is a retryable failure
      ▼
    send(batch) -> PartialSuccess | None
                             the exporter's one I/O call; raises RetryableExportError / PermanentExportError

Every acknowledged batch ends in exactly one counted outcome: ``sent`` (minus items a partial_success
rejected, dropped as "rejected_by_backend"), or dropped as "permanent_error", "retries_exhausted" or
"shutdown" (still queued, in flight or backing off when the shutdown deadline came).

A new exporter (Jaeger, Loki, ...) plugs in with three pieces: a config Struct subclassing
``ExporterHelperConfig``, a ``Sender`` (start / send / close) that translates its client's errors into
RetryableExportError / PermanentExportError, and a factory whose create returns
``QueuedExporter(settings, cfg, sender)``.

Time is injected: ``settings.clock`` measures elapsed time and reads the shutdown deadline (a
``time.monotonic()`` value in production), and an injectable async ``sleep`` does the backoff waits, so tests
check the backoff without waiting.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import DecodeError

from pipeline.clock import Clock
from pipeline.component import CreateSettings
from pipeline.consumer import Consumer
from pipeline.errors import (
    ExportError,
    Permanent,
    PermanentExportError,
    Refused,
    RetryableExportError,
)
from pipeline.exporters.helper_config import ExporterHelperConfig, RetryConfig
from pipeline.model import Batch, Signal
from pipeline.telemetry.health import CheckResult, HealthRegistry, Status
from pipeline.telemetry.metrics import ExporterMetrics
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

# Drop reasons, the ``reason`` label of otelpipe_exporter_dropped_*.
PERMANENT_ERROR = "permanent_error"
RETRIES_EXHAUSTED = "retries_exhausted"
SHUTDOWN = "shutdown"
REJECTED_BY_BACKEND = "rejected_by_backend"

_REJECTED_FIELD = {
    Signal.TRACES: "rejected_spans",
    Signal.LOGS: "rejected_log_records",
    Signal.METRICS: "rejected_data_points",
}


@dataclass(frozen=True, slots=True)
class PartialSuccess:
    """The backend accepted the batch but rejected ``rejected`` items (0 with a message: a warning)."""

    rejected: int
    message: str

    @classmethod
    def from_otlp_response(cls, signal: Signal, data: bytes) -> PartialSuccess | None:
        """Read ``partial_success`` from a serialized Export*ServiceResponse; None when it is unset or empty."""
        if not data:
            return None
        reply = signal.response_type()
        try:
            reply.ParseFromString(data)
        except DecodeError:
            # The backend said OK; an unreadable body does not undo that, and it must not be retried (OTLP).
            return None
        if not reply.HasField("partial_success"):
            return None
        ps = reply.partial_success
        rejected = int(getattr(ps, _REJECTED_FIELD[signal]))
        if rejected == 0 and not ps.error_message:
            return None
        return cls(rejected, ps.error_message)


SendFn = Callable[[Batch], Awaitable[PartialSuccess | None]]
SleepFn = Callable[[float], Awaitable[None]]


class Undelivered(ExportError):
    """The retry stage gave up on a batch; ``reason`` is the drop reason it is counted under."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def parse_retry_after(value: str | None, now_unix_s: float) -> float | None:
    """An HTTP Retry-After header (delay-seconds or HTTP-date) as seconds from now; None if absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110: HTTP-dates are GMT
        return None
    return max(0.0, when.timestamp() - now_unix_s)


# --------------------------------------------------------------------------------------------- sending queue


@dataclass(slots=True, eq=False)
class QueueItem:
    """A batch taken from a queue; hand it back with ``done`` once its outcome is recorded."""

    batch: Batch


class SendingQueue(Protocol):
    """A bounded queue between ``consume`` and the send workers.

    A disk queue implements the same calls: ``offer``/``put`` persist before returning, ``done`` deletes the
    record, ``drain`` returns nothing (what is left stays on disk for the next start, so it is not a drop).
    """

    @property
    def capacity(self) -> int: ...

    def __len__(self) -> int: ...

    def offer(self, batch: Batch) -> bool:
        """Add without waiting; False when full or closed."""
        ...

    async def put(self, batch: Batch, timeout_s: float) -> bool:
        """Add, waiting up to ``timeout_s`` for room; False when still full, or closed."""
        ...

    async def get(self) -> QueueItem | None:
        """The next batch; None once the queue is closed and empty."""
        ...

    def done(self, item: QueueItem) -> None: ...

    def close(self) -> None:
        """Refuse new batches; ``get`` hands out what is queued, then None."""
        ...

    def drain(self) -> list[Batch]:
        """Remove and return the batches still queued (final shutdown)."""
        ...


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        fut = waiters.popleft()
        if not fut.done():
            fut.set_result(None)
            return


def _wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        fut = waiters.popleft()
        if not fut.done():
            fut.set_result(None)


class MemoryQueue:
    """In-memory SendingQueue bounded by batches and by bytes held (queued plus being sent)."""

    def __init__(self, capacity: int, max_bytes: int) -> None:
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._items: deque[Batch] = deque()
        self._held_bytes = 0
        self._closed = False
        self._getters: deque[asyncio.Future[None]] = deque()
        # Putters only wait in when_full = "block"; they are all woken when room may have appeared.
        self._putters: deque[asyncio.Future[None]] = deque()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def held_bytes(self) -> int:
        return self._held_bytes

    def __len__(self) -> int:
        return len(self._items)

    def _has_room(self, nbytes: int) -> bool:
        if len(self._items) >= self._capacity:
            return False
        # A batch larger than max_bytes still goes in when nothing else is held, or it could never be sent.
        return self._held_bytes + nbytes <= self._max_bytes or self._held_bytes == 0

    def _push(self, batch: Batch) -> None:
        self._items.append(batch)
        self._held_bytes += batch.nbytes
        _wake_one(self._getters)

    def offer(self, batch: Batch) -> bool:
        if self._closed or not self._has_room(batch.nbytes):
            return False
        self._push(batch)
        return True

    async def put(self, batch: Batch, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not self._closed:
            if self._has_room(batch.nbytes):
                self._push(batch)
                return True
            remaining = end - loop.time()
            if remaining <= 0:
                return False
            fut: asyncio.Future[None] = loop.create_future()
            self._putters.append(fut)
            try:
                await asyncio.wait({fut}, timeout=remaining)
            finally:
                fut.cancel()
        return False

    async def get(self) -> QueueItem | None:
        while not self._items:
            if self._closed:
                return None
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                # Woken and cancelled at once: pass the wake-up on so the batch is not left waiting.
                if fut.done() and not fut.cancelled() and self._items:
                    _wake_one(self._getters)
                raise
        batch = self._items.popleft()
        _wake_all(self._putters)
        return QueueItem(batch)

    def done(self, item: QueueItem) -> None:
        self._held_bytes -= item.batch.nbytes
        _wake_all(self._putters)

    def close(self) -> None:
        self._closed = True
        _wake_all(self._getters)
        _wake_all(self._putters)

    def drain(self) -> list[Batch]:
        left = list(self._items)
        self._items.clear()
        self._held_bytes -= sum(b.nbytes for b in left)
        _wake_all(self._putters)
        return left


# --------------------------------------------------------------------------------------------- sender chain


class TimeoutStage:
    """Bounds one send attempt; expiry is retryable (the backend may just be slow)."""

    def __init__(self, send: SendFn, timeout_s: float) -> None:
        self._send = send
        self._timeout_s = timeout_s

    async def __call__(self, batch: Batch) -> PartialSuccess | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._send(batch)
        except TimeoutError:
            raise RetryableExportError(f"no answer within {self._timeout_s * 1000:.0f} ms (timeout_ms)") from None


class Stopping:
    """Shared by the stages: set when shutdown begins, with its deadline (so waits can be cut short)."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.event = asyncio.Event()

    def begin(self, deadline: float) -> None:
        self.deadline = deadline
        self.event.set()


class FailureTracker:
    """Feeds the health check: failing since when, and why."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.failing_since: float | None = None
        self.last_error = ""

    def failed(self, error: str) -> None:
        if self.failing_since is None:
            self.failing_since = self._clock.monotonic()
        self.last_error = error

    def ok(self) -> None:
        self.failing_since = None


class Backoff:
    """The wait before each retry of one batch (pure: no clock, no sleep)."""

    def __init__(self, cfg: RetryConfig, rng: random.Random) -> None:
        self._interval = cfg.initial_interval_ms / 1000.0
        self._max = cfg.max_interval_ms / 1000.0
        self._factor = cfg.randomization_factor
        self._multiplier = cfg.multiplier
        self._rng = rng

    def next_delay(self) -> float:
        spread = self._interval * self._factor
        delay = self._rng.uniform(self._interval - spread, self._interval + spread)
        self._interval = min(self._interval * self._multiplier, self._max)
        return delay


class RetryStage:
    """Retries retryable failures with backoff; gives up by raising Undelivered with the drop reason."""

    def __init__(
        self,
        send: SendFn,
        cfg: RetryConfig,
        *,
        clock: Clock,
        sleep: SleepFn,
        rng: random.Random,
        metrics: ExporterMetrics,
        log: RateLimitedLog,
        stopping: Stopping,
        failures: FailureTracker,
    ) -> None:
        self._send = send
        self._cfg = cfg
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._metrics = metrics
        self._log = log
        self._stopping = stopping
        self._failures = failures
        self._max_elapsed_s = cfg.max_elapsed_ms / 1000.0

    async def __call__(self, batch: Batch) -> PartialSuccess | None:
        started = self._clock.monotonic()
        backoff = Backoff(self._cfg, self._rng)
        while True:
            try:
                result = await self._send(batch)
            except RetryableExportError as exc:
                self._attempt_failed(batch, exc.reason)
                delay = self._next_delay(backoff, exc, started)
                self._log.log(
                    logging.WARNING,
                    "retrying",
                    "export failed, will retry",
                    exporter=self._metrics.exporter,
                    signal=batch.signal.value,
                    items=batch.items,
                    error=exc.reason,
                    retry_in_s=round(delay, 3),
                )
                await self._wait(delay, exc.reason)
                self._metrics.retried()
                continue
            except PermanentExportError as exc:
                self._attempt_failed(batch, exc.reason)
                raise Undelivered(PERMANENT_ERROR, exc.reason) from exc
            except Exception as exc:
                # A send function must translate its client's errors; one that leaks is a bug that would
                # repeat on every retry, so the batch is dropped (counted) and the worker lives on.
                detail = f"unexpected {type(exc).__name__} from send: {exc}"
                self._attempt_failed(batch, detail)
                raise Undelivered(PERMANENT_ERROR, detail) from exc
            self._failures.ok()
            return result

    def _attempt_failed(self, batch: Batch, reason: str) -> None:
        self._metrics.send_failed(batch.signal, batch.items)
        self._failures.failed(reason)

    def _next_delay(self, backoff: Backoff, exc: RetryableExportError, started: float) -> float:
        if not self._cfg.enabled:
            raise Undelivered(RETRIES_EXHAUSTED, f"{exc.reason} (retry_on_failure is disabled)") from exc
        delay = backoff.next_delay()
        if exc.retry_after_s is not None:
            delay = max(delay, exc.retry_after_s)  # the server knows best when it can take data again
        elapsed = self._clock.monotonic() - started
        if self._max_elapsed_s and elapsed + delay > self._max_elapsed_s:
            raise Undelivered(
                RETRIES_EXHAUSTED,
                f"{exc.reason} (gave up after {elapsed:.1f}s; the next retry would pass max_elapsed_ms)",
            ) from exc
        return delay

    async def _wait(self, delay: float, error: str) -> None:
        """Sleep ``delay`` unless shutdown's deadline comes first: then give up at once, nothing to wait for."""
        stopping = self._stopping
        if stopping.deadline is None:
            begun = self._clock.monotonic()
            sleeper = asyncio.ensure_future(self._sleep(delay))
            stopper = asyncio.ensure_future(stopping.event.wait())
            try:
                done, _ = await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                stopper.cancel()
            if sleeper in done:
                sleeper.result()
                return
            # Shutdown began during the wait: finish it only if the retry can still happen before the deadline.
            delay = max(0.0, delay - (self._clock.monotonic() - begun))
        assert stopping.deadline is not None
        if self._clock.monotonic() + delay > stopping.deadline:
            raise Undelivered(SHUTDOWN, f"{error} (shutting down before the next retry)")
        await self._sleep(delay)


# --------------------------------------------------------------------------------------------- the helper


class _State(enum.Enum):
    NEW = "not started"
    RUNNING = "running"
    STOPPING = "shutting down"
    STOPPED = "shut down"


class ExporterHelper:
    """The Consumer of a queued exporter: queue, workers, retry, timeout, outcome accounting and health."""

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
        self._logger = settings.logger
        self._log = RateLimitedLog(settings.logger, clock=settings.clock)
        self._metrics = settings.metrics.exporter(self._id)
        self._health: HealthRegistry = settings.health
        self._health_name = f"exporter/{self._id}"
        self._stopping = Stopping()
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
        qcfg = cfg.sending_queue
        self._queue: SendingQueue | None = None
        if qcfg.enabled:
            self._queue = queue if queue is not None else MemoryQueue(qcfg.queue_size, qcfg.max_bytes)
        self._num_consumers = qcfg.num_consumers
        self._block_s = qcfg.block_timeout_ms / 1000.0 if qcfg.when_full == "block" else 0.0
        self._state = _State.NEW
        self._runner: asyncio.Task[None] | None = None
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

    # Consumer --------------------------------------------------------------------------------------------

    @property
    def mutates_data(self) -> bool:
        return False

    async def consume(self, batch: Batch) -> None:
        if self._state is not _State.RUNNING:
            raise Refused(f"exporter {self._id} is {self._state.value}")
        if self._queue is None:
            await self._send_now(batch)
            return
        if self._queue.offer(batch):
            return
        if self._block_s > 0 and await self._queue.put(batch, self._block_s):
            return
        self._metrics.enqueue_failed(batch.signal, batch.items)
        self._log.log(
            logging.WARNING,
            "queue_full",
            "sending queue is full, refusing data",
            exporter=self._id,
            signal=batch.signal.value,
            items=batch.items,
            queue_capacity=self._queue.capacity,
        )
        raise Refused(f"the sending queue of exporter {self._id} is full")

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
        self._state = _State.STOPPING
        self._stopping.begin(deadline)
        if self._queue is not None:
            self._queue.close()
        if self._runner is not None:
            runner = self._runner
            await asyncio.wait({runner}, timeout=max(0.0, deadline - self._clock.monotonic()))
            if not runner.done():
                runner.cancel()  # the TaskGroup cancels the workers; each counts its batch in flight
                await asyncio.wait({runner})
            if not runner.cancelled() and runner.exception() is not None:
                self._logger.error("exporter %s: send workers failed", self._id, exc_info=runner.exception())
        elif self._sync_inflight:
            idle = asyncio.ensure_future(self._sync_idle.wait())
            try:
                await asyncio.wait({idle}, timeout=max(0.0, deadline - self._clock.monotonic()))
            finally:
                idle.cancel()
        if self._queue is not None:
            for batch in self._queue.drain():
                self._drop_at_shutdown(batch)
        if self._shutdown_dropped:
            self._logger.error(
                "exporter %s: shutdown deadline reached, %d items dropped",
                self._id,
                self._shutdown_dropped,
                extra={"fields": {"exporter": self._id, "dropped_items": self._shutdown_dropped}},
            )
        self._health.unregister(self._health_name)
        self._state = _State.STOPPED

    # Workers ---------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for i in range(self._num_consumers):
                tg.create_task(self._worker(), name=f"exporter/{self._id}/sender-{i}")

    async def _worker(self) -> None:
        queue = self._queue
        assert queue is not None
        while (item := await queue.get()) is not None:
            try:
                await self._deliver(item.batch)
            finally:
                queue.done(item)

    async def _deliver(self, batch: Batch) -> None:
        try:
            result = await self._send(batch)
        except Undelivered as exc:
            self._record_drop(batch, exc)
            return
        except asyncio.CancelledError:
            self._drop_at_shutdown(batch)
            raise
        self._record_sent(batch, result)

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
        if exc.reason == SHUTDOWN:
            self._drop_at_shutdown(batch)
            return
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
        await self.helper.start()

    async def shutdown(self, deadline: float) -> None:
        # Drain first: the client must stay open for the batches still queued.
        await self.helper.shutdown(deadline)
        if self._sender_started and not self._closed:
            self._closed = True
            await self.sender.close()
        self._closed = True
