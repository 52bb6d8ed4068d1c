"""Merging and splitting batches without a Python object per item.

Merging: an Export*ServiceRequest has one field, the repeated ``resource_*`` (field 1), and protobuf parses a
concatenation of serialized messages as their merge (repeated fields append). So several requests merge by
joining their bytes: a memcpy, no decode. The merged batch parses its message only if a consumer reads it
(``LazyBatch``); the OTLP exporters and the disk queue only need the bytes.

Splitting by item count walks resources and scopes through the protobuf API and copies the item slices. It runs
only when a request is larger than a configured maximum, so its per-item cost (~1.4 us, DESIGN.md section 4)
is paid for those requests alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pipeline.model import EMPTY_METADATA, Batch, Metadata, Request, Signal

__all__ = ["LazyBatch", "merge", "split", "split_to_fit", "with_metadata"]

# (resource list, scope list, item list) field names of each signal's request.
_LAYOUT = {
    Signal.TRACES: ("resource_spans", "scope_spans", "spans"),
    Signal.LOGS: ("resource_logs", "scope_logs", "log_records"),
    Signal.METRICS: ("resource_metrics", "scope_metrics", "metrics"),
}


class LazyBatch(Batch):
    """A batch known by its bytes; ``message`` is parsed on first access (then cached).

    Item count and size are given by whoever made the bytes (the merge, or the disk queue's record header), so
    nothing is decoded until a consumer actually looks inside.
    """

    __slots__ = ("_parsed",)

    def __init__(self, signal: Signal, raw: bytes, items: int, metadata: Metadata = EMPTY_METADATA) -> None:
        self._parsed: Request | None = None
        # The dataclass __init__ assigns ``message`` through the property setter below.
        super().__init__(signal, None, items, len(raw), raw, metadata)  # type: ignore[arg-type]

    @property
    def message(self) -> Request:
        parsed = self._parsed
        if parsed is None:
            assert self.raw is not None  # raw is only cleared by mark_modified, which parses first
            parsed = self.signal.request_type()
            parsed.ParseFromString(self.raw)
            self._parsed = parsed
        return parsed

    @message.setter
    def message(self, value: Request | None) -> None:
        self._parsed = value

    @property
    def parsed(self) -> bool:
        """Whether the message has been decoded (tests and benchmarks check that it was not)."""
        return self._parsed is not None

    def mark_modified(self, items: int | None = None) -> None:
        self.message  # noqa: B018 - decode before the bytes are forgotten; a caller changed the message
        super().mark_modified(items)


def merge(batches: Sequence[Batch], metadata: Metadata | None = None) -> Batch:
    """One batch holding every item of ``batches`` (same signal), in order, by concatenating their bytes."""
    if not batches:
        raise ValueError("merge needs at least one batch")
    first = batches[0]
    if len(batches) == 1:
        return first if metadata is None or metadata is first.metadata else with_metadata(first, metadata)
    raw = b"".join([b.serialize() for b in batches])
    return LazyBatch(first.signal, raw, sum(b.items for b in batches), first.metadata if metadata is None else metadata)


def with_metadata(batch: Batch, metadata: Metadata) -> Batch:
    """The same data under other client metadata: a new wrapper, nothing copied or decoded (the original may
    be shared with other consumers, so its own metadata is left alone)."""
    if isinstance(batch, LazyBatch) and not batch.parsed and batch.raw is not None:
        return LazyBatch(batch.signal, batch.raw, batch.items, metadata)
    return Batch(batch.signal, batch.message, batch.items, batch.nbytes, batch.raw, metadata)


def split(batch: Batch, max_items: int) -> list[Batch]:
    """Pieces of at most ``max_items`` items each, in order; the batch itself when it already fits.

    The input batch is not changed. Metrics are cut between data points when one metric holds more than fits.
    """
    if max_items < 1:
        raise ValueError("max_items must be >= 1")
    if batch.items <= max_items:
        return [batch]
    cutter = _Cutter(batch.signal, max_items)
    resources_field, scopes_field, items_field = _LAYOUT[batch.signal]
    for ri, resource in enumerate(getattr(batch.message, resources_field)):
        for si, scope in enumerate(getattr(resource, scopes_field)):
            where = (ri, si, resource, scope)
            if batch.signal is Signal.METRICS:
                cutter.metrics(where)
            else:
                items = getattr(scope, items_field)
                start, n = 0, len(items)
                while start < n:
                    out = getattr(cutter.scope(where), items_field)
                    take = min(cutter.room, n - start)
                    out.extend(items[start : start + take])
                    cutter.used(take)
                    start += take
    return [Batch.from_message(batch.signal, p, batch.metadata) for p in cutter.pieces]


class _Cutter:
    """Fills pieces up to ``max_items``, opening a new piece (with its own resource and scope) when full."""

    def __init__(self, signal: Signal, max_items: int) -> None:
        self.signal = signal
        self.max_items = max_items
        self.resources_field, self.scopes_field, _ = _LAYOUT[signal]
        self.pieces: list[Request] = []
        self.room = 0
        self._piece: Any = None
        self._resource_key: tuple[int, int] | None = None
        self._out_resource: Any = None
        self._out_scope: Any = None

    def scope(self, where: tuple[int, int, Any, Any]) -> Any:
        """The output scope for items of input resource ``ri``, scope ``si``, in a piece with room for at least
        one item."""
        ri, si, resource, scope = where
        if self.room == 0 or self._piece is None:
            self._piece = self.signal.request_type()
            self.pieces.append(self._piece)
            self.room = self.max_items
            self._resource_key = None
        key = (ri, si)
        if self._resource_key is None or self._resource_key[0] != key[0]:
            self._out_resource = getattr(self._piece, self.resources_field).add()
            self._out_resource.resource.CopyFrom(resource.resource)
            self._out_resource.schema_url = resource.schema_url
            self._out_scope = None
        if self._out_scope is None or self._resource_key != key:
            self._out_scope = getattr(self._out_resource, self.scopes_field).add()
            self._out_scope.scope.CopyFrom(scope.scope)
            self._out_scope.schema_url = scope.schema_url
        self._resource_key = key
        return self._out_scope

    def used(self, n: int) -> None:
        self.room -= n

    def metrics(self, where: tuple[int, int, Any, Any]) -> None:
        scope = where[3]
        for metric in scope.metrics:
            kind = metric.WhichOneof("data")
            points = getattr(metric, kind).data_points if kind is not None else ()
            n = len(points)
            if n == 0:  # no items: it rides along in the current piece
                self.scope(where).metrics.add().CopyFrom(metric)
                continue
            if n <= self.room:
                self.scope(where).metrics.add().CopyFrom(metric)
                self.used(n)
                continue
            # Cut between data points: copy the metric's own fields once, then add each slice of points.
            header = type(metric)()
            header.CopyFrom(metric)
            del getattr(header, kind).data_points[:]
            start = 0
            while start < n:
                out_scope = self.scope(where)
                take = min(self.room, n - start)
                piece = out_scope.metrics.add()
                piece.CopyFrom(header)
                getattr(piece, kind).data_points.extend(points[start : start + take])
                self.used(take)
                start += take


def split_to_fit(batch: Batch, max_items: int, max_bytes: int) -> list[Batch]:
    """Split by ``max_items`` (0 = no limit), then cut pieces larger than ``max_bytes`` (0 = no limit) into
    proportionally smaller ones until each fits or holds a single item (which is sent as it is)."""
    pieces = split(batch, max_items) if max_items and batch.items > max_items else [batch]
    if not max_bytes:
        return pieces
    out: list[Batch] = []
    work = list(reversed(pieces))
    while work:
        piece = work.pop()
        if piece.items <= 1 or len(piece.serialize()) <= max_bytes:
            out.append(piece)
            continue
        parts = math.ceil(piece.nbytes / max_bytes)
        per = max(1, math.ceil(piece.items / parts))
        if per >= piece.items:
            per = piece.items - 1
        work.extend(reversed(split(piece, per)))
    return out
