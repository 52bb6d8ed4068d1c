"""The ``batch`` processor, kept for collector users: merges small requests into larger ones.

    consume(batch) -> Batcher (per signal and metadata_keys values) -> outbox (FIFO) -> one sender -> next

It acknowledges once the batch is buffered, as the collector's does: holding the acknowledgement until the
batch is sent would cap each OTLP client (one request at a time) at one request per ``timeout_ms``. So
everything buffered is the processor's responsibility:
- full (``max_buffered_bytes`` held, or ``metadata_cardinality_limit`` groups open): the sender gets a
  retryable refusal (~1 s hint), counted under ``otelpipe_processor_refused_items_total``;
- the next stage refuses: the group is retried (50 ms doubling up to the hint, at most 1 s) while new data
  buffers, until the buffer is full and refusals reach the sender: backpressure, nothing dropped;
- the next stage rejects the data as bad (``Permanent``): counted dropped (``permanent_error``) and logged;
- shutdown: buffers flush and the sender drains until the deadline; what is left then is counted dropped
  (``shutdown``) and logged at ERROR.

Groups go out in the order they were closed, one at a time, so order per stream is kept.
Batching inside the exporter (``[exporters.x.batch]``, after its queue) is the recommended path: there the
data is already durable (disk queue) or bounded by the queue when it waits.

Merging concatenates the requests' bytes (no decode); a group over ``send_batch_max_size`` items or
``send_batch_max_bytes`` bytes is split (pipeline/delivery/merge.py).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from types import MappingProxyType
from typing import Annotated, Any

import msgspec

from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.delivery.batcher import Batcher, Group, Trigger
from pipeline.delivery.ledger import ledger_for
from pipeline.delivery.merge import merge, split_to_fit
from pipeline.delivery.metrics import delivery_metrics
from pipeline.errors import Permanent, Refused
from pipeline.model import EMPTY_METADATA, Batch, Metadata, Signal
from pipeline.telemetry.ratelimit import RateLimitedLog

SleepFn = Callable[[float], Awaitable[None]]

# Retry of a refusing next stage: first wait, and the cap (the next stage's hint is used when shorter).
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0

PERMANENT_ERROR = "permanent_error"
SHUTDOWN = "shutdown"
UNEXPECTED_ERROR = "unexpected_error"


class BatchProcessorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Send once a group holds this many items (spans, log records, data points).
    send_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 8192
    # Split groups larger than this many items; 0 = no limit (the collector's default).
    send_batch_max_size: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 0
    # Send what a group holds this long after its first request arrived; 0 = send every request at once.
    timeout_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)] = 200
    # Close a group before it passes this many bytes, and split larger requests; 0 = no byte limit.
    send_batch_max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 0
    # One group per distinct value of these client metadata keys (e.g. a tenant header); case-insensitive.
    metadata_keys: list[str] = msgspec.field(default_factory=list)
    # Groups with distinct metadata values open at once; more are refused (retryable) until one is sent.
    metadata_cardinality_limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000
    # Bytes buffered (grouping, waiting and being sent) before new data is refused.
    max_buffered_bytes: Annotated[int, msgspec.Meta(ge=1)] = 67_108_864

    def __post_init__(self) -> None:
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            raise ValueError(
                f"send_batch_max_size: must be 0 or >= send_batch_size ({self.send_batch_size}), "
                f"got {self.send_batch_max_size}"
            )
        seen: set[str] = set()
        for key in self.metadata_keys:
            lower = key.lower()
            if not lower:
                raise ValueError("metadata_keys: empty key")
            if lower in seen:
                raise ValueError(f"metadata_keys: {key!r} is listed twice (keys are case-insensitive)")
            seen.add(lower)


class _State(enum.Enum):
    NEW = "not started"
    RUNNING = "running"
    STOPPING = "shutting down"
    STOPPED = "shut down"


class BatchProcessor:
    """One instance per pipeline (the graph gives each pipeline its own)."""

    def __init__(
        self,
        settings: CreateSettings,
        cfg: BatchProcessorConfig,
        nexts: Mapping[Signal, Consumer],
        *,
        sleep: SleepFn = asyncio.sleep,
    ) -> None:
        self._id = str(settings.id)
        self._pipeline = settings.pipelines[0] if settings.pipelines else ""
        self._cfg = cfg
        self._nexts = nexts
        self._clock = settings.clock
        self._sleep = sleep
        self._logger = settings.logger
        self._log = RateLimitedLog(settings.logger, clock=settings.clock)
        self._keys = tuple(k.lower() for k in cfg.metadata_keys)
        self._batcher: Batcher[Batch] = Batcher(
            cfg.send_batch_size,
            cfg.send_batch_max_bytes,
            cfg.timeout_ms / 1000.0,
            cfg.metadata_cardinality_limit if self._keys else 0,
        )
        # Closed groups waiting for the sender, in order; the head is the one being sent.
        self._outbox: deque[Group[Batch]] = deque()
        self._outbox_bytes = 0
        self._wakeup = asyncio.Event()
        self._state = _State.NEW
        self._task: asyncio.Task[None] | None = None
        self._shutdown_task: asyncio.Future[None] | None = None
        self._deadline: float | None = None  # set when shutdown begins: retries stop before it
        self._stopping = asyncio.Event()
        self._ledger = ledger_for(settings.metrics)
        dm = delivery_metrics(settings.metrics)
        self._metrics = {s: settings.metrics.processor(self._id, self._pipeline, s) for s in Signal}
        self._sends = {
            (s, t): dm.processor_batch_sends.labels(self._id, self._pipeline, s.value, t.value)
            for s in Signal
            for t in Trigger
        }
        self._refused = dm.processor_refused

    # Consumer ---------------------------------------------------------------------------------------------

    @property
    def mutates_data(self) -> bool:
        return False  # merging builds new requests; the ones received are only read

    def consumer(self, signal: Signal) -> Consumer:
        return self

    @property
    def buffered_bytes(self) -> int:
        return self._batcher.nbytes + self._outbox_bytes

    async def consume(self, batch: Batch) -> None:
        if self._state is not _State.RUNNING:
            raise self._refuse(batch, "not_running", f"batch processor {self._id} is {self._state.value}")
        held = self.buffered_bytes
        if held and held + batch.nbytes > self._cfg.max_buffered_bytes:
            raise self._refuse(
                batch,
                "buffer_full",
                f"batch processor {self._id} holds {held} bytes (max_buffered_bytes "
                f"{self._cfg.max_buffered_bytes}); the next stage is not keeping up",
            )
        key = self._key(batch)
        if not self._batcher.has_room_for(key):
            raise self._refuse(
                batch,
                "metadata_cardinality",
                f"batch processor {self._id}: {self._cfg.metadata_cardinality_limit} metadata combinations are "
                "already buffered (metadata_cardinality_limit)",
            )
        ready = self._batcher.add(key, batch, batch.items, batch.nbytes, self._clock.monotonic())
        if ready:
            for group in ready:
                self._post(group)
        self._wakeup.set()

    def _key(self, batch: Batch) -> Hashable:
        if not self._keys:
            return batch.signal
        metadata = batch.metadata
        return (batch.signal, tuple(metadata.get(k, ()) for k in self._keys))

    def _refuse(self, batch: Batch, reason: str, message: str) -> Refused:
        self._refused.labels(self._id, self._pipeline, batch.signal.value, reason).inc(batch.items)
        return Refused(message)

    def _post(self, group: Group[Batch]) -> None:
        self._outbox.append(group)
        self._outbox_bytes += group.nbytes

    # Lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._state is not _State.NEW:
            return
        self._state = _State.RUNNING
        self._ledger.hold(self, f"processor/{self._id}@{self._pipeline}", lambda: self.buffered_bytes)
        self._task = asyncio.create_task(self._run(), name=f"processor/{self._id}/{self._pipeline}")

    async def shutdown(self, deadline: float) -> None:
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(self._shutdown(deadline))
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self, deadline: float) -> None:
        self._state = _State.STOPPING
        self._deadline = deadline
        self._stopping.set()
        for group in self._batcher.flush():
            self._post(group)
        self._wakeup.set()
        task = self._task
        if task is not None:
            await asyncio.wait({task}, timeout=max(0.0, deadline - self._clock.monotonic()))
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                self._logger.error("batch processor %s: sender failed", self._id, exc_info=task.exception())
        left = 0
        while self._outbox:
            group = self._outbox.popleft()
            for batch in group.entries:
                self._metrics[batch.signal].dropped(batch.items, SHUTDOWN)
                left += batch.items
        self._outbox_bytes = 0
        if left:
            self._logger.error(
                "batch processor %s: shutdown deadline reached, %d items dropped",
                self._id,
                left,
                extra={"fields": {"processor": self._id, "pipeline": self._pipeline, "dropped_items": left}},
            )
        self._ledger.release(self)
        self._state = _State.STOPPED

    # Sender -----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            for group in self._batcher.due(self._clock.monotonic()):
                self._post(group)
            if self._outbox:
                group = self._outbox[0]
                if not await self._send(group):
                    return  # the shutdown deadline came first: what is left is counted by _shutdown
                self._outbox.popleft()
                self._outbox_bytes -= group.nbytes
                continue
            if self._state is not _State.RUNNING:
                return  # drained
            self._wakeup.clear()
            await self._wait(self._batcher.next_deadline())

    async def _wait(self, deadline: float | None) -> None:
        woken = asyncio.ensure_future(self._wakeup.wait())
        waiting: set[asyncio.Future[Any]] = {woken}
        if deadline is not None:
            waiting.add(asyncio.ensure_future(self._sleep(max(0.0, deadline - self._clock.monotonic()))))
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in waiting:
                fut.cancel()

    async def _send(self, group: Group[Batch]) -> bool:
        """Send the group's pieces in order; False when the shutdown deadline stops it."""
        signal = group.entries[0].signal
        self._sends[signal, group.trigger].inc()
        metadata = self._output_metadata(group.entries[0].metadata)
        merged = merge(group.entries, metadata)
        pieces = split_to_fit(merged, self._cfg.send_batch_max_size, self._cfg.send_batch_max_bytes)
        # Pieces already sent are removed from the group's entries, so a shutdown counts only what is left.
        for i, piece in enumerate(pieces):
            if not await self._send_piece(piece):
                if i:
                    group.entries[:] = pieces[i:]
                return False
        return True

    def _output_metadata(self, metadata: Metadata) -> Metadata:
        """Only the metadata_keys values travel on (as in the collector): the next stages partition on them."""
        if not self._keys:
            return EMPTY_METADATA
        kept = {k: metadata[k] for k in self._keys if k in metadata}
        return MappingProxyType(kept) if kept else EMPTY_METADATA

    async def _send_piece(self, piece: Batch) -> bool:
        attempt = 0
        nxt = self._nexts[piece.signal]
        while True:
            try:
                await nxt.consume(piece)
                return True
            except Refused as exc:
                delay = min(RETRY_FIRST_S * 2**attempt, max(exc.retry_after_s, RETRY_FIRST_S), RETRY_MAX_S)
                attempt += 1
                if self._deadline is not None and self._clock.monotonic() + delay > self._deadline:
                    return False
                self._log.log(
                    logging.WARNING,
                    "refused",
                    "next stage refused a batch, retrying",
                    processor=self._id,
                    pipeline=self._pipeline,
                    items=piece.items,
                    reason=exc.reason,
                )
                await self._retry_wait(delay)
            except Permanent as exc:
                n = piece.items if exc.rejected is None else min(max(exc.rejected, 0), piece.items)
                self._drop(piece.signal, n, PERMANENT_ERROR, exc.reason)
                return True
            except Exception as exc:  # a bug downstream must not stop the sender; CancelledError passes
                self._drop(piece.signal, piece.items, UNEXPECTED_ERROR, f"{type(exc).__name__}: {exc}")
                return True

    async def _retry_wait(self, delay: float) -> None:
        """Wait before retrying; shutdown cuts a wait short once (the drain then tries at once)."""
        if self._stopping.is_set():
            await self._sleep(delay)
            return
        stopped = asyncio.ensure_future(self._stopping.wait())
        slept = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait({stopped, slept}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            slept.cancel()

    def _drop(self, signal: Signal, n: int, reason: str, detail: str) -> None:
        if n:
            self._metrics[signal].dropped(n, reason)
        self._log.log(
            logging.ERROR,
            reason,
            "next stage rejected a batch, data dropped",
            processor=self._id,
            pipeline=self._pipeline,
            items=n,
            reason=reason,
            error=detail[:1024],
        )


def _create(settings: CreateSettings, cfg: BatchProcessorConfig, nexts: Mapping[Signal, Consumer]) -> BatchProcessor:
    return BatchProcessor(settings, cfg, nexts)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="batch",
    config_type=BatchProcessorConfig,
    create=_create,
    signals=frozenset(Signal),
)
