"""The pure core: decision timing, combination of votes, late spans, budgets, logs, drain. A fake clock only:
time moves when ``Harness.advance`` says so."""

from __future__ import annotations

from fractions import Fraction

import pytest

from processors.tail_sampling.policies import threshold_for
from tests.processors.tail_sampling.builders import (
    Harness,
    config,
    log,
    logs_request,
    request,
    span,
    tid,
)

ERROR = 2
KEEP_ALL = [{"name": "all", "type": "always_sample"}]
ERRORS = {"name": "errors", "type": "status_code", "status_codes": ["ERROR"]}


# ------------------------------------------------------------------------------------------------ timing


def test_decided_decision_wait_after_the_first_span() -> None:
    h = Harness(config(KEEP_ALL, decision_wait_ms=10_000))
    t = tid()
    h.send(request(span(t)))
    h.advance(5)
    h.send(request(span(t)))  # a later span does not move the deadline
    h.advance(4.9)
    assert not h.kept_spans
    h.advance(0.1)
    assert len(h.kept_spans) == 2
    assert h.engine.stats.decided[("kept", "wait")] == 1


def test_root_span_and_quiet_decide_early() -> None:
    h = Harness(config(KEEP_ALL, decision_wait_ms=30_000, decision_wait_after_root_ms=2_000))
    t = tid()
    h.send(request(span(t)))
    h.advance(1)
    h.send(request(span(t, root=True)))
    h.advance(1.5)
    h.send(request(span(t)))  # a span after the root: wait for quiet again
    h.advance(1.9)
    assert not h.kept_spans
    h.advance(0.1)
    assert len(h.kept_spans) == 3
    assert h.engine.stats.decided[("kept", "root")] == 1


def test_rooted_trace_still_busy_at_decision_wait_is_capped_by_max_trace_duration() -> None:
    cfg = config(KEEP_ALL, decision_wait_ms=10_000, decision_wait_after_root_ms=2_000, max_trace_duration_ms=15_000)
    h = Harness(cfg)
    t = tid()
    h.send(request(span(t, root=True)))
    for _ in range(14):  # a span every second: never quiet for 2 s
        h.advance(1)
        h.send(request(span(t)))
    assert not h.kept_spans
    h.advance(1)
    assert len(h.kept_spans) == 15
    assert h.engine.stats.decided[("kept", "max_duration")] == 1


def test_quiet_window_longer_than_decision_wait_does_not_hold_rooted_traces_past_it() -> None:
    # decision_wait 2 s with the default 5 s quiet window: a rooted trace that went quiet is decided at 2 s, not
    # held to the 4 s max_trace_duration cap.
    h = Harness(config(KEEP_ALL, decision_wait_ms=2_000, decision_wait_after_root_ms=5_000))
    t = tid()
    h.send(request(span(t, root=True), span(t)))
    h.advance(0.5)
    h.send(request(span(t)))
    h.advance(1.9)
    assert not h.kept_spans
    h.advance(0.1)
    assert len(h.kept_spans) == 3


def test_trace_without_root_is_not_held_past_decision_wait() -> None:
    h = Harness(config(KEEP_ALL, decision_wait_ms=10_000, decision_wait_after_root_ms=2_000))
    t = tid()
    for _ in range(12):
        h.send(request(span(t)))
        h.advance(1)
    assert h.engine.stats.decided[("kept", "wait")] == 1
    assert h.engine.held_traces == 0


def test_tick_limit_splits_the_work() -> None:
    h = Harness(config(KEEP_ALL, decision_wait_ms=1000))
    for _ in range(25):
        h.send(request(span(tid())))
    h.now += 1
    from processors.tail_sampling.engine import Outcome

    out = Outcome()
    assert h.engine.tick(h.now, out, limit=10) is True
    assert out.spans.items == 10
    while h.engine.tick(h.now, out, limit=10):
        pass
    assert out.spans.items == 25
    assert h.engine.held_traces == 0


# ---------------------------------------------------------------------------------------- combination


