"""The ``file`` exporter: OTLP export requests appended to local files, all signals, no sending queue.

Formats, as the collector's file exporter writes them:
- ``json``: one OTLP/JSON export request per line (JSON Lines); the top-level key (resourceSpans,
  resourceLogs, resourceMetrics) says the signal.
- ``proto``: each request as a 4-byte big-endian length then its protobuf bytes. Nothing in a record says the
  signal, so an exporter serving several signals must write them to separate files: its path must contain
  "{signal}" (replaced by traces, logs, metrics), which create() checks.

A batch is acknowledged once it is encoded into the exporter's in-process buffer. A background task writes the
buffer out every flush_interval_ms (in a worker thread, so a slow disk never blocks the event loop); consume
waits for a write when more than ``_MAX_PENDING_BYTES`` are waiting, so the buffer stays bounded. Shutdown
writes what is left, fsyncs and closes. Items are counted ``sent`` once written; a failed write counts them
dropped ("write_error") and cuts the file back to its last whole record.

``append`` defaults to true, unlike the collector (which truncates unless ``append: true``): a SIGHUP reload
restarts every component, and truncating on start would erase what the exporter wrote before the reload.

``read_records`` reads both formats back, for replay tools and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

import msgspec
from google.protobuf.message import DecodeError

from pipeline import otlpjson
from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.errors import ConfigError, Permanent, Refused, StartError
from pipeline.model import Batch, Request, Signal
from pipeline.telemetry.health import CheckResult, Status
from pipeline.telemetry.ratelimit import RateLimitedLog

SIGNAL_PLACEHOLDER = "{signal}"
FORMATS = ("json", "proto")
WRITE_ERROR = "write_error"
SHUTDOWN = "shutdown"
# Above this many buffered bytes per file, consume waits for a write: the disk sets the pace.
_MAX_PENDING_BYTES = 8 * 1024 * 1024
_JSON_KEYS = {Signal.TRACES: "resourceSpans", Signal.LOGS: "resourceLogs", Signal.METRICS: "resourceMetrics"}
_SIGNAL_BY_JSON_KEY = {v: k for k, v in _JSON_KEYS.items()}
_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
_PROTO_SUFFIXES = (".pb", ".binpb", ".proto", ".bin")


class FileConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    path: str
    format: str = "json"
    flush_interval_ms: Annotated[int, msgspec.Meta(ge=1, le=3_600_000)] = 1000
    append: bool = True

    def __post_init__(self) -> None:
        if not self.path.strip():
            raise ValueError("path: must not be empty")
        if self.format not in FORMATS:
            raise ValueError(f'format: expected "json" or "proto", got {self.format!r}')


def signal_path(path: str, signal: Signal) -> str:
    return path.replace(SIGNAL_PLACEHOLDER, signal.value)


def encode_record(batch: Batch, format: str) -> bytes:
    if format == "proto":
        raw = batch.serialize()
        return len(raw).to_bytes(4, "big") + raw
    doc = otlpjson.to_dict(batch.signal, batch.message)
    # An empty request still names its signal, so read_records can tell what it is.
    doc.setdefault(_JSON_KEYS[batch.signal], [])
    return msgspec.json.encode(doc) + b"\n"


class _Output:
    """One open file and what waits to be written to it (several signals may share it in JSON)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: io.FileIO | None = None
        self.chunks: list[bytes] = []
        self.pending_bytes = 0
        self.pending_items: dict[Signal, int] = {}
        # Writes happen one at a time and in order; each takes the buffer as it is when its turn comes.
        self.lock = asyncio.Lock()

    def take(self) -> tuple[bytes, dict[Signal, int]]:
        data = b"".join(self.chunks)
        items = self.pending_items
        self.chunks, self.pending_bytes, self.pending_items = [], 0, {}
        return data, items


def _open(path: Path, append: bool) -> io.FileIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unbuffered: the exporter buffers itself, and a failed write must not leave bytes behind in a Python
    # buffer to be written again, out of place, by the next flush or the close.
    return io.FileIO(path, "ab" if append else "wb")


def _write(f: io.FileIO, data: bytes) -> None:
    try:
        end: int | None = f.tell()
    except OSError:  # a pipe or a terminal (path = "/dev/stdout"): nothing to cut back
        end = None
    view = memoryview(data)
    try:
        while view:
            n = f.write(view)
            if n is None:  # only for non-blocking files, which these are not
                raise OSError(f"short write to {f.name}")
            view = view[n:]
    except OSError:
        # Leave whole records only (a torn length-prefixed record would break every record after it).
        if end is not None:
            with contextlib.suppress(OSError):
                f.truncate(end)
                f.seek(end)
        raise


