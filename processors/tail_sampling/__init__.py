"""The ``tail_sampling`` processor: buffer spans by trace, decide per trace with collector-compatible policies,
send on the kept traces; log records carrying a trace id follow their trace's decision.

    config.py      strict config Structs (policies as a tagged union on ``type``)
    wire.py        requests split into headers and item bodies in C; requests built back by joining
    columns.py     span fields (trace id, times, status, root) read as columns in C, with verified fallback
    marks.py       how a buffered trace holds its items: one joined blob per trace and request
    table.py       buffered traces as columns, so the cyclic GC has nothing per trace to walk
    trace.py       a trace at decision time, and the lazily decoded view policies read
    policies.py    pure policy evaluators and how their votes combine
    logpolicy.py   log records that follow no trace decision
    cache.py       decision cache: kept ids (LRU), dropped ids (compact filter)
    engine.py      the pure core (time passed in): ingest, over decide.py
    decide.py      the pure core's other half: held traces, timing, budgets, decide, emit
    outcome.py     what a call of the core hands the shell: requests to send, counts, latency histogram
    annotate.py    optional annotations on kept spans
    metrics.py     self-metrics
    processor.py   the async shell: consume, timer task, delivery with a bounded backlog
    factory.py     FACTORY

User documentation: docs/tail_sampling.md.
"""

from processors.tail_sampling.factory import FACTORY

__all__ = ["FACTORY"]
