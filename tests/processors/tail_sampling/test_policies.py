"""Every policy type, through the pure core: one trace in, wait out, kept or not."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from processors.tail_sampling.policies import MAX_THRESHOLD, randomness, threshold_for, threshold_hex
from tests.processors.tail_sampling.builders import Harness, config, request, span, tid

ERROR, OK = 2, 1


def kept(policy: dict[str, Any], *spans: Span, resource: dict[str, Any] | None = None, **scope: Any) -> bool:
    h = Harness(config([{"name": "p", **policy}], decision_wait_ms=1000))
    h.send(request(*spans, resource=resource, **scope))
    h.advance(1.0)
    assert h.engine.held_traces == 0
    return bool(h.kept_spans)


def test_always_sample() -> None:
    t = tid()
    assert kept({"type": "always_sample"}, span(t), span(t))


@pytest.mark.parametrize(
    ("durations", "threshold", "upper", "expected"),
    [
        ([(0, 100)], 100, 0, True),  # inclusive lower bound
        ([(0, 99)], 100, 0, False),
        ([(0, 10), (150, 10)], 100, 0, True),  # trace duration = latest end - earliest start, not one span
        ([(0, 500)], 100, 400, False),  # above the upper bound
        ([(0, 400)], 100, 400, True),  # inclusive upper bound
    ],
)
def test_latency(durations: list[tuple[int, int]], threshold: int, upper: int, expected: bool) -> None:
    t = tid()
    spans = [span(t, start_ms=s, duration_ms=d) for s, d in durations]
    assert kept({"type": "latency", "threshold_ms": threshold, "upper_threshold_ms": upper}, *spans) is expected


@pytest.mark.parametrize(
    ("codes", "statuses", "expected"),
    [
        (["ERROR"], [0, 0, ERROR], True),
        (["ERROR"], [0, OK], False),
        (["OK"], [0, OK], True),
        (["UNSET"], [OK, OK], False),
        (["UNSET"], [OK, 0], True),
        (["OK", "ERROR"], [0, 0], False),
    ],
)
def test_status_code(codes: list[str], statuses: list[int], expected: bool) -> None:
    t = tid()
    assert kept({"type": "status_code", "status_codes": codes}, *(span(t, status=s) for s in statuses)) is expected


def test_probabilistic_uses_the_trace_id_randomness() -> None:
    threshold = threshold_for(Fraction(1, 10))
    assert threshold_hex(threshold) == "e6666666666666"  # 0.9 x 2^56, rounded
    policy = {"type": "probabilistic", "sampling_percentage": 10}
    assert kept(policy, span(tid(randomness=threshold)))  # randomness >= threshold: kept
    assert not kept(policy, span(tid(randomness=threshold - 1)))
    assert kept({"type": "probabilistic", "sampling_percentage": 100}, span(tid(randomness=0)))
    assert not kept({"type": "probabilistic", "sampling_percentage": 0}, span(tid(randomness=MAX_THRESHOLD - 1)))


def test_probabilistic_rate_is_close_to_the_percentage() -> None:
    h = Harness(config([{"name": "p", "type": "probabilistic", "sampling_percentage": 25}], decision_wait_ms=1000))
    ids = [tid() for _ in range(4000)]
    for t in ids:
        h.send(request(span(t)))
    h.advance(1.0)
    share = len(h.kept_traces) / len(ids)
    assert 0.22 < share < 0.28
    assert h.kept_traces == {t for t in ids if randomness(t) >= threshold_for(Fraction(1, 4))}


def test_probabilistic_with_salt_matches_the_collectors_fnv_hash() -> None:
    # FNV-1a 64 over salt + trace id, as the collector's tail sampling processor computes it.
    def fnv(data: bytes) -> int:
        h = 0xCBF29CE484222325
        for b in data:
            h = ((h ^ b) * 0x100000001B3) % (1 << 64)
        return h

    ids = [tid() for _ in range(500)]
    h = Harness(config([{"name": "p", "type": "probabilistic", "sampling_percentage": 30, "hash_salt": "s1"}]))
    for t in ids:
        h.send(request(span(t)))
    h.advance(31)
    limit = int(Fraction(3, 10) * ((1 << 64) - 1))
    assert h.kept_traces == {t for t in ids if fnv(b"s1" + t) <= limit}
    assert 0 < len(h.kept_traces) < len(ids)


@pytest.mark.parametrize(
    ("policy", "where", "value", "expected"),
    [
        ({"values": ["a", "b"]}, "span", "b", True),
        ({"values": ["a", "b"]}, "span", "c", False),
        ({"values": ["a"]}, "resource", "a", True),
        ({"values": ["a"]}, "scope", "a", True),
        ({"values": ["/api/.+"], "enabled_regex_matching": True}, "span", "/api/users", True),
        ({"values": ["/api/.+"], "enabled_regex_matching": True}, "span", "/health", False),
        ({"values": ["^/health$"], "enabled_regex_matching": True, "invert_match": True}, "span", "/health", False),
        ({"values": ["a"], "invert_match": True}, "span", "c", True),
        ({"values": ["a"], "invert_match": True}, None, None, True),  # key absent: not matched, inverted
        ({"values": ["1"]}, "span", 1, False),  # only string values count
    ],
)
def test_string_attribute(policy: dict[str, Any], where: str | None, value: Any, expected: bool) -> None:
    t = tid()
    attrs = {"k": value}
    s = span(t, attrs=attrs if where == "span" else None)
    resource = {"service.name": "x", **(attrs if where == "resource" else {})}
    scope_attrs = attrs if where == "scope" else None
    result = kept({"type": "string_attribute", "key": "k", **policy}, s, resource=resource, scope_attrs=scope_attrs)
    assert result is expected


@pytest.mark.parametrize(
    ("bounds", "value", "expected"),
    [
        ({"min_value": 500}, 503, True),
        ({"min_value": 500}, 499, False),
        ({"min_value": 500, "max_value": 599}, 599, True),
        ({"min_value": 500, "max_value": 599}, 600, False),
        ({"max_value": 1.5}, 1.25, True),  # doubles too
        ({"min_value": 0}, True, False),  # a boolean is not a number
        ({"min_value": 500, "invert_match": True}, 200, True),
    ],
)
def test_numeric_attribute(bounds: dict[str, Any], value: Any, expected: bool) -> None:
    t = tid()
    policy = {"type": "numeric_attribute", "key": "http.status_code", **bounds}
    assert kept(policy, span(t), span(t, attrs={"http.status_code": value})) is expected


@pytest.mark.parametrize(
    ("policy_value", "invert", "attr", "expected"),
    [(True, False, True, True), (True, False, False, False), (False, False, False, True), (True, True, True, False)],
)
def test_boolean_attribute(policy_value: bool, invert: bool, attr: bool, expected: bool) -> None:
    policy = {"type": "boolean_attribute", "key": "force", "value": policy_value, "invert_match": invert}
    assert kept(policy, span(tid(), attrs={"force": attr})) is expected


@pytest.mark.parametrize(("n", "expected"), [(1, False), (2, True), (4, True), (5, False)])
def test_span_count_is_inclusive(n: int, expected: bool) -> None:
    t = tid()
    assert kept({"type": "span_count", "min_spans": 2, "max_spans": 4}, *(span(t) for _ in range(n))) is expected


@pytest.mark.parametrize(
    ("state", "expected"), [("vendor=a,key3=value2", True), ("key3=value9", False), ("", False), ("key3", False)]
)
def test_trace_state(state: str, expected: bool) -> None:
    t = tid()
    policy = {"type": "trace_state", "key": "key3", "values": ["value1", "value2"]}
    assert kept(policy, span(t), span(t, trace_state=state)) is expected


@pytest.mark.parametrize(
    ("flags", "sampled", "expected"), [(0x301, True, True), (0x300, True, False), (0, False, True)]
)
def test_trace_flags(flags: int, sampled: bool, expected: bool) -> None:
    assert kept({"type": "trace_flags", "sampled": sampled}, span(tid(), flags=flags)) is expected


def test_rate_limiting_is_a_token_bucket_in_spans() -> None:
    policy = {"name": "r", "type": "rate_limiting", "spans_per_second": 10, "burst_capacity": 10}
    h = Harness(config([policy], decision_wait_ms=1000))
    traces = [tid() for _ in range(4)]
    for t in traces:
        h.send(request(*(span(t) for _ in range(4))))  # 4 x 4 spans against a bucket of 10
    h.advance(1.0)
    assert len(h.kept_traces) == 2
    later = tid()
    h.send(request(*(span(later) for _ in range(4))))
    h.advance(1.0)  # one second refills 10 tokens (capped at the burst), 2 left before
    assert later in h.kept_traces


def test_bytes_limiting_counts_span_bytes() -> None:
    policy = {"name": "b", "type": "bytes_limiting", "bytes_per_second": 1000, "burst_capacity": 1000}
    h = Harness(config([policy], decision_wait_ms=1000))
    small, big = tid(), tid()
    h.send(request(span(small, attrs={"x": "a" * 100})))
    h.send(request(span(big, attrs={"x": "a" * 2000})))
    h.advance(1.0)
    assert h.kept_traces == {small}


def test_and_needs_every_sub_policy() -> None:
    policy = {
        "type": "and",
        "and_sub_policy": [
            {"name": "svc", "type": "string_attribute", "key": "service.name", "values": ["checkout"]},
            {"name": "err", "type": "status_code", "status_codes": ["ERROR"]},
        ],
    }
    t1, t2 = tid(), tid()
    assert kept(policy, span(t1, status=ERROR), resource={"service.name": "checkout"})
    assert not kept(policy, span(t2, status=ERROR), resource={"service.name": "cart"})


def test_not_inverts_its_sub_policy() -> None:
    policy = {"type": "not", "not_sub_policy": {"name": "h", "type": "string_attribute", "key": "r", "values": ["/h"]}}
    assert not kept(policy, span(tid(), attrs={"r": "/h"}))
    assert kept(policy, span(tid(), attrs={"r": "/x"}))


def test_composite_allocates_rates_in_policy_order() -> None:
    policy = {
        "name": "c",
        "type": "composite",
        "max_total_spans_per_second": 10,
        "policy_order": ["errors", "rest"],
        "composite_sub_policy": [
            {"name": "errors", "type": "status_code", "status_codes": ["ERROR"]},
            {"name": "rest", "type": "always_sample"},
        ],
        "rate_allocation": [{"policy": "errors", "percent": 50}, {"policy": "rest", "percent": 50}],
    }
    h = Harness(config([policy], decision_wait_ms=1000))
    errors = [tid() for _ in range(3)]
    rest = [tid() for _ in range(3)]
    for t in errors:
        h.send(request(span(t, status=ERROR), span(t, status=ERROR)))  # 2 spans each, 5 allowed
    for t in rest:
        h.send(request(span(t), span(t)))
    h.advance(1.0)
    assert len(h.kept_traces & set(errors)) == 2
    assert len(h.kept_traces & set(rest)) == 2
