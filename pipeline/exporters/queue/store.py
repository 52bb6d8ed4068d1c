"""The files of a disk queue: segments, acknowledgements, recovery, fsync; shared by the exporter instances of
one id in this process (see disk.py for the queue's contract).

``Store`` does the I/O: appends and reads of one record run on the event loop (page-cache copies), fsync and
the start-up scan in a thread. ``FileOps`` is the seam tests use to inject a full disk or an I/O error.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import mmap
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.delivery.merge import LazyBatch
from pipeline.delivery.metrics import DeliveryMetrics
from pipeline.errors import Refused, StartError
from pipeline.exporters.queue import records
from pipeline.exporters.queue.base import wake_all, wake_one
from pipeline.model import Batch, Signal
from pipeline.telemetry.ratelimit import RateLimitedLog

FSYNC_POLICIES = ("always", "interval", "never")
LOCK_NAME = "LOCK"
SEG_SUFFIX = ".seg"
ACK_SUFFIX = ".ack"
MIN_SEGMENT_BYTES = 4096
MAX_SEGMENT_BYTES = 64 * 1024 * 1024


def segment_bytes_for(max_bytes: int) -> int:
    """Segment size: an eighth of the budget (so acknowledged records free space in steps), within 4 KiB and
    64 MiB. A single record larger than this gets a segment of its own."""
    return max(MIN_SEGMENT_BYTES, min(MAX_SEGMENT_BYTES, max_bytes // 8))


class FileOps:
    """The system calls the store makes that can fail for reasons outside the program (full disk, bad disk)."""

    def writev(self, fd: int, parts: list[bytes]) -> int:
        return os.writev(fd, parts)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)


@dataclass(slots=True, eq=False)
class Segment:
    seq: int
    path: Path
    size: int = 0
    ack_size: int = 0
    live: int = 0  # records neither done nor corrupt
    write_fd: int | None = None
    read_fd: int | None = None
    ack_fd: int | None = None

    @property
    def ack_path(self) -> Path:
        return self.path.with_suffix(ACK_SUFFIX)


@dataclass(slots=True, eq=False)
class Ref:
    segment: Segment
    offset: int
    header: records.Header


@dataclass(slots=True, eq=False)
class Recovered:
    segments: list[Segment] = field(default_factory=list)
    pending: list[Ref] = field(default_factory=list)
    corrupt_records: int = 0
    corrupt_bytes: int = 0
    torn_bytes: int = 0
    deleted: int = 0


class Store:
    """One queue directory: files, the records not yet taken, and the views (exporter instances) using it."""

    def __init__(self, path: Path, owner: str, ops: FileOps) -> None:
        self.path = path
        self.owner = owner
        self.ops = ops
        self.views: list[object] = []  # the DiskQueue instances using this directory
        self.segments: dict[int, Segment] = {}
        self.pending: deque[Ref] = deque()
        self.getters: deque[asyncio.Future[None]] = deque()
        self.putters: deque[asyncio.Future[None]] = deque()
        self.disk_bytes = 0
        self.live = 0  # records on disk not yet done
        self.writer: Segment | None = None
        self.next_seq = 1
        self.lock_fd: int | None = None
        # Configuration, set by the newest view.
        self.capacity = 1
        self.max_bytes = 1
        self.segment_bytes = MIN_SEGMENT_BYTES
        self.fsync = "never"
        self.fsync_interval_s = 1.0
        # Durability bookkeeping: appends counted, appends covered by a completed fsync.
        self.written = 0
        self.synced = 0
        self.to_sync: list[int] = []  # write fds of rolled segments, synced then closed by the next round
        self.dir_dirty = False
        self.sync_round: asyncio.Future[None] | None = None
        self.sync_error: OSError | None = None
        self.syncer: asyncio.Task[None] | None = None
        self.closing = False
        self.events: Events | None = None

    # Opening ----------------------------------------------------------------------------------------------

    def lock(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StartError(f"disk queue {self.path}: cannot open the directory: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StartError(
                f"disk queue {self.path} is locked by another process (two daemons cannot share a queue path)"
            ) from exc
        self.lock_fd = fd

    def recover(self) -> Recovered:
        """Scan every segment (in a worker thread): unacknowledged records become pending, in order."""
        found = Recovered()
        seqs = sorted(int(p.stem) for p in self.path.glob("*" + SEG_SUFFIX) if p.stem.isdigit())
        for seq in seqs:
            seg = Segment(seq, self.path / f"{seq:016d}{SEG_SUFFIX}")
            try:
                acked = records.decode_acks(seg.ack_path.read_bytes()) if seg.ack_path.exists() else set()
                seg.size = seg.path.stat().st_size
                seg.ack_size = seg.ack_path.stat().st_size if seg.ack_path.exists() else 0
                refs = self._scan(seg, acked, found)
            except OSError as exc:
                # An unreadable segment is skipped whole (counted), never a crash; its file stays for a human.
                found.corrupt_records += 1
                found.corrupt_bytes += seg.size
                if self.events is not None:
                    self.events.log.log(
                        logging.ERROR,
                        "unreadable_segment",
                        "disk queue: cannot read a segment, skipping it",
                        path=str(seg.path),
                        error=str(exc),
                    )
                continue
            seg.live = len(refs)
            found.pending.extend(refs)
            if seg.live:
                found.segments.append(seg)
            else:
                self._delete_files(seg)
                found.deleted += 1
        self.next_seq = (seqs[-1] + 1) if seqs else 1
        return found

    def _scan(self, seg: Segment, acked: set[int], found: Recovered) -> list[Ref]:
        refs: list[Ref] = []
        if seg.size == 0:
            return refs
        with open(seg.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for entry in records.scan(data):
                if isinstance(entry, records.Found):
                    if entry.offset not in acked:
                        refs.append(Ref(seg, entry.offset, entry.header))
                elif entry.torn:
                    found.torn_bytes += entry.length
                else:
                    found.corrupt_records += 1
                    found.corrupt_bytes += entry.length
        return refs

    def adopt(self, found: Recovered) -> None:
        for seg in found.segments:
            self.segments[seg.seq] = seg
            self.disk_bytes += seg.size + seg.ack_size
        self.pending.extend(found.pending)
        self.live += len(found.pending)

    # Writing ----------------------------------------------------------------------------------------------

    def refusal(self, record_len: int) -> str | None:
        """Why a record cannot go in now, or None (a reason: see MemoryQueue._refusal)."""
        if len(self.pending) >= self.capacity:
            return f"the disk queue is full ({self.capacity} records, queue_size)"
        # A record larger than max_bytes still goes in when nothing is queued, or it could never be sent.
        if self.disk_bytes + record_len > self.max_bytes and self.live:
            return f"the disk queue holds {self.disk_bytes} bytes on disk (max_bytes {self.max_bytes})"
        return None

    def append(self, batch: Batch) -> None:
        header, parts = records.encode(batch.signal, batch.items, batch.metadata, batch.serialize())
        total = header.record_len
        reason = self.refusal(total)
        if reason is not None:
            raise Refused(reason)
        seg = self._writable()
        before = seg.size
        assert seg.write_fd is not None
        try:
            written = self.ops.writev(seg.write_fd, parts)
            if written != total:
                raise OSError(errno.ENOSPC, f"short write ({written} of {total} bytes)")
        except OSError as exc:
            self._cut(seg, before)
            raise self._write_refusal(exc) from exc
        seg.size += total
        seg.live += 1
        self.live += 1
        self.disk_bytes += total
        self.pending.append(Ref(seg, before, header))
        self.written += 1
        wake_one(self.getters)

    def _writable(self) -> Segment:
        seg = self.writer
        if seg is not None and seg.size < self.segment_bytes:
            return seg
        if seg is not None:
            self._seal(seg)
        seq = self.next_seq
        path = self.path / f"{seq:016d}{SEG_SUFFIX}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as exc:
            raise self._write_refusal(exc) from exc
        self.next_seq += 1
        seg = Segment(seq, path, write_fd=fd)
        self.segments[seq] = seg
        self.writer = seg
        self.dir_dirty = True
        return seg

    def _seal(self, seg: Segment) -> None:
        """The segment takes no more records: its write fd is synced (or closed) and it goes once done."""
        self.writer = None
        fd, seg.write_fd = seg.write_fd, None
        if fd is not None:
            if self.fsync == "never":
                os.close(fd)
            else:
                self.to_sync.append(fd)
        if seg.live == 0:
            self._delete(seg)

    def _cut(self, seg: Segment, size: int) -> None:
        """Remove a partly written record; if even that fails, seal the segment so nothing follows the tear
        (recovery would then report those bytes as a torn record, never as data)."""
        assert seg.write_fd is not None
        try:
            os.ftruncate(seg.write_fd, size)
        except OSError:
            self._seal(seg)

    def _write_refusal(self, exc: OSError) -> Refused:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        reason = "disk_full" if full else "io_error"
        if self.events is not None:
            self.events.write_failed(reason, exc)
        what = "the disk is full" if full else f"write failed ({exc.strerror or exc})"
        return Refused(f"disk queue {self.path}: {what}; refusing data until it can be written")

    # Durability -------------------------------------------------------------------------------------------

    async def sync(self) -> None:
        target = self.written
        while self.synced < target:
            if self.sync_round is None:
                self.sync_round = asyncio.ensure_future(self._sync_round())
            # Shielded: a waiter that is cancelled must not cancel the round others wait for.
            await asyncio.shield(self.sync_round)
            if self.sync_error is not None and self.synced < target:
                exc = self.sync_error
                raise Refused(f"disk queue {self.path}: fsync failed ({exc.strerror or exc})") from exc

    async def _sync_round(self) -> None:
        upto = self.written
        fds = [self.writer.write_fd] if self.writer is not None and self.writer.write_fd is not None else []
        rolled, self.to_sync = self.to_sync, []
        sync_dir, self.dir_dirty = self.dir_dirty, False
        try:
            await asyncio.to_thread(self._fsync_all, fds, rolled, sync_dir)
        except OSError as exc:
            self.sync_error = exc
            if self.events is not None:
                self.events.write_failed("fsync", exc)
        else:
            self.sync_error = None
            self.synced = max(self.synced, upto)
        finally:
            self.sync_round = None

    def _fsync_all(self, fds: list[int], rolled: list[int], sync_dir: bool) -> None:
        try:
            for fd in rolled + fds:
                self.ops.fsync(fd)
            if sync_dir:
                dir_fd = os.open(self.path, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        finally:
            for fd in rolled:
                os.close(fd)

    async def sync_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.fsync_interval_s)
            if self.written > self.synced or self.to_sync:
                with contextlib.suppress(Refused):
                    await self.sync()

    # Reading and acknowledging ----------------------------------------------------------------------------

    def read(self, ref: Ref) -> Batch | None:
        """The record as a batch (its message decoded only if someone reads it); None when it is corrupt (then
        counted, logged, and marked done)."""
        seg, header = ref.segment, ref.header
        try:
            if seg.read_fd is None:
                seg.read_fd = os.open(seg.path, os.O_RDONLY)
            start = ref.offset + records.HEADER_SIZE
            meta = self.ops.pread(seg.read_fd, header.meta_len, start) if header.meta_len else b""
            body = self.ops.pread(seg.read_fd, header.body_len, start + header.meta_len)
            metadata = records.decode_payload(header, meta, body)
        except (OSError, records.CorruptRecord) as exc:
            if self.events is not None:
                self.events.corrupt(header.record_len, str(exc), seg.path, ref.offset)
            self.ack(ref)
            return None
        return LazyBatch(header.signal, body, header.items, metadata)

    def ack(self, ref: Ref) -> None:
        seg = ref.segment
        if seg.seq not in self.segments:
            return  # already deleted (acknowledged twice by a confused caller: harmless)
        try:
            if seg.ack_fd is None:
                seg.ack_fd = os.open(seg.ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            entry = records.encode_ack(ref.offset)
            os.write(seg.ack_fd, entry)
            seg.ack_size += len(entry)
            self.disk_bytes += len(entry)
        except OSError as exc:
            # The record will be sent again after a restart: a duplicate, never a loss.
            if self.events is not None:
                self.events.write_failed("ack", exc)
        seg.live -= 1
        self.live -= 1
        if seg.live == 0:
            if seg is not self.writer:
                self._delete(seg)
            elif seg.size >= self.segment_bytes // 4:
                self._seal(seg)  # everything in it is done: start afresh and give the space back now
        wake_all(self.putters)

    def _delete(self, seg: Segment) -> None:
        self.segments.pop(seg.seq, None)
        self.disk_bytes -= seg.size + seg.ack_size
        for name in ("read_fd", "ack_fd"):
            fd = getattr(seg, name)
            if fd is not None:
                os.close(fd)
                setattr(seg, name, None)
        self._delete_files(seg)

    @staticmethod
    def _delete_files(seg: Segment) -> None:
        for p in (seg.path, seg.ack_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    # Closing ----------------------------------------------------------------------------------------------

    async def close(self) -> None:
        self.closing = True
        if self.syncer is not None:
            self.syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.syncer
            self.syncer = None
        if self.sync_round is not None:
            # A round may be fsyncing fds in its thread: let it finish before any fd is closed.
            await asyncio.shield(self.sync_round)
        if self.fsync != "never" and (self.written > self.synced or self.to_sync):
            with contextlib.suppress(Refused):
                await self.sync()
        for seg in list(self.segments.values()):
            if seg.live == 0:
                if seg.write_fd is not None:
                    os.close(seg.write_fd)
                    seg.write_fd = None
                self._delete(seg)
                continue
            for name in ("write_fd", "read_fd", "ack_fd"):
                fd = getattr(seg, name)
                if fd is not None:
                    os.close(fd)
                    setattr(seg, name, None)
        for fd in self.to_sync:
            os.close(fd)
        self.to_sync = []
        self.writer = None
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # releases the flock
            self.lock_fd = None


# Stores open in this process, by resolved path: a reload's new exporter instance shares its predecessor's.
STORES: dict[Path, Store] = {}


class Events:
    """Counting and logging for one exporter's disk queue (bound once)."""

    def __init__(self, exporter: str, metrics: DeliveryMetrics, log: RateLimitedLog) -> None:
        self.exporter = exporter
        self.log = log
        self._metrics = metrics
        self._corrupt_records = metrics.queue_corrupt_records.labels(exporter)
        self._corrupt_bytes = metrics.queue_corrupt_bytes.labels(exporter)
        self._recovered = {s: c.labels(exporter) for s, c in metrics.queue_recovered.items()}

    def corrupt(self, nbytes: int, error: str, path: Path, offset: int) -> None:
        self._corrupt_records.inc()
        self._corrupt_bytes.inc(nbytes)
        self.log.log(
            logging.ERROR,
            "corrupt_record",
            "disk queue: corrupt record skipped",
            exporter=self.exporter,
            path=str(path),
            offset=offset,
            error=error,
        )

    def corrupt_found(self, records_: int, nbytes: int) -> None:
        self._corrupt_records.inc(records_)
        self._corrupt_bytes.inc(nbytes)

    def recovered(self, signal: Signal, items: int) -> None:
        self._recovered[signal].inc(items)

    def write_failed(self, reason: str, exc: OSError) -> None:
        self._metrics.queue_write_errors.labels(self.exporter, reason).inc()
        self.log.log(
            logging.ERROR,
            f"write_failed:{reason}",
            "disk queue: write failed",
            exporter=self.exporter,
            reason=reason,
            error=exc.strerror or str(exc),
        )