def _sync_and_close(f: io.FileIO) -> None:
    try:
        os.fsync(f.fileno())
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):  # a pipe or a device: nothing to sync
            raise
    finally:
        f.close()


class FileExporter:
    def __init__(self, settings: CreateSettings, cfg: FileConfig) -> None:
        signals = sorted(settings.signals, key=lambda s: s.value)
        if cfg.format == "proto" and len(signals) > 1 and SIGNAL_PLACEHOLDER not in cfg.path:
            raise ConfigError(
                [
                    f"exporters.{settings.id}.path: the proto format does not record the signal, so an exporter used"
                    f" for {', '.join(s.value for s in signals)} must have {SIGNAL_PLACEHOLDER} in its path"
                ]
            )
        self._id = str(settings.id)
        self._cfg = cfg
        self._logger = settings.logger
        self._clock = settings.clock
        self._log = RateLimitedLog(settings.logger, clock=settings.clock)
        self._metrics = settings.metrics.exporter(self._id)
        self._health = settings.health
        self._outputs: dict[Signal, _Output] = {}
        by_path: dict[Path, _Output] = {}
        for s in signals:
            path = Path(signal_path(cfg.path, s))
            self._outputs[s] = by_path.setdefault(path, _Output(path))
        self._unique = list(by_path.values())
        self._running = False
        self._stopped = False
        self._flusher: asyncio.Task[None] | None = None
        self._last_error = ""

    @property
    def mutates_data(self) -> bool:
        return False

    def consumer(self, signal: Signal) -> Consumer:
        return self

    async def consume(self, batch: Batch) -> None:
        if not self._running:
            raise Refused(f"exporter {self._id} is {'shut down' if self._stopped else 'not started'}")
        out = self._outputs.get(batch.signal)
        if out is None:
            raise Permanent(f"exporter {self._id} does not take {batch.signal.value}")
        record = encode_record(batch, self._cfg.format)
        out.chunks.append(record)
        out.pending_bytes += len(record)
        out.pending_items[batch.signal] = out.pending_items.get(batch.signal, 0) + batch.items
        if out.pending_bytes >= _MAX_PENDING_BYTES:
            await self._flush(out)

    async def start(self) -> None:
        if self._running or self._stopped:
            return
        for out in self._unique:
            try:
                out.file = await asyncio.to_thread(_open, out.path, self._cfg.append)
            except OSError as exc:
                await self._close_files()
                raise StartError(f"exporter {self._id}: cannot open {str(out.path)!r} for writing: {exc}") from exc
        self._running = True
        self._health.register(f"exporter/{self._id}", self._check)
        self._flusher = asyncio.create_task(self._flush_every_interval(), name=f"exporter/{self._id}/flush")

    async def shutdown(self, deadline: float) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._running = False
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.wait({self._flusher})
        final = asyncio.ensure_future(self._final_flush())
        # Not cancelled at the deadline: a write handed to a thread cannot be taken back, only waited for.
        await asyncio.wait({final}, timeout=max(0.0, deadline - self._clock.monotonic()))
        if not final.done():
            # The disk is stuck: what is not yet being written will not be, and is counted.
            dropped = 0
            for out in self._unique:
                _, items = out.take()
                for signal, n in items.items():
                    self._metrics.dropped(signal, n, SHUTDOWN)
                    dropped += n
            self._logger.error(
                "exporter %s: files not flushed by the shutdown deadline, %d items dropped",
                self._id,
                dropped,
                extra={"fields": {"exporter": self._id, "dropped_items": dropped}},
            )
        self._health.unregister(f"exporter/{self._id}")

    async def _final_flush(self) -> None:
        for out in self._unique:
            await self._flush(out)
        await self._close_files()

    async def _close_files(self) -> None:
        for out in self._unique:
            f, out.file = out.file, None
            if f is None:
                continue
            try:
                await asyncio.to_thread(_sync_and_close, f)
            except OSError as exc:
                self._logger.error("exporter %s: closing %s failed: %s", self._id, out.path, exc)

    async def _flush_every_interval(self) -> None:
        interval_s = self._cfg.flush_interval_ms / 1000.0
        while True:
            await asyncio.sleep(interval_s)
            for out in self._unique:
                await self._flush(out)

    async def _flush(self, out: _Output) -> None:
        # Shielded: a write handed to a thread goes on even if the caller is cancelled, so the caller must not
        # drop the lock or the accounting half-way (the write would race the next one and count nowhere).
        await asyncio.shield(self._write_pending(out))

    async def _write_pending(self, out: _Output) -> None:
        async with out.lock:
            if not out.chunks:
                return
            data, items = out.take()
            f = out.file
            try:
                if f is None:
                    raise OSError(f"{out.path} is not open")
                await asyncio.to_thread(_write, f, data)
            except OSError as exc:
                self._last_error = f"writing {out.path}: {exc}"
                for signal, n in items.items():
                    self._metrics.dropped(signal, n, WRITE_ERROR)
                self._log.log(
                    logging.ERROR,
                    WRITE_ERROR,
                    "file write failed, data dropped",
                    exporter=self._id,
                    path=str(out.path),
                    items=sum(items.values()),
                    error=str(exc),
                )
                return
            self._last_error = ""
            for signal, n in items.items():
                self._metrics.sent(signal, n)

    def _check(self) -> CheckResult:
        if self._last_error:
            return CheckResult(Status.DEGRADED, self._last_error)
        return CheckResult(Status.HEALTHY)