def test_any_drop_wins_over_any_sample() -> None:
    drop = {
        "name": "no-health",
        "type": "drop",
        "drop_sub_policy": [{"name": "h", "type": "string_attribute", "key": "http.route", "values": ["/health"]}],
    }
    h = Harness(config([ERRORS, drop, *KEEP_ALL], decision_wait_ms=1000))
    health_error, normal = tid(), tid()
    h.send(request(span(health_error, status=ERROR, attrs={"http.route": "/health"}), span(normal)))
    h.advance(1)
    assert h.kept_traces == {normal}
    votes = {(p, o): n for p, o, n in h.engine.policies.take_votes()}
    assert votes[("no-health", "dropped")] == 1
    assert ("errors", "sampled") not in votes  # a dropped trace is shown to no sampling policy
    assert votes[("all", "sampled")] == 1


def test_any_sample_keeps_and_nothing_matching_drops() -> None:
    slow = {"name": "slow", "type": "latency", "threshold_ms": 500}
    h = Harness(config([ERRORS, slow], decision_wait_ms=1000))
    error, slow_t, boring = tid(), tid(), tid()
    h.send(request(span(error, status=ERROR), span(slow_t, duration_ms=600), span(boring)))
    h.advance(1)
    assert h.kept_traces == {error, slow_t}
    assert h.engine.stats.dropped_spans["not_sampled"] == 1


def test_sample_on_first_match_stops_at_the_first_sampler() -> None:
    limiter = {"name": "limit", "type": "rate_limiting", "spans_per_second": 1, "burst_capacity": 1}
    both = [ERRORS, limiter]
    for first_match, limiter_votes in ((False, 2), (True, 1)):
        h = Harness(config(both, decision_wait_ms=1000, sample_on_first_match=first_match))
        h.send(request(span(tid(), status=ERROR)))
        h.send(request(span(tid())))
        h.advance(1)
        votes = h.engine.policies.take_votes()
        assert sum(n for p, _, n in votes if p == "limit") == limiter_votes


# -------------------------------------------------------------------------------------------- late spans


def test_late_span_of_a_kept_trace_is_sent_at_once() -> None:
    h = Harness(config([ERRORS], decision_wait_ms=1000))
    t = tid()
    h.send(request(span(t, status=ERROR)))
    h.advance(1)
    before = len(h.kept_spans)
    late = span(t)
    h.send(request(late))  # no tick needed: it follows the cached decision
    assert late.span_id in h.kept_spans
    assert len(h.kept_spans) == before + 1
    assert h.engine.held_traces == 0
    assert h.engine.stats.late_spans["kept"] == 1


def test_late_span_of_a_dropped_trace_is_dropped_not_decided_again() -> None:
    h = Harness(config([ERRORS], decision_wait_ms=1000))
    t = tid()
    h.send(request(span(t)))
    h.advance(1)
    h.send(request(span(t)))
    assert h.engine.held_traces == 0
    h.advance(5)
    assert not h.kept_spans
    assert h.engine.stats.late_spans["dropped"] == 1
    assert h.engine.stats.dropped_spans["late_not_sampled"] == 1


def test_late_error_span_is_never_dropped_by_the_filter_alone() -> None:
    h = Harness(config([ERRORS], decision_wait_ms=1000))
    t = tid()
    h.send(request(span(t)))
    h.advance(1)
    late_error = span(t, status=ERROR)
    h.send(request(late_error))
    assert h.engine.held_traces == 1  # buffered again, decided by the policies
    h.advance(1)
    assert late_error.span_id in h.kept_spans
    assert h.engine.stats.late_spans["error_rechecked"] == 1


def test_without_decision_cache_late_spans_start_a_new_trace() -> None:
    cache = {"sampled_cache_size": 0, "non_sampled_cache_size": 0}
    h = Harness(config([ERRORS], decision_wait_ms=1000, decision_cache=cache))
    t = tid()
    h.send(request(span(t, status=ERROR)))
    h.advance(1)
    h.send(request(span(t)))
    assert h.engine.held_traces == 1


# ---------------------------------------------------------------------------------------------- budgets


