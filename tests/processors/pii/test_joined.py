"""Detection over the flagged values of a request joined (the engine's path) finds exactly what scanning each
value on its own finds, including where a match would run across the separator."""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.model import Signal
from processors.pii import wire
from processors.pii.actions import Rule
from processors.pii.bulk import passes_touching
from processors.pii.corpus import NEAR_MISSES, POSITIVES
from processors.pii.engine import Engine
from processors.pii.joined import SEPARATOR, position_free, scan_joined
from processors.pii.regex import Pattern
from processors.pii.scan import Doorkeeper
from tests.processors.pii.helpers import engine

FILLER = ["order", "done", "GET /api/v1/items?id=42", "retry 3", "v1.13.2 build 1700494603678", "x", "", "a-b"]
# A user rule whose class admits the separator (it runs into the next value when joined), and one anchored to
# the value's start and end (it must run value by value).
USER_RULES = [
    {"name": "session", "pattern": "sess=[^;]*"},
    {"name": "whole_ticket", "pattern": "^TCK-[0-9]{6}$"},
]


def _texts(rng: random.Random, n: int) -> list[str]:
    pieces = [s.text for s in POSITIVES] + [m.text for m in NEAR_MISSES] + FILLER + ["sess=abc", "TCK-123456"]
    texts = []
    for _ in range(n):
        parts = [rng.choice(pieces) for _ in range(rng.randint(1, 4))]
        texts.append(rng.choice([" ", "", "-", "=", ", ", "\x00", "\n"]).join(parts))
    return texts


def _key(regions: list[tuple[int, int, object, object, object]]) -> list[tuple[int, int, str]]:
    return sorted((r[0], r[1], r[2].name) for r in regions)  # type: ignore[attr-defined]


def _flagged(eng: Engine, texts: list[str]) -> tuple[list[bytes], list[int]]:
    """The values the bulk passes flag in a request holding ``texts``, and the passes touching each."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i, text in enumerate(texts):
        spans.add(name=f"s{i}").attributes.add(key="k", value={"string_value": text})
    raw = request.SerializeToString()
    starts, ends, hit_passes = eng.scanner.bulk.hits(raw)
    values, touched = [], []
    for kind, _, _, start, end, first, last in wire.locate(Signal.TRACES, raw, starts, ends)[0]:
        if kind != wire.KVS:
            continue
        _, _, value_kind, s, e, _ = wire.key_and_value(raw, start, end)
        if value_kind == wire.ANY_STRING and any(starts[k] < e and ends[k] > s for k in range(first, last)):
            values.append(raw[s:e])
            touched.append(passes_touching(hit_passes, first, last))
    return values, touched


def test_engine_path_equals_per_value_scan() -> None:
    eng = engine(rules=USER_RULES)
    values, touched = _flagged(eng, _texts(random.Random(3), 600))
    assert len(values) > 300
    joined = eng.scanner.regions_many(values, touched)
    found = 0
    for value, regions in zip(values, joined, strict=True):
        assert _key(regions) == _key(eng.scanner.regions(value)), value
        found += bool(regions)
    assert found > 200


def test_every_pass_asked_equals_per_value_scan() -> None:
    """With every pass marked as touching, joined detection is the per-value scan, value for value (texts
    that share a separator with their neighbours included)."""
    eng = engine(rules=USER_RULES)
    values = [t.encode() for t in _texts(random.Random(5), 400)]
    joined = eng.scanner.regions_many(values, [0b111] * len(values))
    for value, regions in zip(values, joined, strict=True):
        assert _key(regions) == _key(eng.scanner.regions(value)), value


def test_match_running_across_the_separator_is_redone_per_value() -> None:
    rule = Rule("session", "redact", 1)
    detector = (Pattern(rb"sess=[^;]*"), None, rule)
    values = [b"sess=abc", b"sess=def; x", b"plain", b"a sess=g"]
    assert SEPARATOR not in b"".join(values)
    found: list[list[object]] = [[] for _ in values]
    scan_joined(values, [detector], found, range(len(values)))  # type: ignore[arg-type,list-item]
    assert found == [
        [(0, 8, rule, rule.action, None)],
        [(0, 8, rule, rule.action, None)],
        [],
        [(2, 8, rule, rule.action, None)],
    ]


def test_anchored_user_rule_only_matches_a_whole_value() -> None:
    eng = engine(detectors=[], rules=USER_RULES[1:])
    values = [b"TCK-123456", b"id TCK-123456", b"TCK-123456 x"]
    regions = eng.scanner.regions_many(values, [0b111] * 3)
    assert [len(r) for r in regions] == [1, 0, 0]
    assert position_free("sess=[^;]*")
    assert position_free(r"\bid=\d+\b")
    assert not position_free("^TCK$")
    assert not position_free(r"x\z")


def test_mask_many_agrees_with_mask_and_fills_the_cache_from_a_values_second_sighting() -> None:
    eng = engine()
    values = [b"mail ann@example.com now", b"clean text", b"card 4111 1111 1111 1111"]
    expected = [
        (b"mail [REDACTED:email] now", ((("email", "redact"), 1),)),
        (None, ()),
        (b"card [REDACTED:credit_card]", ((("credit_card", "redact"), 1),)),
    ]
    for sighting in range(2):
        counts: dict[tuple[str, str], int] = {}
        assert eng.scanner.mask_many(values, [0b11] * 3, [True] * 3, counts) == expected
        assert counts == {("email", "redact"): 1, ("credit_card", "redact"): 1}
        if sighting == 0:
            assert eng.scanner.cached(values[0], True, {}) is None  # seen once: not remembered yet
    again: dict[tuple[str, str], int] = {}
    assert eng.scanner.cached(values[0], True, again) == expected[0]
    assert again == {("email", "redact"): 1}


def test_the_doorkeeper_says_yes_from_a_keys_second_sighting_and_forgets_after_its_window() -> None:
    door = Doorkeeper(bits_log2=16, window=64)
    keys = [f"value {i}".encode() for i in range(40)]
    first = [door.again(k) for k in keys]
    assert sum(first) <= 2  # a few may share a bit with an earlier key: let in early, never wrongly kept out
    assert all(door.again(k) for k in keys)
    for i in range(64):  # new keys fill the window: the bits start over
        door.again(f"other {i}".encode())
    assert sum(door.again(k) for k in keys) <= 2


def test_a_repeated_attribute_is_replaced_from_the_field_cache_and_counted_again() -> None:
    eng = engine()
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i in range(3):
        span = spans.add(name=f"s{i}")
        span.attributes.add(key="client.address", value={"string_value": "10.1.2.3"})
        span.attributes.add(key="note", value={"string_value": f"clean {i}"})
    first = eng.process(Signal.TRACES, request.SerializeToString())
    assert len(eng._fields) == 1  # the address field, remembered once
    second = eng.process(Signal.TRACES, request.SerializeToString())
    assert first.raw == second.raw
    assert first.matches == second.matches == {("ipv4", "redact"): 3}
    assert first.values_scanned == second.values_scanned == 3
    assert first.raw is not None
    masked = ExportTraceServiceRequest.FromString(first.raw)
    assert [s.attributes[0].value.string_value for s in masked.resource_spans[0].scope_spans[0].spans] == [
        "[REDACTED:ipv4]"
    ] * 3
