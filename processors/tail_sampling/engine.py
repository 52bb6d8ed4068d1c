"""The pure core of the tail sampling processor: buffer, decide, remember, emit. No I/O, no clock: every call
takes ``now`` (processor clock, seconds), so tests drive it with a fake clock and explicit ``tick`` calls.

    ingest_spans / ingest_logs   group the request's items by trace id, then merge each group into the table
                                 (table.py) or, for a trace already decided, follow the decision cache; then
                                 enforce the budgets by deciding the oldest traces now (decide-on-evict)
    tick(now, limit)             decide what is due, at most ``limit`` traces per call (the shell splits long
                                 ticks so the event loop never stalls)
    drain(now, decide)           shutdown: decide (or drop and count) everything still held

This module is the ingest half: ``TailSampler`` groups a request's items by trace id and merges each group into
the table, or, for a trace already decided, follows the decision cache. Holding, timing, budgets and deciding
are the half it inherits (decide.py, with the timing rules); what leaves and what is counted is in outcome.py
(``Outcome``, ``Stats``, ``Histogram``, re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import repeat
from typing import Any, Literal

from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

from processors.tail_sampling.columns import read as read_columns
from processors.tail_sampling.columns import scope_columns
from processors.tail_sampling.decide import Decider
from processors.tail_sampling.marks import freeze, iter_runs
from processors.tail_sampling.outcome import LATE_NOT_SAMPLED, LOG_POLICY, Histogram, Outcome, Stats
from processors.tail_sampling.policies import Decision
from processors.tail_sampling.trace import ROOT as ROOT_FLAG
from processors.tail_sampling.trace import STATUS_ERROR
from processors.tail_sampling.wire import ITEM_PREFIXES, PREFIXED_LIMIT, item_prefix, split

__all__ = ["Histogram", "Outcome", "Stats", "TailSampler"]


# A trace's entry while one request is grouped (one list per trace and request, gone when the call returns):
_LO, _HI, _FLAGS, _CODED, _TOKEN, _PARTS, _RUNS = range(7)
Late = Decision | None  # the cached decision of a late trace; None: the dropped-id filter knows it


def _has_error(marks: tuple[Any, ...]) -> bool:
    """Whether any span of these runs has status ERROR (decoded: for the rare late spans only)."""
    return any(
        span.status.code == STATUS_ERROR for _, run, _ in iter_runs(marks) for span in ScopeSpans.FromString(run).spans
    )


class TailSampler(Decider):
    """The pure core: ingest (below) over holding, timing and deciding (decide.Decider)."""

    # ----------------------------------------------------------------------------------------- ingest

    def ingest_spans(self, raw: bytes, message: Any, now: float, out: Outcome, held_elsewhere: int = 0) -> None:
        """Buffer the spans of one export request (``raw`` and its parsed ``message``, the same bytes).

        The hot loop: one pass over the spans, reading only the fields a configured rule needs (as columns read
        in C when they can be trusted, columns.py, else through the protobuf API), grouping by trace id into
        per-request entries ``[lo, hi, flags, coded, token, parts, runs]`` (marks.py); then one merge per trace into
        the table. The grouping is kept inline and with literal indices: it runs once per span.
        """
        groups: dict[bytes, list[Any]] = {}
        pair = self._pairs.pair
        read_times, read_status, read_root = self._read_times, self._read_status, self._read_root
        use_columns = self._columns
        prefixes, prefixed_limit = ITEM_PREFIXES, PREFIXED_LIMIT
        scopes = iter(split(raw))
        merged = iter(scope_columns(raw) if use_columns else repeat(None))
        for rs in message.resource_spans:
            for ss in rs.scope_spans:
                resource, scope, bodies = next(scopes)
                scope_spans = next(merged)
                if not bodies:
                    continue
                content = pair(resource, scope)
                # ``bodies`` is new for each scope entry: it marks where a trace's run starts.
                cols = read_columns(scope_spans, bodies, read_times, read_status, read_root) if use_columns else None
                if cols is not None:
                    flag_column = cols.flags if cols.flags is not None else repeat(0)
                    rows: Iterable[tuple[bytes, int, int, int, bytes]] = zip(  # noqa: B905 (one may repeat)
                        cols.tids, cols.starts, cols.ends, flag_column, bodies
                    )
                else:
                    rows = _rows(ss.spans, bodies, read_times, read_status, read_root)
                for tid, start, end, flags, body in rows:
                    length = len(body)
                    prefix = prefixes[length] if length < prefixed_limit else item_prefix(length)
                    g = groups.get(tid)
                    if g is None:
                        has_status = 1 if flags & 3 else 0
                        groups[tid] = [start, end, flags, has_status, bodies, [prefix, body], [content, 0]]
                        continue
                    if start < g[0]:
                        g[0] = start
                    if end > g[1]:
                        g[1] = end
                    if flags:
                        g[2] |= flags
                        if flags & 3:  # STATUS_OK | STATUS_ERROR
                            g[3] += 1
                    parts = g[5]
                    if g[4] is not bodies:  # a new run: another scope entry of this request
                        g[4] = bodies
                        g[6] += (content, len(parts))
                    parts.append(prefix)
                    parts.append(body)
        self._merge_spans(groups, now, out)
        self._enforce_budgets(now, out, held_elsewhere)

    def _merge_spans(self, groups: dict[bytes, list[Any]], now: float, out: Outcome) -> None:
        table = self._table
        index = table.index
        lo, hi, flags, coded, spans, nbytes, marks, last = (
            table.lo, table.hi, table.flags, table.coded, table.spans, table.nbytes, table.marks, table.last
        )  # fmt: skip
        after_root = self._after_root
        added_bytes = added_spans = lookups = 0
        for tid, g in groups.items():
            runs_, n, size = freeze(g[_PARTS], g[_RUNS])
            added_bytes += size
            added_spans += n
            slot = index.get(tid)
            if slot is None:
                lookups += 1
                late = self._late(tid)
                if late is not False and not self._late_spans(tid, g, runs_, n, late, out):
                    added_bytes -= size
                    added_spans -= n
                    continue
                slot = table.open(tid, now, g[_LO], g[_HI], g[_FLAGS], g[_CODED], runs_, n, size)
                self._by_first.append((slot, tid))
                if g[_FLAGS] & ROOT_FLAG:
                    self._schedule_root(slot, tid, now + after_root)
                continue
            if g[_LO] < lo[slot]:
                lo[slot] = g[_LO]
            if g[_HI] > hi[slot]:
                hi[slot] = g[_HI]
            if g[_FLAGS]:
                if g[_FLAGS] & ROOT_FLAG and not flags[slot] & ROOT_FLAG:
                    self._schedule_root(slot, tid, now + after_root)
                flags[slot] |= g[_FLAGS]
                coded[slot] += g[_CODED]
            spans[slot] += n
            nbytes[slot] += size
            marks[slot] += runs_
            last[slot] = now
        self.stats.filter_false_positives += lookups * self._dropped.false_positive_rate()
        self.held_bytes += added_bytes
        self.held_spans += added_spans

    def _late_spans(self, tid: bytes, g: list[Any], marks: tuple[Any, ...], n: int, late: Late, out: Outcome) -> bool:
        """Spans of a trace already decided. Returns True when they must be buffered after all: an ERROR span
        the dropped-id filter matched (the filter may be wrong, and errors are what tail sampling keeps)."""
        stats = self.stats
        if late is not None:
            out.spans.add_marks(marks)
            stats.late_spans["kept"] += n
            if out.decisions is not None:
                out.decisions[tid] = late
            return False
        if g[_FLAGS] & STATUS_ERROR if self._read_status else _has_error(marks):
            stats.late_spans["error_rechecked"] += n
            return True
        stats.late_spans["dropped"] += n
        stats.dropped_spans[LATE_NOT_SAMPLED] += n
        return False

    def ingest_logs(self, raw: bytes, message: Any, now: float, out: Outcome, held_elsewhere: int = 0) -> bool:
        """Buffer the log records of one export request. Returns True when every record may pass as it came
        (none carries a trace id and there are no log policies): the caller forwards the original batch."""
        groups: dict[bytes, list[Any]] = {}  # tid -> [token, parts, runs] (marks.py)
        policies = self.log_policies
        pair = self._pairs.pair
        untraced = 0
        passing: list[tuple[tuple[bytes, bytes], list[bytes]]] = []
        scopes = iter(split(raw))
        for rl in message.resource_logs:
            for sl in rl.scope_logs:
                resource, scope, bodies = next(scopes)
                if not bodies:
                    continue
                content = pair(resource, scope)
                free: list[bytes] = []
                for rec, body in zip(sl.log_records, bodies, strict=True):
                    tid = rec.trace_id
                    if not tid:
                        untraced += 1
                        if not policies or policies.keep(rec.severity_number, rec.flags, tid, body):
                            free.append(body)
                        continue
                    prefix = item_prefix(len(body))
                    g = groups.get(tid)
                    if g is None:
                        groups[tid] = [bodies, [prefix, body], [content, 0]]
                        continue
                    if g[0] is not bodies:
                        g[0] = bodies
                        g[2] += (content, len(g[1]))
                    g[1] += (prefix, body)
                if free:
                    passing.append((content, free))
        stats = self.stats
        kept_free = sum(len(b) for _, b in passing)
        stats.logs[("no_trace", "kept")] += kept_free
        if untraced > kept_free:
            stats.logs[("no_trace", "dropped")] += untraced - kept_free
            stats.dropped_logs[LOG_POLICY] += untraced - kept_free
        table = self._table
        index = table.index
        for tid, g in groups.items():
            marks, n, nbytes = freeze(g[1], g[2])
            slot = index.get(tid)
            if slot is None:
                stats.filter_false_positives += self._dropped.false_positive_rate()
                late = self._late(tid)
                if late is not False:
                    path = "kept" if late is not None else "dropped"
                    stats.logs[("late", path)] += n
                    if late is not None:
                        out.logs.add_marks(marks)
                    else:
                        stats.dropped_logs[LATE_NOT_SAMPLED] += n
                    continue
                slot = self._open(tid, now)
            table.add_logs(slot, marks, n, nbytes)
            self.held_bytes += nbytes
            self.held_logs += n
        forward_as_is = not groups and not policies and untraced > 0
        if not forward_as_is:
            for content, free in passing:
                out.logs.add(content, free)
        self._enforce_budgets(now, out, held_elsewhere)
        return forward_as_is

    def _late(self, tid: bytes) -> Late | Literal[False]:
        """For a trace id not buffered: its cached decision (a Decision: kept; None: dropped), or False when the
        decision cache does not know it (a new trace)."""
        if not tid:
            return False
        decision = self._kept.get(tid)
        if decision is not None:
            return self._cached_twin(decision)
        if tid in self._dropped:
            return None
        return False

    def _open(self, tid: bytes, now: float) -> int:
        slot = self._table.open(tid, now)
        self._by_first.append((slot, tid))
        return slot

    def _cached_twin(self, decision: Decision) -> Decision:
        twin = self._cached.get(decision)
        if twin is None:
            twin = self._cached[decision] = replace(decision, cached=True)
        return twin


def _rows(
    spans: Iterable[Any], bodies: Sequence[bytes], read_times: bool, read_status: bool, read_root: bool
) -> Iterator[tuple[bytes, int, int, int, bytes]]:
    """(trace id, start, end, flags, body) per span through the protobuf API, as the columns give them when
    they cannot be trusted (columns.py): the fields a rule does not need read as 0."""
    for sp, body in zip(spans, bodies, strict=True):
        start = sp.start_time_unix_nano if read_times else 0
        end = sp.end_time_unix_nano if read_times else 0
        flags = ROOT_FLAG if read_root and not sp.parent_span_id else 0
        if read_status and sp.HasField("status"):
            code = sp.status.code
            if code == 2 or code == 1:  # STATUS_ERROR, STATUS_OK; other values: UNSET
                flags |= code
        yield sp.trace_id, start, end, flags, body
