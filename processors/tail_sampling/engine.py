"""The pure core of the tail sampling processor: buffer, decide, remember, emit. No I/O, no clock: every call
takes ``now`` (processor clock, seconds), so tests drive it with a fake clock and explicit ``tick`` calls.

    ingest_spans / ingest_logs   group the request's items by trace id, then merge each group into the table
                                 (table.py) or, for a trace already decided, follow the decision cache; then
                                 enforce the budgets by deciding the oldest traces now (decide-on-evict)
    tick(now, limit)             decide what is due, at most ``limit`` traces per call (the shell splits long
                                 ticks so the event loop never stalls)
    drain(now, decide)           shutdown: decide (or drop and count) everything still held

When a trace is decided (``_decide``):
- no span arrived (only log records): the records go through the log policies (logpolicy.py);
- kept: its spans and log records go out, its id goes into the kept LRU;
- dropped: its id goes into the dropped-id filter; spans and records are counted dropped ("not_sampled").

Timing of a trace (first = arrival of its first span or record):
- decided at first + decision_wait;
- once its root span arrived (decision_wait_after_root > 0): decided as soon as no span came for
  min(decision_wait_after_root, decision_wait); at first + decision_wait it keeps waiting for that quiet moment
  only if spans still come;
- never later than first + max_trace_duration.

Everything that leaves goes into an ``Outcome`` (requests to send, built by slicing) and every count into
``Stats`` (plain numbers; the shell turns them into metrics once per tick).
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import repeat
from typing import Any, Literal

from opentelemetry.proto.logs.v1.logs_pb2 import ScopeLogs
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

from pipeline.delivery.merge import LazyBatch
from pipeline.model import Batch, Signal
from processors.tail_sampling import config as c
from processors.tail_sampling.annotate import annotate_spans
from processors.tail_sampling.cache import DroppedFilter, KeptCache
from processors.tail_sampling.columns import read as read_columns
from processors.tail_sampling.columns import scope_columns
from processors.tail_sampling.config import AnnotationsConfig, TailSamplingConfig
from processors.tail_sampling.logpolicy import LogPolicies
from processors.tail_sampling.marks import freeze, iter_runs
from processors.tail_sampling.policies import Decision, PolicySet, uses
from processors.tail_sampling.table import TraceTable
from processors.tail_sampling.trace import ROOT as ROOT_FLAG
from processors.tail_sampling.trace import STATUS_ERROR, HeaderAttributes, Trace, TraceView
from processors.tail_sampling.wire import ITEM_PREFIXES, PREFIXED_LIMIT, Interner, RequestBuilder, item_prefix, split

# Decision triggers (label values).
WAIT = "wait"
ROOT = "root"
MAX_DURATION = "max_duration"
BUDGET = "budget"
SHUTDOWN = "shutdown"

# Drop reasons (otelpipe_processor_dropped_items_total{reason}).
NOT_SAMPLED = "not_sampled"
LATE_NOT_SAMPLED = "late_not_sampled"
DROPPED_ON_SHUTDOWN = "shutdown"
LOG_POLICY = "log_policy"

# Decision latency buckets, seconds (first span -> decision): fine around common decision waits (5, 10, 30 s),
# so "p99 under decision_wait + 1 s" can be read off the histogram.
_FINE = (0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 5.5, 6, 7.5, 10, 10.5, 11, 12.5, 15, 20, 30, 30.5, 31)
LATENCY_BUCKETS: tuple[float, ...] = (*_FINE, 45, 60, 90, 120, 300)


class Histogram:
    """Bucket counts kept as plain ints (observing costs a bisect, not a metric update per trace)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class Stats:
    """Counts since the shell last took them."""

    def __init__(self) -> None:
        self.decided: Counter[tuple[str, str]] = Counter()  # (kept|dropped, trigger) -> traces
        self.dropped_spans: Counter[str] = Counter()  # reason -> spans
        self.dropped_logs: Counter[str] = Counter()  # reason -> log records
        self.late_spans: Counter[str] = Counter()  # kept | dropped | error_rechecked
        self.logs: Counter[tuple[str, str]] = Counter()  # (path, kept|dropped) -> records
        self.filter_false_positives = 0.0  # expected value
        # (deciding policy, kept|dropped) -> [traces, spans, span bytes]; policy "" = no policy sampled.
        self.by_policy: dict[tuple[str, str], list[int]] = {}

    def take(self) -> Stats:
        taken = Stats()
        taken.__dict__, self.__dict__ = self.__dict__, taken.__dict__
        return taken