# --------------------------------------------------------------------------------------------- reading back


def _guess_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _JSON_SUFFIXES:
        return "json"
    if suffix in _PROTO_SUFFIXES:
        return "proto"
    with path.open("rb") as f:
        head = f.read(1)
    return "json" if head in (b"{", b"") else "proto"


def _signal_from_name(path: Path) -> Signal:
    found = [s for s in Signal if s.value in path.name]
    if len(found) != 1:
        raise ValueError(f"cannot tell the signal of {str(path)!r} from its name: pass signal=")
    return found[0]


def _json_signal(line: bytes, fallback: Signal | None, where: str) -> Signal:
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"{where}: invalid JSON: {exc}") from None
    if isinstance(doc, dict):
        for key in doc:
            found = _SIGNAL_BY_JSON_KEY.get(key)
            if found is not None:
                return found
    if fallback is not None:
        return fallback
    raise ValueError(f"{where}: no resourceSpans, resourceLogs or resourceMetrics key")


def read_records(
    path: str | os.PathLike[str], format: str | None = None, signal: Signal | None = None
) -> Iterator[tuple[Signal, Request]]:
    """Yield (signal, export request) for each record of a file the exporter wrote.

    ``format`` defaults from the file name (.json/.jsonl vs .pb/.binpb), else from its first byte. JSON lines
    name their signal; for proto, ``signal`` is required unless the file name contains exactly one of
    traces, logs, metrics. Raises ValueError on a malformed or truncated file.
    """
    p = Path(path)
    fmt = format or _guess_format(p)
    if fmt not in FORMATS:
        raise ValueError(f"format: expected 'json' or 'proto', got {fmt!r}")
    with p.open("rb") as f:
        if fmt == "json":
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{p}:{lineno}"
                sig = _json_signal(line, signal, where)
                try:
                    yield sig, otlpjson.decode(sig, line)
                except otlpjson.JsonDecodeError as exc:
                    raise ValueError(f"{where}: {exc}") from None
            return
        sig = signal if signal is not None else _signal_from_name(p)
        offset = 0
        while header := f.read(4):
            if len(header) < 4:
                raise ValueError(f"{p}: truncated length prefix at byte {offset}")
            size = int.from_bytes(header, "big")
            data = f.read(size)
            if len(data) < size:
                raise ValueError(f"{p}: record at byte {offset} is truncated ({len(data)} of {size} bytes)")
            message = sig.request_type()
            try:
                message.ParseFromString(data)
            except DecodeError as exc:
                raise ValueError(f"{p}: record at byte {offset} is not a {sig.value} request: {exc}") from None
            yield sig, message
            offset += 4 + size


def _create(settings: CreateSettings, cfg: FileConfig, nexts: Mapping[Signal, Consumer]) -> FileExporter:
    return FileExporter(settings, cfg)


FACTORY = Factory(kind=Kind.EXPORTER, type="file", config_type=FileConfig, create=_create, signals=frozenset(Signal))