def test_num_traces_budget_decides_the_oldest_instead_of_dropping() -> None:
    h = Harness(config([ERRORS], decision_wait_ms=60_000, num_traces=3))
    ids = [tid() for _ in range(5)]
    for i, t in enumerate(ids):
        h.send(request(span(t, status=ERROR if i < 2 else 0)))
        h.advance(0.001)
    assert h.engine.held_traces == 3
    assert h.kept_traces == set(ids[:2])  # decided early with what had arrived: both errors kept
    assert h.engine.stats.decided[("kept", "budget")] == 2


def test_byte_budget_decides_the_oldest() -> None:
    h = Harness(config(KEEP_ALL, decision_wait_ms=60_000, max_bytes=2048))
    ids = [tid() for _ in range(10)]
    for t in ids:
        h.send(request(span(t, attrs={"pad": "x" * 300})))
    assert h.engine.held_bytes <= 2048
    assert 0 < h.engine.held_traces < 10
    assert ids[0] in h.kept_traces
    assert ids[-1] not in h.kept_traces
    assert h.engine.stats.decided[("kept", "budget")] == 10 - h.engine.held_traces


def test_admission_refuses_what_cannot_fit_next_to_the_backlog() -> None:
    h = Harness(config(KEEP_ALL, max_bytes=10_000))
    assert h.engine.admit(1000, held_elsewhere=0) is None
    assert h.engine.admit(1000, held_elsewhere=9500) is not None  # would not fit at all
    assert h.engine.admit(100, held_elsewhere=6000) is not None  # backlog above half the budget


# ----------------------------------------------------------------------------------------- determinism


def test_two_instances_agree_on_probabilistic_decisions() -> None:
    policies = [{"name": "p", "type": "probabilistic", "sampling_percentage": 20}]
    a, b = Harness(config(policies, decision_wait_ms=1000)), Harness(config(policies, decision_wait_ms=3000))
    ids = [tid() for _ in range(1000)]
    for t in ids:
        a.send(request(span(t)))
    for t in reversed(ids):  # another order, another timing
        b.send(request(span(t)))
    a.advance(1)
    b.advance(3)
    assert a.kept_traces == b.kept_traces
    assert 150 < len(a.kept_traces) < 250


# ------------------------------------------------------------------------------------------------ logs


def test_logs_follow_their_trace_decision() -> None:
    h = Harness(config([ERRORS], decision_wait_ms=1000))
    kept_t, dropped_t = tid(), tid()
    h.send_logs(logs_request(log(kept_t, body="k1"), log(dropped_t, body="d1")))  # logs may come first
    h.send(request(span(kept_t, status=ERROR), span(dropped_t)))
    h.send_logs(logs_request(log(kept_t, body="k2"), log(dropped_t, body="d2")))
    assert h.log_bodies() == []  # waiting with their trace
    h.advance(1)
    assert h.log_bodies() == ["k1", "k2"]
    h.send_logs(logs_request(log(kept_t, body="k3"), log(dropped_t, body="d3")))  # late logs follow too
    assert h.log_bodies() == ["k1", "k2", "k3"]
    assert h.engine.stats.logs[("late", "dropped")] == 1


def test_logs_without_trace_id_pass_through_unchanged() -> None:
    h = Harness(config(KEEP_ALL))
    assert h.send_logs(logs_request(log(body="a"), log(body="b"))) is True
    assert h.log_bodies() == ["a", "b"]


def test_logs_whose_trace_shows_no_span_honour_the_sampled_flag_then_log_policies() -> None:
    log_policies = [
        {"name": "warn+", "min_severity": "WARN"},
        {"name": "info-", "max_severity": "INFO", "sampling_percentage": 0},
    ]
    h = Harness(config(KEEP_ALL, decision_wait_ms=1000, log_policies=log_policies))
    unsampled, sampled = tid(), tid()
    h.send_logs(
        logs_request(
            log(unsampled, severity=17, body="error"),  # >= WARN: kept
            log(unsampled, severity=9, body="info"),  # <= INFO at 0%: dropped
            log(sampled, severity=9, flags=0x01, body="sampled-info"),  # the sender sampled its trace: kept
        )
    )
    h.advance(1)
    assert h.log_bodies() == ["error", "sampled-info"]
    assert h.engine.stats.logs[("no_spans", "dropped")] == 1


