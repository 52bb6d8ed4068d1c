"""Every string a backend stores is masked (issue item 4), through the real engine on real requests: resource,
scope, span, event and link attributes (and values inside arrays and maps), span names, status messages, event
names, log bodies (string and nested) and attributes, metric data point and exemplar attributes."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.model import Signal
from tests.processors.pii.helpers import engine, mask, process, strings

SECRET = "john.doe@example.com"
MASKED = "[REDACTED:email]"


def _kv(key: str, text: str = SECRET) -> KeyValue:
    kv = KeyValue(key=key)
    kv.value.string_value = text
    return kv


def _nested(value: AnyValue) -> None:
    """An array holding a string and a map holding a string and another array."""
    value.array_value.values.add().string_value = f"first {SECRET}"
    inner = value.array_value.values.add().kvlist_value.values.add()
    inner.key = "contact"
    inner.value.kvlist_value.values.add(key="mail").value.string_value = SECRET
    deeper = inner.value.kvlist_value.values.add(key="list").value.array_value
    deeper.values.add().string_value = SECRET


def traces() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "checkout"), _kv("owner")])
    ss = rs.scope_spans.add()
    ss.scope.name = "lib"
    ss.scope.attributes.append(_kv("scope.owner"))
    for i in range(3):  # the secret sits in the last span only: earlier spans must be skipped, not broken
        span = ss.spans.add()
        span.trace_id, span.span_id = bytes([i + 1]) * 16, bytes([i + 1]) * 8
        span.name = f"op {i}"
        span.attributes.append(_kv("http.route", "/api/orders"))
    span.name = f"notify {SECRET}"
    span.attributes.extend([_kv("user"), _kv("http.method", "GET")])
    _nested(span.attributes.add(key="nested").value)
    span.status.message = f"failed for {SECRET}"
    event = span.events.add()
    event.name = f"mail to {SECRET}"
    event.attributes.append(_kv("event.user"))
    link = span.links.add()
    link.trace_id, link.span_id = b"\x09" * 16, b"\x09" * 8
    link.attributes.append(_kv("link.user"))
    return req


def test_every_trace_field_is_masked() -> None:
    req = traces()
    outcome = process(engine(), Signal.TRACES, req)
    assert outcome.changed
    assert not any(SECRET in s for s in strings(req))
    rs = req.resource_spans[0]
    assert rs.resource.attributes[1].value.string_value == MASKED
    assert rs.scope_spans[0].scope.attributes[0].value.string_value == MASKED
    span = rs.scope_spans[0].spans[2]
    assert span.name == f"notify {MASKED}"
    assert span.status.message == f"failed for {MASKED}"
    assert span.events[0].name == f"mail to {MASKED}"
    assert span.events[0].attributes[0].value.string_value == MASKED
    assert span.links[0].attributes[0].value.string_value == MASKED
    nested = span.attributes[3].value.array_value.values
    assert nested[0].string_value == f"first {MASKED}"
    contact = nested[1].kvlist_value.values[0].value.kvlist_value.values
    assert contact[0].value.string_value == MASKED
    assert contact[1].value.array_value.values[0].string_value == MASKED
    # Untouched values stay as they were.
    assert span.attributes[2].value.string_value == "GET"
    assert rs.scope_spans[0].spans[0].name == "op 0"
    assert outcome.matches == {("email", "redact"): 11}


def test_every_log_field_is_masked() -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(_kv("owner"))
    sl = rl.scope_logs.add()
    sl.scope.attributes.append(_kv("scope.owner"))
    sl.log_records.add().body.string_value = f"login by {SECRET} ok"
    record = sl.log_records.add()
    _nested(record.body)
    record.attributes.append(_kv("user"))
    kvbody = sl.log_records.add().body.kvlist_value
    kvbody.values.add(key="message").value.string_value = f"hello {SECRET}"
    kvbody.values.add(key="password").value.int_value = 1234  # blocked key: replaced whatever its type
    process(engine(), Signal.LOGS, req)
    assert not any(SECRET in s for s in strings(req))
    records = req.resource_logs[0].scope_logs[0].log_records
    assert records[0].body.string_value == f"login by {MASKED} ok"
    assert records[1].attributes[0].value.string_value == MASKED
    assert records[1].body.array_value.values[0].string_value == f"first {MASKED}"
    assert records[2].body.kvlist_value.values[0].value.string_value == f"hello {MASKED}"
    assert records[2].body.kvlist_value.values[1].value.string_value == "[REDACTED:blocked_key]"
    assert req.resource_logs[0].resource.attributes[0].value.string_value == MASKED


def test_every_metric_data_point_kind_is_masked() -> None:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(_kv("owner"))
    sm = rm.scope_metrics.add()
    gauge = sm.metrics.add(name="g").gauge.data_points.add()
    gauge.attributes.append(_kv("user"))
    gauge.exemplars.add().filtered_attributes.append(_kv("user"))
    sm.metrics.add(name="s").sum.data_points.add().attributes.append(_kv("user"))
    sm.metrics.add(name="h").histogram.data_points.add().attributes.append(_kv("user"))
    sm.metrics.add(name="e").exponential_histogram.data_points.add().attributes.append(_kv("user"))
    sm.metrics.add(name="q").summary.data_points.add().attributes.append(_kv("user"))
    process(engine(), Signal.METRICS, req)
    assert not any(SECRET in s for s in strings(req))
    assert sum(s == MASKED for s in strings(req)) == 7


def test_a_clean_request_is_not_touched() -> None:
    req = traces()
    clean = ExportTraceServiceRequest()
    clean.CopyFrom(req)
    for rs in clean.resource_spans:
        del rs.resource.attributes[1]
        del rs.scope_spans[0].scope.attributes[0]
        del rs.scope_spans[0].spans[2]
    before = clean.SerializeToString()
    outcome = process(engine(), Signal.TRACES, clean)
    assert not outcome.changed
    assert outcome.matches == {}
    assert clean.SerializeToString() == before


def test_drop_removes_attributes_array_elements_and_map_entries_and_redacts_the_rest() -> None:
    req = traces()
    process(engine(actions={"email": "drop"}), Signal.TRACES, req)
    rs = req.resource_spans[0]
    assert [kv.key for kv in rs.resource.attributes] == ["service.name"]
    span = rs.scope_spans[0].spans[2]
    assert [kv.key for kv in span.attributes] == ["http.route", "http.method", "nested"]
    # The array lost its string element; the map lost its "mail" entry; the inner array lost its element.
    nested = span.attributes[2].value.array_value.values
    assert len(nested) == 1
    contact = nested[0].kvlist_value.values[0].value.kvlist_value.values
    assert [kv.key for kv in contact] == ["list"]
    assert len(contact[0].value.array_value.values) == 0
    # Names and messages cannot be removed: redacted instead.
    assert span.name == f"notify {MASKED}"
    assert span.status.message == f"failed for {MASKED}"
    assert not any(SECRET in s for s in strings(req))


def test_several_attributes_changed_and_dropped_in_one_span_keep_their_places() -> None:
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    keys = ["a", "drop1", "b", "drop2", "c"]
    for key in keys:
        value = "4111 1111 1111 1111" if key.startswith("drop") else f"{key}: {SECRET}"
        span.attributes.append(_kv(key, value))
    process(engine(actions={"credit_card": "drop"}), Signal.TRACES, req)
    span = req.resource_spans[0].scope_spans[0].spans[0]  # the request was replaced by the masked one
    assert [(kv.key, kv.value.string_value) for kv in span.attributes] == [
        ("a", f"a: {MASKED}"),
        ("b", f"b: {MASKED}"),
        ("c", f"c: {MASKED}"),
    ]


def test_a_long_value_is_scanned_whole() -> None:
    req = ExportLogsServiceRequest()
    body = "x" * 70_000 + f" {SECRET} " + "y" * 10
    req.resource_logs.add().scope_logs.add().log_records.add().body.string_value = body
    process(engine(), Signal.LOGS, req)
    assert req.resource_logs[0].scope_logs[0].log_records[0].body.string_value.endswith(f" {MASKED} yyyyyyyyyy")


def test_nothing_configured_is_a_pass_through() -> None:
    req = traces()
    before = req.SerializeToString()
    eng = engine(detectors=[], blocked_keys=[])
    assert eng.bulk is None
    outcome = process(eng, Signal.TRACES, req)
    assert not outcome.changed
    assert req.SerializeToString() == before


# Secrets whose bulk patterns take the byte or two before them along (detectors.AFTER_NON_DIGIT): (detector,
# text, a part of the secret that must not survive). A card may also start at a later group of a digit run.
STARTS = [
    ("credit_card", "4111 1111 1111 1111", "4111"),
    ("credit_card", "1111 4111 1111 1111 1111", "4111"),
    ("phone", "(415) 555-2671", "2671"),
    ("phone", "415-555-2671", "2671"),
    ("phone", "020 7946 0958", "7946"),
]
# Value lengths whose varint ends in a digit byte ("0"-"9": 48-57; a two-byte length whose second byte is one:
# 6144-7423), with neighbours.
LENGTHS = [20, 47, *range(48, 58), 58, 127, 128, 6143, 6144, 6150, 7423, 7424]


@pytest.mark.parametrize(("detector", "text", "secret"), STARTS)
def test_a_secret_at_the_start_of_a_value_is_masked_whatever_the_length_byte_before_it(
    detector: str, text: str, secret: str
) -> None:
    eng = engine(detectors=[detector], blocked_keys=[])
    for length in LENGTHS:
        value = (text + " " + "x" * length)[:length] if length > len(text) + 1 else text
        req = ExportTraceServiceRequest()
        span = req.resource_spans.add().scope_spans.add().spans.add()
        span.name = value
        span.attributes.append(_kv("note", value))
        span.events.add().name = value
        span.status.message = value
        process(eng, Signal.TRACES, req)
        found = list(strings(req))
        assert len(found) == 5, (length, found)
        assert not any(secret in s for s in found), (length, found)
        logs = ExportLogsServiceRequest()
        logs.resource_logs.add().scope_logs.add().log_records.add().body.string_value = value
        process(eng, Signal.LOGS, logs)
        body = logs.resource_logs[0].scope_logs[0].log_records[0].body.string_value
        assert secret not in body, (length, body)
        assert f"[REDACTED:{detector}]" in body, (length, body)


def test_a_card_after_an_invalid_utf8_byte_in_a_decoded_query_parameter_is_masked() -> None:
    # Decoded, the parameter is b"\x804111 1111 1111 1111": the digit Set reads bytes (bulk.DIGIT_PASS).
    url = "https://shop.example/p?n=%804111%201111%201111%201111&m=1"
    assert (
        mask(url, detectors=["credit_card"], blocked_keys=[])
        == "https://shop.example/p?n=%80[REDACTED:credit_card]&m=1"
    )
