"""The deciding half of the tail sampling core: the held traces, their timing and budgets, the decision.

``engine.TailSampler`` is this ``Decider`` plus ingest (engine.py): one object at run time, so the split costs the
hot paths nothing; it is a split of the text, so that each half reads in one sitting. The state of the whole core
is set up here (``Decider.__init__``); ingest fills the table, the arrival queue and the counters, this half
empties them.

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
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator

from opentelemetry.proto.logs.v1.logs_pb2 import ScopeLogs

from processors.tail_sampling import config as c
from processors.tail_sampling.cache import DroppedFilter, KeptCache
from processors.tail_sampling.config import TailSamplingConfig
from processors.tail_sampling.logpolicy import LogPolicies
from processors.tail_sampling.marks import iter_runs
from processors.tail_sampling.outcome import (
    BUDGET,
    DROPPED_ON_SHUTDOWN,
    LOG_POLICY,
    MAX_DURATION,
    NOT_SAMPLED,
    ROOT,
    SHUTDOWN,
    WAIT,
    Histogram,
    Outcome,
    Stats,
)
from processors.tail_sampling.policies import Decision, PolicySet, uses
from processors.tail_sampling.table import TraceTable
from processors.tail_sampling.trace import ROOT as ROOT_FLAG
from processors.tail_sampling.trace import HeaderAttributes, Trace, TraceView
from processors.tail_sampling.wire import Interner


class Decider:
    """Holds the traces, times them, keeps the budgets and decides; ``engine.TailSampler`` adds ingest."""

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

    # --------------------------------------------------------------------------------------- decisions

    def _schedule_root(self, slot: int, tid: bytes, due: float) -> None:
        self._table.root_due[slot] = due
        heapq.heappush(self._root_due, (due, next(self._seq), slot, tid))

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
