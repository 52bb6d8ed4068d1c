"""The per-value fast path (bulk hits confirmed directly) finds exactly what the full per-value scan finds."""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.model import Signal
from processors.pii import wire
from processors.pii.corpus import NEAR_MISSES, POSITIVES
from tests.processors.pii.helpers import engine

ENGINE = engine()
FILLER = ["order", "done", "GET /api/v1/items?id=42", "retry 3", "v1.13.2 build 1700494603678", "x", "", "a-b"]


def _texts(rng: random.Random) -> list[str]:
    pieces = [s.text for s in POSITIVES] + [n.text for n in NEAR_MISSES] + FILLER
    texts = []
    for _ in range(400):
        parts = [rng.choice(pieces) for _ in range(rng.randint(1, 4))]
        texts.append(rng.choice([" ", "", "-", "=", ", "]).join(parts))
    return texts


def test_context_path_equals_full_scan() -> None:
    rng = random.Random(3)
    scanner = ENGINE.scanner
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i, text in enumerate(_texts(rng)):
        span = spans.add(name=f"s{i}")
        span.attributes.add(key="k", value={"string_value": text})
    raw = request.SerializeToString()
    starts, ends, per_pass = scanner.bulk.hits(raw)
    checked = 0
    for kind, _, _, _, start, end, first, last in wire.locate(Signal.TRACES, raw, starts, ends):
        if kind != wire.KVS:
            continue
        _, _, value_kind, s, e = wire.key_and_value(raw, start, end)
        if value_kind != wire.ANY_STRING or not any(starts[k] < e and ends[k] > s for k in range(first, last)):
            continue
        value = raw[s:e]
        fast = sorted((r[0], r[1], r[2].name) for r in scanner.regions(value, (per_pass, s)))
        full = sorted((r[0], r[1], r[2].name) for r in scanner.regions(value))
        assert fast == full, value
        checked += 1
    assert checked > 200
