"""The async shell around the pure core (engine.TailSampler): consume, a decision timer, delivery downstream.

    consume(batch) ── admit? ──no──> Refused (retryable; the sender retries in ~1 s)
         │ yes
         ▼
    engine.ingest_*  (buffered = acknowledged; budgets may decide the oldest traces now)
         │ kept spans/logs of late traces, of evicted traces, passing log records
         ▼
    deliver ──> next consumer of the signal ── Refused ──> backlog (bounded, retried every tick)
                                             └─ Permanent ──> counted dropped ("rejected_downstream")

    timer task (every TICK_INTERVAL_S): engine.tick in slices of SLICE_TRACES traces, yielding to the event
    loop whenever a tick has run longer than TICK_BUDGET_S; then retry the backlog; then publish metrics.

Downstream refusals: decided spans are never lost silently. A refused batch waits in the backlog (its bytes count
against max_bytes) and is retried on later ticks, after the downstream's retry hint. While the backlog holds more
than half of max_bytes, consume refuses new data, so the sender slows down instead of the processor dropping.
On shutdown, pending traces are decided (or dropped and counted with ``drop_pending_traces_on_shutdown``), the
result is delivered, and the backlog is retried until the deadline; what is still refused then is counted
dropped with reason "shutdown".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping

from pipeline.component import CreateSettings
from pipeline.consumer import Consumer
from pipeline.errors import Permanent, Refused
from pipeline.model import Batch, Signal
from pipeline.telemetry.health import CheckResult, Status
from pipeline.telemetry.ratelimit import RateLimitedLog
from processors.tail_sampling.config import TailSamplingConfig
from processors.tail_sampling.engine import Outcome, TailSampler
from processors.tail_sampling.metrics import Publisher

TICK_INTERVAL_S = 0.1
TICK_BUDGET_S = 0.05  # a tick running longer than this yields to the event loop between slices
SLICE_TRACES = 500  # traces decided per engine call (~2-5 ms)
RETRY_FLOOR_S = 0.1
SHUTDOWN_RETRY_S = 0.2
REJECTED_DOWNSTREAM = "rejected_downstream"
NO_DOWNSTREAM = "no_downstream"
SHUTDOWN = "shutdown"


class TailSamplingProcessor:
    mutates_data = False  # reads the incoming batch, never changes it; what it sends is built anew

    def __init__(self, settings: CreateSettings, cfg: TailSamplingConfig, nexts: Mapping[Signal, Consumer]) -> None:
        self._id = str(settings.id)
        self._cfg = cfg
        self._clock = settings.clock
        self._logger = settings.logger
        self._log = RateLimitedLog(settings.logger, clock=settings.clock)
        self._health = settings.health
        # Filled by the graph possibly after create (a shareable processor): read no earlier than start().
        self._nexts = nexts
        # Shared by a traces and a logs pipeline: each signal's metrics carry its own pipeline's name.
        signal_names = {s.value: s for s in Signal}
        pipelines = {
            signal_names[name.partition("/")[0]]: name
            for name in settings.pipelines
            if name.partition("/")[0] in signal_names
        }
        if not pipelines and len(settings.pipelines) == 1:  # a hand-built setting (tests) names no signal
            pipelines = dict.fromkeys(settings.signals, settings.pipelines[0])
        self._metrics = Publisher(settings.metrics, self._id, pipelines, settings.signals)
        self._engine = TailSampler(cfg, latency=self._metrics.latency)
        self._backlog: deque[Batch] = deque()
        self._backlog_bytes = 0
        self._retry_at = 0.0
        self._refusing: str | None = None  # why the last request was refused, until one is taken again
        self._running = False
        self._stopped = False
        self._timer: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def engine(self) -> TailSampler:
        return self._engine

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    def consumer(self, signal: Signal) -> Consumer:
        return self

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._running or self._stopped:
            return
        self._running = True
        self._health.register(f"processor/{self._id}", self._check)
        self._timer = asyncio.create_task(self._run(), name=f"processor/{self._id}/tick")

    async def shutdown(self, deadline: float) -> None:
        if self._stopped:
            return
        self._stopped = True
        was_running, self._running = self._running, False
        if self._timer is not None:
            # Stopped, not cancelled: a tick cancelled half-way would lose the decided data it was delivering.
            self._stop.set()
            await asyncio.wait({self._timer}, timeout=max(0.0, deadline - time.monotonic()))
            if not self._timer.done():  # a downstream stuck past the deadline: give up on that tick
                self._timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._timer
            self._timer = None
        if was_running or self._engine.held_traces:
            out = Outcome(self._engine.annotate)
            self._engine.drain(self._clock.monotonic(), out, decide=not self._cfg.drop_pending_traces_on_shutdown)
            await self._emit(out, deadline)
            await self._flush_backlog(deadline)
        self._metrics.publish(self._engine, self._backlog_bytes)
        self._health.unregister(f"processor/{self._id}")

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(TICK_INTERVAL_S):
                    await self._stop.wait()
                return  # shutdown asked
            except TimeoutError:
                pass
            try:
                await self.tick()
            except Exception as exc:  # a bug must not stop every later decision: log it (rate-limited), go on
                self._log.log(logging.ERROR, "tick", "tail sampling tick failed", processor=self._id, error=repr(exc))

    # ------------------------------------------------------------------------------------------ data path

    async def consume(self, batch: Batch) -> None:
        signal = batch.signal
        if not self._running:
            self._metrics.refused(signal, batch.items, "not_running")
            raise Refused(f"processor {self._id} is {'shut down' if self._stopped else 'not started'}")
        if signal is not Signal.TRACES and signal is not Signal.LOGS:
            raise Permanent(f"processor {self._id} takes traces and logs, not {signal.value}")
        raw = batch.raw if batch.raw is not None else batch.serialize()
        refusal = self._engine.admit(len(raw), self._backlog_bytes)
        self._refusing = refusal
        if refusal is not None:
            self._metrics.refused(signal, batch.items, "backlog" if self._backlog else "budget")
            raise Refused(refusal)
        engine = self._engine
        out = Outcome(engine.annotate)
        now = self._clock.monotonic()
        if signal is Signal.TRACES:
            engine.ingest_spans(raw, batch.message, now, out, self._backlog_bytes)
        elif engine.ingest_logs(raw, batch.message, now, out, self._backlog_bytes):
            await self._deliver(batch)
        await self._emit(out)

    async def tick(self) -> None:
        """Decide what is due now, deliver it, retry the backlog, publish metrics."""
        started = time.perf_counter()
        slice_start = started
        now = self._clock.monotonic()
        engine = self._engine
        more = True
        while more:
            out = Outcome(engine.annotate)
            more = engine.tick(now, out, SLICE_TRACES)
            await self._emit(out)
            if more and time.perf_counter() - slice_start > TICK_BUDGET_S:
                await asyncio.sleep(0)  # let receivers and exporters run between slices
                slice_start = time.perf_counter()
        if self._backlog and now >= self._retry_at:
            await self._retry_backlog()
        if self._refusing is not None and self._engine.admit(0, self._backlog_bytes) is None:
            self._refusing = None  # room again: ready for the next request
        self._metrics.publish(engine, self._backlog_bytes)
        self._metrics.tick_duration.observe(time.perf_counter() - started)

    async def _emit(self, out: Outcome, deadline: float | None = None) -> None:
        """Send what a call decided. With a deadline (shutdown), what is not sent by then is counted dropped."""
        if not out:
            return
        batches = out.batches(self._cfg.annotations)
        for i, batch in enumerate(batches):
            if deadline is not None and time.monotonic() >= deadline:
                self._count_lost(batches[i:])
                return
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                # Only a shutdown past its deadline cancels a delivery: count what will not be sent (the batch
                # in flight included: whether the downstream took it is unknown) and let the cancellation go on.
                self._count_lost(batches[i:])
                raise

    def _count_lost(self, batches: list[Batch]) -> None:
        for batch in batches:
            self._metrics.dropped(batch.signal, batch.items, SHUTDOWN)

    async def _deliver(self, batch: Batch) -> None:
        retry_after = await self._try(batch)
        if retry_after is not None:
            self._backlog.append(batch)
            self._backlog_bytes += batch.nbytes
            self._note_refusal(retry_after)

    async def _try(self, batch: Batch) -> float | None:
        """Send one batch; the retry hint when the downstream refused it (None: it is gone, sent or counted)."""
        next_ = self._nexts.get(batch.signal)
        if next_ is None:  # no pipeline of this signal lists the processor: nothing can come out of it
            self._metrics.dropped(batch.signal, batch.items, NO_DOWNSTREAM)
            return None
        try:
            await next_.consume(batch)
        except Refused as exc:
            return exc.retry_after_s
        except Permanent as exc:
            rejected = batch.items if exc.rejected is None else exc.rejected
            self._metrics.dropped(batch.signal, rejected, REJECTED_DOWNSTREAM)
            self._log.log(
                logging.ERROR,
                REJECTED_DOWNSTREAM,
                "downstream rejected sampled data as invalid; dropped",
                processor=self._id,
                items=rejected,
                reason=exc.reason,
            )
        return None

    def _note_refusal(self, retry_after_s: float) -> None:
        self._retry_at = max(self._retry_at, self._clock.monotonic() + max(RETRY_FLOOR_S, retry_after_s))

    async def _retry_backlog(self) -> bool:
        """Try the backlog oldest first; stop at the first refusal. True when it is empty."""
        while self._backlog:
            batch = self._backlog.popleft()
            retry_after = await self._try(batch)
            if retry_after is not None:
                self._backlog.appendleft(batch)
                self._note_refusal(retry_after)
                return False
            self._backlog_bytes -= batch.nbytes
        return True

    async def _flush_backlog(self, deadline: float) -> None:
        # The deadline is a time.monotonic() value (the lifecycle contract), so it is compared with that clock,
        # not with the injected one that times decisions. Retries here follow a short fixed pace: a hint longer
        # than what is left of the deadline would only mean giving up earlier.
        while self._backlog and time.monotonic() < deadline:
            if await self._retry_backlog():
                break
            await asyncio.sleep(max(0.0, min(SHUTDOWN_RETRY_S, deadline - time.monotonic())))
        if self._backlog:
            lost = {Signal.TRACES: 0, Signal.LOGS: 0}
            for batch in self._backlog:
                lost[batch.signal] = lost.get(batch.signal, 0) + batch.items
                self._metrics.dropped(batch.signal, batch.items, SHUTDOWN)
            self._backlog.clear()
            self._backlog_bytes = 0
            fields = {"processor": self._id, "spans": lost[Signal.TRACES], "log_records": lost[Signal.LOGS]}
            self._logger.error(
                "processor %s: downstream still refusing at the shutdown deadline, sampled data dropped",
                self._id,
                extra={"fields": fields},
            )

    def _check(self) -> CheckResult:
        if self._refusing is not None:
            return CheckResult(Status.DEGRADED, self._refusing)
        if self._backlog:
            return CheckResult(Status.DEGRADED, f"downstream refusing: {self._backlog_bytes} bytes waiting")
        return CheckResult(Status.HEALTHY)