class Outcome:
    """What to send downstream after one call: requests built by slicing, plus, when annotations are on, the
    decision behind each kept trace id."""

    __slots__ = ("decisions", "logs", "spans")

    def __init__(self, annotate: bool = False) -> None:
        self.spans = RequestBuilder()
        self.logs = RequestBuilder()
        self.decisions: dict[bytes, Decision] | None = {} if annotate else None

    def __bool__(self) -> bool:
        return bool(self.spans) or bool(self.logs)

    def batches(self, annotations: AnnotationsConfig) -> list[Batch]:
        """The requests to send, kept spans annotated. They carry their bytes and are parsed only if something
        downstream reads the message (the pii processor and the exporters work on the bytes)."""
        out: list[Batch] = []
        for raw, items in self.spans.encode():
            batch: Batch = LazyBatch(Signal.TRACES, raw, items)
            if self.decisions and annotate_spans(batch.message, self.decisions, annotations):
                batch.mark_modified()
            out.append(batch)
        out.extend(LazyBatch(Signal.LOGS, raw, items) for raw, items in self.logs.encode())
        return out


# A trace's entry while one request is grouped (one list per trace and request, gone when the call returns):
_LO, _HI, _FLAGS, _CODED, _TOKEN, _PARTS, _RUNS = range(7)
Late = Decision | None  # the cached decision of a late trace; None: the dropped-id filter knows it


def _has_error(marks: tuple[Any, ...]) -> bool:
    """Whether any span of these runs has status ERROR (decoded: for the rare late spans only)."""
    return any(
        span.status.code == STATUS_ERROR for _, run, _ in iter_runs(marks) for span in ScopeSpans.FromString(run).spans
    )