def test_log_policies_apply_to_logs_without_trace_id() -> None:
    rules = [{"name": "info-10", "max_severity": "INFO", "sampling_percentage": 10}]
    h = Harness(config(KEEP_ALL, log_policies=rules))
    records = [log(severity=9, body=f"i{i}") for i in range(2000)] + [log(severity=17, body="e")]
    assert h.send_logs(logs_request(*records)) is False
    kept = h.log_bodies()
    assert "e" in kept  # no rule matches ERROR: kept
    assert 120 < len(kept) < 290


def test_log_sampling_on_trace_id_keeps_or_drops_all_records_of_a_trace() -> None:
    rules = [{"name": "half", "sampling_percentage": 50}]
    threshold = threshold_for(Fraction(1, 2))
    h = Harness(config(KEEP_ALL, decision_wait_ms=1000, log_policies=rules))
    hi, lo = tid(randomness=threshold), tid(randomness=threshold - 1)
    h.send_logs(logs_request(*(log(hi, body="hi") for _ in range(3)), *(log(lo, body="lo") for _ in range(3))))
    h.advance(1)
    assert h.log_bodies() == ["hi", "hi", "hi"]


# ----------------------------------------------------------------------------------------------- drain


@pytest.mark.parametrize("decide", [True, False])
def test_drain_decides_or_drops_everything_held(decide: bool) -> None:
    h = Harness(config([ERRORS], decision_wait_ms=60_000))
    error, normal = tid(), tid()
    h.send(request(span(error, status=ERROR), span(normal)))
    h.send_logs(logs_request(log(error, body="e")))
    h.drain(decide)
    assert h.engine.held_traces == 0
    assert h.engine.held_bytes == 0
    assert h.engine.held_spans == 0
    if decide:
        assert h.kept_traces == {error}
        assert h.log_bodies() == ["e"]
        assert h.engine.stats.decided[("kept", "shutdown")] == 1
    else:
        assert not h.kept_spans
        assert h.engine.stats.dropped_spans["shutdown"] == 2
        assert h.engine.stats.dropped_logs["shutdown"] == 1


def test_held_counters_return_to_zero() -> None:
    h = Harness(config([ERRORS], decision_wait_ms=1000))
    for _ in range(50):
        t = tid()
        h.send(request(span(t), span(t, status=ERROR)))
        h.send_logs(logs_request(log(t)))
    assert h.engine.held_spans == 100
    assert h.engine.held_logs == 50
    assert h.engine.held_bytes > 0
    h.advance(1)
    assert (h.engine.held_traces, h.engine.held_spans, h.engine.held_logs, h.engine.held_bytes) == (0, 0, 0, 0)


def test_late_error_span_is_rechecked_even_when_no_policy_reads_status() -> None:
    h = Harness(config([{"name": "none", "type": "probabilistic", "sampling_percentage": 0}], decision_wait_ms=1000))
    t = tid()
    h.send(request(span(t)))
    h.advance(1)
    h.send(request(span(t, status=ERROR)))
    assert h.engine.held_traces == 1
    assert h.engine.stats.late_spans["error_rechecked"] == 1
    h.send(request(span(tid())))  # a new trace is not mistaken for a late one
    assert h.engine.stats.late_spans["dropped"] == 0


def test_max_trace_duration_defaults_to_twice_decision_wait() -> None:
    h = Harness(config(KEEP_ALL, decision_wait_ms=2_000, decision_wait_after_root_ms=1_000))
    t = tid()
    h.send(request(span(t, root=True)))
    for _ in range(7):  # a span every half second: never quiet for 1 s
        h.advance(0.5)
        h.send(request(span(t)))
    assert not h.kept_spans
    h.advance(0.5)  # 4 s after the first span
    assert len(h.kept_spans) == 8
    assert h.engine.stats.decided[("kept", "max_duration")] == 1
