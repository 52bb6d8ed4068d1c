"""Merging by concatenation and splitting by items: every item kept, in order, nothing decoded when merging."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.delivery.merge import LazyBatch, merge, split, split_to_fit, with_metadata
from pipeline.model import Batch, Signal, count_items
from tests.support.data import logs_request, metrics_request, traces_request


def span_ids(batch: Batch) -> list[bytes]:
    return [s.span_id for rs in batch.message.resource_spans for ss in rs.scope_spans for s in ss.spans]  # type: ignore[union-attr]


def test_merge_concatenates_bytes_without_decoding() -> None:
    a = Batch.from_message(Signal.TRACES, traces_request(2, 3))
    b = Batch.from_message(Signal.TRACES, traces_request(1, 4, service="cart"))
    merged = merge([a, b])
    assert isinstance(merged, LazyBatch)
    assert not merged.parsed
    assert merged.items == 10
    assert merged.raw == a.raw + b.raw  # type: ignore[operator]
    assert merged.nbytes == a.nbytes + b.nbytes
    assert span_ids(merged) == span_ids(a) + span_ids(b)
    assert merged.parsed
    assert count_items(Signal.TRACES, merged.message) == 10


def test_merge_of_one_batch_is_the_batch_and_metadata_is_rewrapped_not_copied() -> None:
    a = Batch.from_message(Signal.LOGS, logs_request(3), {"x-tenant": ("a",)})
    assert merge([a]) is a
    other = merge([a], metadata={})
    assert other is not a
    assert other.raw is a.raw
    assert dict(other.metadata) == {}
    assert dict(a.metadata) == {"x-tenant": ("a",)}  # the shared original is untouched
    lazy = LazyBatch(Signal.LOGS, a.serialize(), 3)
    rewrapped = with_metadata(lazy, {"k": ("v",)})
    assert isinstance(rewrapped, LazyBatch)
    assert not rewrapped.parsed


def test_lazy_batch_decodes_before_a_change_forgets_its_bytes() -> None:
    raw = traces_request(1, 2).SerializeToString()
    lazy = LazyBatch(Signal.TRACES, raw, 2)
    lazy.mark_modified(2)
    assert lazy.raw is None
    assert lazy.serialize() == raw  # the message was decoded first, so nothing is lost
    assert lazy.clone().items == 2


@pytest.mark.parametrize("max_items", [1, 2, 5, 6, 7])
def test_split_traces_keeps_every_span_in_order_with_its_resource_and_scope(max_items: int) -> None:
    a = traces_request(2, 3, service="a")
    b = traces_request(1, 3, service="b")
    batch = merge([Batch.from_message(Signal.TRACES, a), Batch.from_message(Signal.TRACES, b)])
    before = batch.serialize()
    pieces = split(batch, max_items)
    assert batch.serialize() == before  # the input is not changed
    assert all(p.items <= max_items for p in pieces)
    assert sum(p.items for p in pieces) == 9
    assert [i for p in pieces for i in span_ids(p)] == span_ids(batch)
    services = [
        (rs.resource.attributes[0].value.string_value, ss.scope.name)
        for p in pieces
        for rs in p.message.resource_spans  # type: ignore[union-attr]
        for ss in rs.scope_spans
        for _ in ss.spans
    ]
    assert services == [("a", "tests")] * 6 + [("b", "tests")] * 3


def test_split_logs() -> None:
    batch = Batch.from_message(Signal.LOGS, logs_request(7))
    pieces = split(batch, 3)
    assert [p.items for p in pieces] == [3, 3, 1]
    bodies = [
        r.body.string_value
        for p in pieces
        for rl in p.message.resource_logs  # type: ignore[union-attr]
        for sl in rl.scope_logs
        for r in sl.log_records
    ]
    assert bodies == [f"line {i}" for i in range(7)]


def test_split_metrics_cuts_between_data_points() -> None:
    req = metrics_request(5)
    extra = req.resource_metrics[0].scope_metrics[0].metrics.add()
    extra.name = "temperature"
    for i in range(3):
        extra.gauge.data_points.add().as_double = float(i)
    batch = Batch.from_message(Signal.METRICS, req)
    assert batch.items == 8
    pieces = split(batch, 3)
    assert [p.items for p in pieces] == [3, 3, 2]
    names: list[tuple[str, Any]] = []
    for p in pieces:
        for m in p.message.resource_metrics[0].scope_metrics[0].metrics:  # type: ignore[union-attr]
            kind = m.WhichOneof("data")
            names += [(m.name, dp.as_int if kind == "sum" else dp.as_double) for dp in getattr(m, kind).data_points]
    assert names == [("requests", i) for i in range(5)] + [("temperature", float(i)) for i in range(3)]
    assert pieces[0].message.resource_metrics[0].scope_metrics[0].metrics[0].sum.is_monotonic  # type: ignore[union-attr]


def test_split_to_fit_bytes_cuts_until_each_piece_fits() -> None:
    batch = Batch.from_message(Signal.TRACES, traces_request(10, 10))
    limit = batch.nbytes // 4
    pieces = split_to_fit(batch, 0, limit)
    assert len(pieces) >= 4
    assert all(len(p.serialize()) <= limit for p in pieces)
    assert [i for p in pieces for i in span_ids(p)] == span_ids(batch)
    single = Batch.from_message(Signal.TRACES, traces_request(1, 1))
    assert split_to_fit(single, 0, 10) == [single]  # one item: sent as it is


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=5),
    max_items=st.integers(min_value=1, max_value=12),
)
def test_merge_then_split_round_trips_every_span(sizes: list[int], max_items: int) -> None:
    batches = [Batch.from_message(Signal.TRACES, traces_request(1, n)) for n in sizes]
    merged = merge(batches)
    pieces = split(merged, max_items)
    assert all(p.items <= max_items for p in pieces)
    assert [i for p in pieces for i in span_ids(p)] == [i for b in batches for i in span_ids(b)]
