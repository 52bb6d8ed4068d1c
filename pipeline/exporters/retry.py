"""The send chain of the exporter helper: retry with backoff, the per-attempt timeout, and what a send returns.

    RetryStage    exponential backoff with jitter, the server's retry hint (Retry-After / RetryInfo) as a floor,
      │           until max_elapsed_ms; raises Undelivered(reason) when it gives up, or when shutdown's deadline
      │           would pass before the next attempt
      ▼
    TimeoutStage  timeout_ms per attempt; expiry is a retryable failure
      ▼
    send(batch) -> PartialSuccess | None   (the exporter's one I/O call)

Time is injected: a ``Clock`` measures elapsed time and reads the shutdown deadline, and an async ``sleep`` does
the waits, so tests check the backoff without waiting.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from pipeline.clock import Clock
from pipeline.errors import ExportError, PermanentExportError, RetryableExportError
from pipeline.exporters.helper_config import RetryConfig
from pipeline.model import Batch, Signal
from pipeline.telemetry.metrics import ExporterMetrics
from pipeline.telemetry.ratelimit import RateLimitedLog

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
    """Shared by the stages: set when shutdown begins, with its deadline (so waits can be cut short).

    ``keeps_data`` is True in front of a disk queue: what is not sent stays on disk for the next start, so once
    shutdown has begun a failing send is not retried at all (waiting for a backend that is down would only
    delay the exit).
    """

    def __init__(self, keeps_data: bool = False) -> None:
        self.deadline: float | None = None
        self.event = asyncio.Event()
        self.keeps_data = keeps_data

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
        if stopping.keeps_data:
            raise Undelivered(SHUTDOWN, f"{error} (shutting down: kept in the disk queue for the next start)")
        if self._clock.monotonic() + delay > stopping.deadline:
            raise Undelivered(SHUTDOWN, f"{error} (shutting down before the next retry)")
        await self._sleep(delay)
