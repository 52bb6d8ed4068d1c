"""Splitting and re-framing requests; the decision cache structures."""

from __future__ import annotations

import os

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.protowire import encode_varint as varint
from processors.tail_sampling.cache import DroppedFilter, KeptCache, blocked_bloom_bits
from processors.tail_sampling.policies import Decision
from processors.tail_sampling.wire import Interner, RequestBuilder, frame_items, split
from tests.processors.tail_sampling.builders import log, logs_request, request, span, span_ids, tid
from tests.support.data import traces_request


def _spans(req: ExportTraceServiceRequest) -> list[bytes]:
    return sorted(s.SerializeToString() for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans)


def _rebuild(raws: list[bytes], limit: int) -> list[tuple[bytes, int]]:
    keys = Interner()
    builder = RequestBuilder()
    for raw in raws:
        for resource, scope, items in split(raw):
            builder.add(keys.pair(resource, scope), items)
    return builder.encode(limit)


def test_split_and_encode_round_trip_keeps_every_span_under_its_resource_and_scope() -> None:
    a, b = traces_request(3, 4, service="a"), traces_request(2, 2, service="b")
    out = _rebuild([a.SerializeToString(), b.SerializeToString()], 4 << 20)
    assert len(out) == 1
    assert out[0][1] == 16
    merged = ExportTraceServiceRequest.FromString(out[0][0])
    assert [rs.resource.attributes[0].value.string_value for rs in merged.resource_spans] == ["a", "b"]
    whole = ExportTraceServiceRequest()
    whole.MergeFrom(a)
    whole.MergeFrom(b)
    assert _spans(merged) == _spans(whole)


def test_same_resource_and_scope_across_requests_are_merged() -> None:
    t = tid()
    out = _rebuild([request(span(t)).SerializeToString(), request(span(t)).SerializeToString()], 4 << 20)
    merged = ExportTraceServiceRequest.FromString(out[0][0])
    assert len(merged.resource_spans) == 1
    assert len(merged.resource_spans[0].scope_spans[0].spans) == 2


def test_requests_are_cut_at_the_size_limit() -> None:
    raw = traces_request(50, 4).SerializeToString()
    keys = Interner()
    builder = RequestBuilder()
    for resource, scope, items in split(raw):
        for item in items:  # one run per span, as when every trace contributes one span
            builder.add(keys.pair(resource, scope), [item])
    out = builder.encode(2000)
    assert len(out) > 5
    assert all(len(r) <= 2000 for r, _ in out)
    assert sum(n for _, n in out) == 200
    total = ExportTraceServiceRequest()
    for r, _ in out:
        total.MergeFromString(r)
    assert _spans(total) == _spans(ExportTraceServiceRequest.FromString(raw))


def test_a_run_larger_than_the_limit_goes_out_alone() -> None:
    keys = Interner()
    builder = RequestBuilder()
    (resource, scope, items), *_ = split(traces_request(10, 2).SerializeToString())
    builder.add(keys.pair(resource, scope), items[:1])
    builder.add_run(keys.pair(resource, scope), frame_items(items[1:]), 19)
    builder.add(keys.pair(resource, scope), items[:1])
    out = builder.encode(500)
    assert [n for _, n in out] == [1, 19, 1]


def test_unknown_fields_and_schema_urls_survive() -> None:
    req = request(span(tid()))
    req.resource_spans[0].schema_url = "https://opentelemetry.io/schemas/1.24.0"
    req.resource_spans[0].scope_spans[0].schema_url = "s2"
    # A field this schema does not know (number 99, varint 7) inside the resource entry.
    unknown = varint(99 << 3) + b"\x07"
    entry = req.resource_spans[0].SerializeToString() + unknown
    raw = bytes((0x0A,)) + varint(len(entry)) + entry
    (resource, _, items), *_ = split(raw)
    assert unknown in resource
    assert len(items) == 1
    out = _rebuild([raw], 4 << 20)[0][0]
    assert unknown in out
    again = ExportTraceServiceRequest.FromString(out)
    assert again.resource_spans[0].schema_url == "https://opentelemetry.io/schemas/1.24.0"
    assert again.resource_spans[0].scope_spans[0].schema_url == "s2"
    assert span_ids([again]) == span_ids([req])


def test_logs_split_the_same_way() -> None:
    req = logs_request(log(tid(), body="a"), log(body="b"))
    (resource, scope, items), *_ = split(req.SerializeToString())
    assert len(items) == 2
    keys = Interner()
    builder = RequestBuilder()
    builder.add(keys.pair(resource, scope), items)
    out = ExportLogsServiceRequest.FromString(builder.encode()[0][0])
    assert out == req


def test_kept_cache_is_an_lru() -> None:
    cache = KeptCache(2)
    d = Decision(True, "p")
    a, b, c = tid(), tid(), tid()
    cache.put(a, d)
    cache.put(b, d)
    cache.put(a, d)  # refreshed
    cache.put(c, d)
    assert cache.get(a) is d
    assert cache.get(c) is d
    assert cache.get(b) is None
    assert KeptCache(0).get(a) is None


def test_dropped_filter_has_no_false_negatives_and_bounded_false_positives() -> None:
    f = DroppedFilter(20_000, 0.001, stable=True)
    added = [os.urandom(16) for _ in range(20_000)]
    for t in added:
        f.add(t)
    assert all(t in f for t in added)
    probes = [os.urandom(16) for _ in range(50_000)]
    rate = sum(1 for t in probes if t in f) / len(probes)
    assert rate <= 0.003  # sized for 0.001 (0.0005 per generation), some slack for chance
    assert 0 < f.false_positive_rate() <= 0.001


def test_dropped_filter_forgets_the_oldest_generation() -> None:
    f = DroppedFilter(100, 0.01)
    first = [os.urandom(16) for _ in range(100)]
    for t in first:
        f.add(t)
    for _ in range(201):  # two more generations
        f.add(os.urandom(16))
    assert sum(1 for t in first if t in f) < 10  # gone, but for false positives


def test_bloom_sizing_grows_with_the_target_rate() -> None:
    assert blocked_bloom_bits(0.01) < blocked_bloom_bits(0.001) < blocked_bloom_bits(0.0001)
    assert DroppedFilter(0, 0.01).false_positive_rate() == 0.0


def test_marks_keep_runs_in_order_under_their_headers() -> None:
    from processors.tail_sampling.marks import freeze, iter_runs
    from processors.tail_sampling.wire import item_prefix

    a, b = (b"ra", b"sa"), (b"rb", b"sb")
    bodies = [b"1" * 5, b"2" * 300, b"3", b"4" * 20000]  # a 20 kB body: a two-byte length prefix and more
    parts: list[bytes] = []
    for body in bodies:
        parts += (item_prefix(len(body)), body)
    single, n, size = freeze(parts[:4], [a, 0])
    assert (n, size) == (2, len(b"".join(parts[:4])))
    multi, n, _ = freeze(parts, [a, 0, b, 2, a, 4])
    assert n == 4
    runs = list(iter_runs(single + multi))
    assert [(c, count) for c, _, count in runs] == [(a, 2), (a, 1), (b, 1), (a, 2)]
    assert [run for _, run, _ in runs][1:] == [b"".join(parts[0:2]), b"".join(parts[2:4]), b"".join(parts[4:])]