class TailSampler:
    def __init__(
        self, cfg: TailSamplingConfig, latency: Histogram | None = None, stable: bool = False, columns: bool = True
    ) -> None:
        """``stable``: hash trace ids the same way in every process (for replays that must repeat exactly).
        ``columns=False`` reads every span through the protobuf API (to measure or check the column path)."""
        self.cfg = cfg
        self._wait = cfg.decision_wait_ms / 1000.0
        # A quiet window longer than decision_wait would hold every rooted trace past decision_wait (to the
        # max_trace_duration cap) whenever any span came in its first seconds: the quiet window never exceeds
        # the wait, so a trace that went quiet is decided at decision_wait at the latest.
        self._after_root = min(cfg.decision_wait_after_root_ms, cfg.decision_wait_ms) / 1000.0
        self._max_duration = cfg.max_trace_duration_s
        # Touch only the span fields a configured rule reads (each costs ~0.05 us per span through upb).
        self._read_times = uses(cfg.policies, c.Latency)
        self._read_status = uses(cfg.policies, c.StatusCode)
        self._read_root = self._after_root > 0
        self._columns = columns
        ann = cfg.annotations
        self.annotate = ann.any
        self.policies = PolicySet(
            cfg.policies, cfg.sample_on_first_match, need_alone=ann.adjusted_count or ann.tracestate_threshold
        )
        self.log_policies = LogPolicies(cfg.log_policies)
        self._kept = KeptCache(cfg.decision_cache.sampled_cache_size)
        self._dropped = DroppedFilter(
            cfg.decision_cache.non_sampled_cache_size, cfg.decision_cache.non_sampled_false_positive_rate, stable
        )
        self._cached: dict[Decision, Decision] = {}
        self._table = TraceTable()
        # Queues of (slot, trace id), valid while the slot still holds that trace (table.live).
        self._by_first: deque[tuple[int, bytes]] = deque()  # arrival order, not yet past decision_wait
        self._past_wait: deque[tuple[int, bytes]] = deque()  # past decision_wait, waiting for the root rule
        self._root_due: list[tuple[float, int, int, bytes]] = []  # heap: (due, seq, slot, tid)
        self._seq = itertools.count()
        self._pairs = Interner()
        self._headers = HeaderAttributes()
        self.held_bytes = 0
        self.held_spans = 0
        self.held_logs = 0
        self.stats = Stats()
        self.latency = latency if latency is not None else Histogram()

    # ------------------------------------------------------------------------------------------ state

    @property
    def held_traces(self) -> int:
        return len(self._table)

    def admit(self, nbytes: int, held_elsewhere: int) -> str | None:
        """Why a request of ``nbytes`` cannot be taken now (None: it can). Decide-on-evict makes room for
        anything that fits the byte budget next to what waits to be sent; beyond that the sender must wait."""
        if held_elsewhere * 2 > self.cfg.max_bytes:
            return "tail sampling: decided data waits for the downstream to accept it"
        if held_elsewhere + nbytes > self.cfg.max_bytes:
            return "tail sampling: the request is larger than the memory budget (max_bytes) leaves room for"
        return None

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

    def _schedule_root(self, slot: int, tid: bytes, due: float) -> None:
        self._table.root_due[slot] = due
        heapq.heappush(self._root_due, (due, next(self._seq), slot, tid))

    # --------------------------------------------------------------------------------------- decisions

    def tick(self, now: float, out: Outcome, limit: int = 1 << 62) -> bool:
        """Decide every trace that is due, at most ``limit``; True when more may be due (call again)."""
        n = 0
        table = self._table
        heap = self._root_due
        after = self._after_root
        while heap and heap[0][0] <= now and n < limit:
            due, _, slot, tid = heapq.heappop(heap)
            if not table.live(slot, tid) or table.root_due[slot] != due:
                continue  # decided meanwhile, or rescheduled
            quiet_at = table.last[slot] + after
            if quiet_at > now:  # spans came since: look again once they stop
                self._schedule_root(slot, tid, quiet_at)
                continue
            self._decide(slot, ROOT, now, out)
            n += 1
        for slot, tid in self._pop_due(self._by_first, self._wait, now, limit - n):
            if after and table.flags[slot] & ROOT_FLAG and table.last[slot] + after > now:
                self._past_wait.append((slot, tid))  # rooted and still busy: the root rule decides when quiet
                continue
            self._decide(slot, WAIT, now, out)
            n += 1
        for slot, _ in self._pop_due(self._past_wait, self._max_duration, now, limit - n):
            self._decide(slot, MAX_DURATION, now, out)
            n += 1
        return n >= limit

    def _pop_due(
        self, queue: deque[tuple[int, bytes]], delay: float, now: float, limit: int
    ) -> Iterator[tuple[int, bytes]]:
        """Pop, oldest first, up to ``limit`` live traces of ``queue`` whose first arrival + ``delay`` has passed."""
        table = self._table
        while queue and limit > 0:
            slot, tid = queue[0]
            if not table.live(slot, tid):
                queue.popleft()
                continue
            if table.first[slot] + delay > now:
                return
            queue.popleft()
            limit -= 1
            yield slot, tid

    def _oldest(self) -> int | None:
        table = self._table
        for queue in (self._past_wait, self._by_first):
            while queue and not table.live(*queue[0]):
                queue.popleft()
            if queue:
                return queue[0][0]
        return None

    def _enforce_budgets(self, now: float, out: Outcome, held_elsewhere: int) -> None:
        cfg = self.cfg
        while len(self._table) > cfg.num_traces or self.held_bytes + held_elsewhere > cfg.max_bytes:
            slot = self._oldest()
            if slot is None:
                return
            self._decide(slot, BUDGET, now, out)

    def drain(self, now: float, out: Outcome, decide: bool = True) -> None:
        """Shutdown: decide every held trace now (or, with ``decide=False``, drop it and count it)."""
        while (slot := self._oldest()) is not None:
            if decide:
                self._decide(slot, SHUTDOWN, now, out)
                continue
            t = self._release(slot)
            self.stats.dropped_spans[DROPPED_ON_SHUTDOWN] += t.span_count
            self.stats.dropped_logs[DROPPED_ON_SHUTDOWN] += t.log_count
        self._root_due.clear()

    def _release(self, slot: int) -> Trace:
        t = self._table.close(slot)
        self.held_bytes -= t.held_bytes
        self.held_spans -= t.span_count
        self.held_logs -= t.log_count
        return t

    def _decide(self, slot: int, trigger: str, now: float, out: Outcome) -> None:
        t = self._release(slot)
        self.latency.observe(now - t.first)
        spans = t.span_count
        if not spans:
            self._decide_logs_alone(t, out)
            return
        decision = self.policies.decide(TraceView(t, self.policies.keys, self._headers), now)
        stats = self.stats
        key = (decision.policy, "kept" if decision.keep else "dropped")
        record = stats.by_policy.get(key)
        if record is None:
            record = stats.by_policy[key] = [0, 0, 0]
        record[0] += 1
        record[1] += spans
        record[2] += t.nbytes
        if decision.keep:
            out.spans.add_marks(t.marks)
            if out.decisions is not None:
                out.decisions[t.tid] = decision
            if t.log_count:
                out.logs.add_marks(t.lmarks)
                stats.logs[("trace", "kept")] += t.log_count
            self._kept.put(t.tid, decision)
            stats.decided[("kept", trigger)] += 1
        else:
            self._dropped.add(t.tid)
            stats.dropped_spans[NOT_SAMPLED] += spans
            if t.log_count:
                stats.logs[("trace", "dropped")] += t.log_count
                stats.dropped_logs[NOT_SAMPLED] += t.log_count
            stats.decided[("dropped", trigger)] += 1

    def _decide_logs_alone(self, t: Trace, out: Outcome) -> None:
        """No span of this trace arrived: the sender did not sample it (or sent it elsewhere)."""
        kept = dropped = 0
        policies = self.log_policies
        for content, run, _ in iter_runs(t.lmarks):
            records = ScopeLogs.FromString(run).log_records
            bodies = [r.SerializeToString() for r in records]
            keep = [
                body
                for rec, body in zip(records, bodies, strict=True)
                if policies.keep(rec.severity_number, rec.flags, t.tid, body)
            ]
            kept += len(keep)
            dropped += len(bodies) - len(keep)
            out.logs.add(content, keep)
        stats = self.stats
        stats.logs[("no_spans", "kept")] += kept
        if dropped:
            stats.logs[("no_spans", "dropped")] += dropped
            stats.dropped_logs[LOG_POLICY] += dropped


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
