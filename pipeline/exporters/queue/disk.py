"""The persistent sending queue: append-only segment files with per-record checksums.

    <path>/LOCK                  flock: one process per queue directory
    <path>/0000000000000007.seg  records (see records.py), appended; a new segment when this one is full
    <path>/0000000000000007.ack  offsets of the records that are done (sent, or dropped and counted)

Acknowledgement: ``offer`` returns once the record is written to the file (the kernel holds it: it survives
``kill -9``); with ``fsync = "always"`` the helper also awaits ``sync()``, a group commit shared by every
request waiting at that moment, so the record also survives power loss. ``fsync = "interval"`` syncs every
``fsync_interval_ms`` in the background; ``"never"`` leaves it to the kernel.

Delivery is at least once: a record is acknowledged in its segment's ack file only after its outcome is
recorded, and a segment is deleted once all its records are. After a crash, every record without an ack is
sent again on the next start (counted in ``otelpipe_exporter_queue_recovered_*``), including the few that
were sent just before the crash: duplicates, never loss.

Refusal instead of loss: when the queue holds ``queue_size`` records, when its files would pass
``max_bytes``, or when a write fails (disk full, I/O error: the partial record is cut off again), ``offer``
raises ``Refused`` and the sender retries later. A corrupt record (checksum, framing) is skipped, counted and
logged; the queue goes on with the next one.

Reload: the store of a directory is shared by the exporter instances of one id in this process. A new
instance opens it while the old one is still draining; the old one then stops taking records (its records in
flight finish or go back to the store), and the new one sends the rest: nothing is sent twice, nothing left.

The files, recovery and fsync live in store.py; this module is one exporter instance's view of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from pipeline.delivery.metrics import DeliveryMetrics
from pipeline.errors import Refused, StartError
from pipeline.exporters.queue.base import QueueItem, wait_turn, wake_all, wake_one
from pipeline.exporters.queue.store import (
    FSYNC_POLICIES,
    STORES,
    Events,
    FileOps,
    Recovered,
    Ref,
    Store,
    segment_bytes_for,
)
from pipeline.model import Batch, Signal
from pipeline.telemetry.ratelimit import RateLimitedLog


class DiskQueue:
    """One exporter instance's view of a queue directory (the SendingQueue the helper drives)."""

    persistent = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        capacity: int,
        max_bytes: int,
        fsync: str,
        fsync_interval_s: float,
        exporter: str,
        metrics: DeliveryMetrics,
        logger: logging.Logger,
        log: RateLimitedLog,
        ops: FileOps | None = None,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync: expected one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        self._path = Path(path)
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._fsync_interval_s = fsync_interval_s
        self._exporter = exporter
        self._metrics = metrics
        self._logger = logger
        self._events = Events(exporter, metrics, log)
        self._ops = ops or FileOps()
        self._store: Store | None = None
        # Items handed out, with the size they were counted with.
        self._inflight: dict[int, tuple[QueueItem, int]] = {}
        self._held_bytes = 0
        self._closed = False
        self._stopped = False  # closed and gave an item back: take nothing more

    # Introspection ----------------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def held_bytes(self) -> int:
        return self._held_bytes

    @property
    def disk_bytes(self) -> int:
        return self._store.disk_bytes if self._store is not None else 0

    @property
    def path(self) -> Path:
        return self._path

    def __len__(self) -> int:
        return len(self._store.pending) if self._store is not None else 0

    # Lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._store is not None:
            return
        key = self._path.resolve()
        store = STORES.get(key)
        if store is not None and store.owner != self._exporter:
            raise StartError(f"disk queue {self._path} is already used by exporter {store.owner}")
        if store is None:
            store = Store(key, self._exporter, self._ops)
            store.events = self._events
            await asyncio.to_thread(store.lock)
            STORES[key] = store
            try:
                found = await asyncio.to_thread(store.recover)
            except BaseException:
                STORES.pop(key, None)
                await store.close()
                raise
            store.adopt(found)
            self._report_recovery(found)
        store.views.append(self)
        # The newest instance's settings apply (a reload may have changed them).
        store.capacity, store.max_bytes = self._capacity, self._max_bytes
        store.segment_bytes = segment_bytes_for(self._max_bytes)
        store.fsync, store.fsync_interval_s = self._fsync, self._fsync_interval_s
        store.events = self._events
        if store.syncer is not None and self._fsync != "interval":
            store.syncer.cancel()
            store.syncer = None
        if store.syncer is None and self._fsync == "interval":
            store.syncer = asyncio.create_task(store.sync_every_interval(), name=f"disk-queue-fsync:{key}")
        self._store = store

    def _report_recovery(self, found: Recovered) -> None:
        items: dict[Signal, int] = {}
        for ref in found.pending:
            items[ref.header.signal] = items.get(ref.header.signal, 0) + ref.header.items
        for signal, n in items.items():
            self._events.recovered(signal, n)
        if found.corrupt_records:
            self._events.corrupt_found(found.corrupt_records, found.corrupt_bytes)
        fields = {
            "exporter": self._exporter,
            "path": str(self._path),
            "records": len(found.pending),
            "items": sum(items.values()),
            "corrupt_records": found.corrupt_records,
            "corrupt_bytes": found.corrupt_bytes,
            "torn_bytes": found.torn_bytes,
        }
        if found.corrupt_records:
            self._logger.error(
                "disk queue %s: %d corrupt stretches (%d bytes) skipped while recovering",
                self._path,
                found.corrupt_records,
                found.corrupt_bytes,
                extra={"fields": fields},
            )
        if found.pending or found.torn_bytes:
            self._logger.info(
                "disk queue %s: %d records (%d items) left by a previous run will be sent",
                self._path,
                len(found.pending),
                sum(items.values()),
                extra={"fields": fields},
            )

    async def stop(self) -> None:
        store, self._store = self._store, None
        if store is None:
            return
        for item, _ in list(self._inflight.values()):
            self.keep(item, store)
        if self in store.views:
            store.views.remove(self)
        wake_all(store.getters)
        if store.views:
            return  # a newer instance goes on with the store
        STORES.pop(store.path, None)
        left = len(store.pending)
        await store.close()
        if left:
            self._logger.info(
                "disk queue %s: %d records kept for the next start",
                self._path,
                left,
                extra={"fields": {"exporter": self._exporter, "path": str(self._path), "records": left}},
            )

    # SendingQueue -----------------------------------------------------------------------------------------

    def offer(self, batch: Batch) -> None:
        store = self._store
        if store is None or self._closed:
            raise Refused("the disk queue is closed (shutting down)")
        store.append(batch)

    async def put(self, batch: Batch, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while True:
            try:
                self.offer(batch)
                return
            except Refused:
                remaining = end - loop.time()
                if self._closed or self._store is None or remaining <= 0:
                    raise
                await wait_turn(self._store.putters, remaining)

    async def sync(self) -> None:
        store = self._store
        if store is not None and store.fsync == "always":
            await store.sync()

    async def get(self) -> QueueItem | None:
        while True:
            store = self._store
            if store is None or self._stopped:
                return None
            if self._closed and (len(store.views) > 1 or not store.pending):
                # Another instance goes on with the store (reload), or nothing is left: stop here.
                return None
            if not store.pending:
                await wait_turn(store.getters)
                continue
            ref = store.pending.popleft()
            batch = store.read(ref)
            if batch is None:
                continue  # corrupt: counted and skipped
            item = QueueItem(batch, ref)
            self._inflight[id(item)] = (item, batch.nbytes)
            self._held_bytes += batch.nbytes
            return item

    def done(self, item: QueueItem) -> None:
        held = self._inflight.pop(id(item), None)
        if held is None:
            return
        self._held_bytes -= held[1]
        store = self._store
        if store is not None:
            assert isinstance(item.ref, Ref)
            store.ack(item.ref)

    def keep(self, item: QueueItem, store: Store | None = None) -> None:
        """Give an undecided record back: it goes first in line for whichever instance takes next, and stays
        on disk for the next start if none does."""
        held = self._inflight.pop(id(item), None)
        if held is None:
            return
        self._held_bytes -= held[1]
        store = store or self._store
        if store is not None:
            assert isinstance(item.ref, Ref)
            store.pending.appendleft(item.ref)
            wake_one(store.getters)
        if self._closed:
            self._stopped = True

    def close(self) -> None:
        self._closed = True
        if self._store is not None:
            wake_all(self._store.getters)
            wake_all(self._store.putters)

    def drain(self) -> list[Batch]:
        return []  # what is left stays on disk: not a drop
