"""Annotations on kept spans: policy name, adjusted count, W3C threshold."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from processors.tail_sampling.annotate import ADJUSTED_COUNT_ATTRIBUTE, POLICY_ATTRIBUTE, combine_threshold
from processors.tail_sampling.policies import threshold_for
from tests.processors.tail_sampling.builders import Harness, config, request, span, tid

ALL_ON = {"policy_name": True, "adjusted_count": True, "tracestate_threshold": True}
TENTH = threshold_for(Fraction(1, 10))  # 0xe6666666666666
PROB = {"name": "baseline", "type": "probabilistic", "sampling_percentage": 10}
ERRORS = {"name": "errors", "type": "status_code", "status_codes": ["ERROR"]}


def _annotated(policies: list[dict[str, Any]], *spans: Any, annotations: dict[str, bool] = ALL_ON) -> list[Any]:
    h = Harness(config(policies, decision_wait_ms=1000, annotations=annotations))
    h.send(request(*spans))
    h.advance(1)
    return [s for r in h.spans_out for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]


def _attrs(s: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in s.attributes}


def test_probabilistic_alone_writes_adjusted_count_and_threshold() -> None:
    (s,) = _annotated([ERRORS, PROB], span(tid(randomness=TENTH)))
    attrs = _attrs(s)
    assert attrs[POLICY_ATTRIBUTE] == "baseline"
    assert attrs[ADJUSTED_COUNT_ATTRIBUTE] == pytest.approx(10.0)
    assert s.trace_state == "ot=th:e6666666666666"


def test_kept_by_another_policy_too_counts_one_and_writes_no_threshold() -> None:
    (s,) = _annotated([ERRORS, PROB], span(tid(randomness=TENTH), status=2, trace_state="a=b"))
    attrs = _attrs(s)
    assert attrs[POLICY_ATTRIBUTE] == "errors"
    assert attrs[ADJUSTED_COUNT_ATTRIBUTE] == 1.0
    assert s.trace_state == "a=b"


def test_salted_probabilistic_writes_no_threshold() -> None:
    salted = {**PROB, "sampling_percentage": 100, "hash_salt": "x"}
    (s,) = _annotated([salted], span(tid()))
    assert _attrs(s)[ADJUSTED_COUNT_ATTRIBUTE] == 1.0
    assert s.trace_state == ""


def test_annotations_are_off_by_default_and_each_switch_works_alone() -> None:
    (plain,) = _annotated([PROB], span(tid(randomness=TENTH)), annotations={})
    assert _attrs(plain) == {}
    assert plain.trace_state == ""
    (only_name,) = _annotated([PROB], span(tid(randomness=TENTH)), annotations={"policy_name": True})
    assert set(_attrs(only_name)) == {POLICY_ATTRIBUTE}
    assert only_name.trace_state == ""


def test_an_existing_annotation_is_replaced_not_duplicated() -> None:
    (s,) = _annotated([PROB], span(tid(randomness=TENTH), attrs={POLICY_ATTRIBUTE: "upstream"}))
    assert [kv.key for kv in s.attributes].count(POLICY_ATTRIBUTE) == 1


def test_late_spans_carry_the_decision_of_their_trace() -> None:
    h = Harness(config([PROB], decision_wait_ms=1000, annotations=ALL_ON))
    t = tid(randomness=TENTH)
    h.send(request(span(t)))
    h.advance(1)
    h.send(request(span(t)))
    late = h.spans_out[-1].resource_spans[0].scope_spans[0].spans[0]
    assert _attrs(late)[ADJUSTED_COUNT_ATTRIBUTE] == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("incoming", "expected"),
    [
        ("", "ot=th:e6666666666666"),
        ("vendor=x", "ot=th:e6666666666666,vendor=x"),
        ("ot=th:8", "ot=th:e6666666666666"),  # 50% upstream, 10% here: the larger threshold
        ("ot=th:f8", "ot=th:f8"),  # upstream already sampled harder: kept
        ("a=1,ot=th:c;foo:bar", "ot=th:e6666666666666;foo:bar,a=1"),  # other sub-keys kept, ot moves first
        ("ot=th:zz", "ot=th:e6666666666666"),  # invalid incoming threshold: replaced
        ("ot=rv:00112233445566", "ot=rv:00112233445566"),  # explicit randomness: not ours to describe
    ],
)
def test_combine_threshold(incoming: str, expected: str) -> None:
    assert combine_threshold(incoming, TENTH) == expected
