"""The buffered traces, stored as columns so that holding a trace costs the cyclic garbage collector nothing.

Why columns: with Python objects per trace (an object for its state, a list for its spans), every buffered trace
is a GC-tracked object that lives for seconds, gets promoted to the oldest generation, and is walked by every
full collection. Measured at steady state with 1.5M spans held: 3.5 us per span with the GC on against 2.2 us
with it off; with this table both are ~2.2 (bench/results/tail_sampling.md). Here a trace is a slot number:

- ``index`` maps trace id -> slot: a dict of bytes to ints, which CPython does not even track;
- numbers live in ``array`` columns (first, last, lo, hi, flags, counts, bytes);
- items live in one flat tuple per slot (marks.py: one joined blob per request the trace came in, with the
  (resource, scope) pairs and counts of its runs). A tuple holding only bytes, ints and untracked pairs is
  untracked by the collector the first time it sees it, so the lists holding these tuples cost a pointer check
  per slot, and deciding a trace frees a few objects, not one per span.

Slots are reused (free list), so a queue entry names a trace as ``(slot, tid)`` and is valid only while
``tids[slot] == tid``.
"""

from __future__ import annotations

from array import array
from typing import Any

from processors.tail_sampling.trace import NO_START, ROOT, Trace

EMPTY: tuple[Any, ...] = ()


class TraceTable:
    def __init__(self) -> None:
        self.index: dict[bytes, int] = {}
        self.tids: list[bytes | None] = []
        self.first = array("d")  # arrival of the first span or record (processor clock, seconds)
        self.last = array("d")  # arrival of the latest span
        self.root_due = array("d")  # when the root rule looks at the trace next
        self.lo = array("Q")  # earliest span start, unix ns
        self.hi = array("Q")  # latest span end, unix ns
        self.flags = array("B")  # ROOT | STATUS_OK | STATUS_ERROR seen
        self.coded = array("L")  # spans whose status is not UNSET
        self.spans = array("L")
        self.logs = array("L")
        self.nbytes = array("Q")  # span bodies held
        self.lbytes = array("Q")  # log record bodies held
        self.marks: list[tuple[Any, ...]] = []
        self.lmarks: list[tuple[Any, ...]] = []
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self.index)

    def live(self, slot: int, tid: bytes) -> bool:
        return self.tids[slot] == tid

    def open(
        self,
        tid: bytes,
        now: float,
        lo: int = NO_START,
        hi: int = 0,
        flags: int = 0,
        coded: int = 0,
        marks: tuple[Any, ...] = EMPTY,
        spans: int = 0,
        nbytes: int = 0,
    ) -> int:
        """A slot for a trace not buffered yet, holding its first spans (if any)."""
        if self._free:
            slot = self._free.pop()
            self.tids[slot] = tid
            self.first[slot] = self.last[slot] = now
            self.root_due[slot] = 0.0
            self.lo[slot] = lo
            self.hi[slot] = hi
            self.flags[slot] = flags
            self.coded[slot] = coded
            self.spans[slot] = spans
            self.nbytes[slot] = nbytes
            self.marks[slot] = marks
            self.logs[slot] = self.lbytes[slot] = 0
        else:
            slot = len(self.tids)
            self.tids.append(tid)
            self.first.append(now)
            self.last.append(now)
            self.root_due.append(0.0)
            self.lo.append(lo)
            self.hi.append(hi)
            self.flags.append(flags)
            self.coded.append(coded)
            self.spans.append(spans)
            self.nbytes.append(nbytes)
            self.marks.append(marks)
            self.logs.append(0)
            self.lbytes.append(0)
            self.lmarks.append(EMPTY)
        self.index[tid] = slot
        return slot

    def add_logs(self, slot: int, marks: tuple[Any, ...], n: int, nbytes: int) -> None:
        self.logs[slot] += n
        self.lbytes[slot] += nbytes
        self.lmarks[slot] += marks

    def close(self, slot: int) -> Trace:
        """Take a trace out of the table, as a Trace object for the decision (short-lived: the GC only sees
        it young)."""
        tid = self.tids[slot]
        assert tid is not None
        t = Trace(tid, self.first[slot])
        t.lo, t.hi = self.lo[slot], self.hi[slot]
        flags = self.flags[slot]
        t.status, t.root = flags & ~ROOT, bool(flags & ROOT)
        t.coded, t.span_count, t.nbytes = self.coded[slot], self.spans[slot], self.nbytes[slot]
        t.log_count, t.lbytes = self.logs[slot], self.lbytes[slot]
        t.marks, t.lmarks = self.marks[slot], self.lmarks[slot]
        del self.index[tid]
        self.tids[slot] = None
        self.marks[slot] = self.lmarks[slot] = EMPTY
        self._free.append(slot)
        return t
