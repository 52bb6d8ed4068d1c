"""Loss accounting on synthetic runs where the right answer is known."""

from __future__ import annotations

import time

from bench import accounting
from bench.accounting import LoadCounts, TraceFacts, account, acked_trace_facts, split_drops
from bench.sinks import SinkState
from bench.stamp import encode
from bench.workload import Shape, build_units


def test_nothing_lost_when_every_item_is_exported_decided_or_counted() -> None:
    load = LoadCounts(offered=1000, acked=900, refused=100)
    acc = account("traces", load, exported=300, drops={"not_sampled": 550, "shutdown": 50}, daemon_accepted=900)
    assert (acc.dropped_on_purpose, acc.counted_drops, acc.lost) == (550, {"shutdown": 50}, 0)
    assert acc.problems == []


def test_an_uncounted_gap_is_lost_and_reported() -> None:
    acc = account("traces", LoadCounts(offered=100, acked=100), exported=90, drops={}, daemon_accepted=100)
    assert acc.lost == 10
    assert any("lost" in p for p in acc.problems)


def test_the_daemons_own_count_is_cross_checked() -> None:
    acc = account("logs", LoadCounts(offered=10, acked=10), exported=10, drops={}, daemon_accepted=7)
    assert acc.lost == 0
    assert any("daemon counted 7" in p for p in acc.problems)


def test_discarding_exporters_count_as_decisions() -> None:
    acc = account("traces", LoadCounts(offered=50, acked=50), exported=0, drops={}, discard=True)
    assert (acc.dropped_on_purpose, acc.lost, acc.problems) == (50, 0, [])


def test_split_drops_by_reason() -> None:
    decided, counted = split_drops({"not_sampled": 5, "queue_full": 2, "x": 0}, accounting.ON_PURPOSE_REASONS)
    assert (decided, counted) == (5, {"queue_full": 2})


def test_id_checks_find_missing_required_and_unacknowledged_traces() -> None:
    facts = [TraceFacts(b"a" * 16, 3, True), TraceFacts(b"b" * 16, 3, False), TraceFacts(b"c" * 16, 3, True)]
    exported = {b"a" * 16, b"z" * 16}
    acc = account("traces", LoadCounts(offered=9, acked=9), 3, {"not_sampled": 3}, 9, facts, exported)
    assert acc.acked_traces == 3
    assert acc.exported_acked_traces == 1
    assert acc.missing_required_traces == 1  # c had to be kept
    assert acc.unacknowledged_exported_traces == 1  # z was never acknowledged
    assert acc.lost == 3  # 9 acked - 3 exported - 3 decided: c's spans are gone
    assert len(acc.problems) == 2


def test_synthetic_sampling_run_through_the_sink() -> None:
    """Acknowledge every unit, let a 'sampler' keep the error and slow traces plus a known set, feed the kept spans to
    the real SinkState, and check the accounting reproduces exactly what the sampler did."""
    shape = Shape(spans_per_request=300, error_ratio=0.2, slow_ratio=0.2, logs_per_trace=0)
    units = build_units(shape, 6, seed=7)
    infos = [[(i.suffix, i.spans, i.logs, i.error, i.slow, i.has_spans) for i in u.infos] for u in units]
    now = time.time_ns()
    acked = [(k, now + k, 1) for k in range(len(units))]
    sink = SinkState()
    kept_spans = dropped_spans = 0
    for (_index, stamp, _), unit in zip(acked, units, strict=True):
        enc, _ = encode(unit, "grpc")
        assert enc is not None
        request = unit.traces
        assert request is not None
        stamped = type(request)()
        stamped.ParseFromString(enc.stamped(stamp))
        keep = {info.suffix for n, info in enumerate(unit.infos) if info.error or info.slow or n % 3 == 0}
        for rs in stamped.resource_spans:
            for ss in rs.scope_spans:
                kept = [s for s in ss.spans if bytes(s.trace_id[8:]) in keep]
                dropped_spans += len(ss.spans) - len(kept)
                kept_spans += len(kept)
                del ss.spans[:]
                ss.spans.extend(kept)
        sink.traces(stamped.SerializeToString())
    facts = acked_trace_facts(infos, acked, "error_or_slow")
    total = sum(u.span_count for u in units)
    acc = account(
        "traces",
        LoadCounts(offered=total, acked=total),
        sink.items["traces"],
        {"not_sampled": dropped_spans},
        total,
        facts,
        sink.span_ids,
    )
    assert sink.items["traces"] == kept_spans
    assert (acc.lost, acc.missing_required_traces, acc.unacknowledged_exported_traces) == (0, 0, 0)
    assert acc.exported_acked_traces == len(sink.span_ids)
    assert acc.problems == []
    # Losing one required trace's spans at the sink is caught by both checks.
    victim = next(f for f in facts if f.required)
    sink.span_ids.discard(victim.trace_id)
    acc = account(
        "traces",
        LoadCounts(offered=total, acked=total),
        sink.items["traces"] - victim.spans,
        {"not_sampled": dropped_spans},
        total,
        facts,
        sink.span_ids,
    )
    assert (acc.lost, acc.missing_required_traces) == (victim.spans, 1)


def test_acked_trace_facts_respects_the_signal_mask() -> None:
    infos = [[(b"s" * 8, 4, 2, False, False, True), (b"t" * 8, 0, 3, True, False, False)]]
    traces = acked_trace_facts(infos, [(0, 5, 1)], "all", bit=1)
    logs = acked_trace_facts(infos, [(0, 5, 2)], "error_or_slow", bit=2)
    assert [(f.trace_id[8:], f.spans, f.required) for f in traces] == [(b"s" * 8, 4, True)]
    assert [(f.trace_id[8:], f.spans, f.required) for f in logs] == [(b"s" * 8, 2, False), (b"t" * 8, 3, True)]
    assert traces[0].trace_id[:8] == (5).to_bytes(8, "big")
