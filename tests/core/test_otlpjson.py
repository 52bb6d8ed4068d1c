"""The OTLP/JSON codec against protobuf's reference json_format (with the OTLP id and enum rules applied)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2

from bench.gen import trace_requests
from pipeline import otlpjson
from pipeline.model import Signal
from tests.support.data import logs_request, metrics_request, traces_request

ID_KEYS = {"traceId", "spanId", "parentSpanId"}


def _reference(message: Any) -> Any:
    """json_format's output with ids turned from base64 into hex, as OTLP/JSON requires."""

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (base64.b64decode(v).hex() if k in ID_KEYS and isinstance(v, str) else fix(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(x) for x in node]
        return node

    return fix(json_format.MessageToDict(message, use_integers_for_enums=True))


def _rich_traces() -> Any:
    req = traces_request(n_traces=2, spans_per_trace=2)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.parent_span_id = b"\x01" * 8
    span.status.code = 2
    span.status.message = "boom"
    ev = span.events.add()
    ev.name, ev.time_unix_nano = "exception", 1
    link = span.links.add()
    link.trace_id, link.span_id = b"\x02" * 16, b"\x03" * 8
    a = span.attributes.add()
    a.key = "nested"
    kv = a.value.kvlist_value.values.add()
    kv.key, kv.value.double_value = "pi", 3.14
    arr = a.value.kvlist_value.values.add()
    arr.key = "arr"
    arr.value.array_value.values.add().bytes_value = b"\x00\xff"
    arr.value.array_value.values.add().bool_value = True
    empty = span.attributes.add()
    empty.key = "empty_array"
    empty.value.array_value.SetInParent()
    return req


CASES = [
    (Signal.TRACES, _rich_traces()),
    (Signal.LOGS, logs_request()),
    (Signal.METRICS, metrics_request()),
]


@pytest.mark.parametrize(("signal", "message"), CASES, ids=lambda x: getattr(x, "value", "msg"))
def test_encode_matches_reference_and_round_trips(signal: Signal, message: Any) -> None:
    encoded = otlpjson.encode(signal, message)
    assert json.loads(encoded) == _reference(message)
    assert otlpjson.decode(signal, encoded) == message


def test_generated_load_round_trips() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    msg = ExportTraceServiceRequest()
    msg.ParseFromString(trace_requests(1, 200)[0])
    assert otlpjson.decode(Signal.TRACES, otlpjson.encode(Signal.TRACES, msg)) == msg


def test_decode_accepts_numbers_for_int64_enum_names_snake_case_and_ignores_unknown() -> None:
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "span_id": "eee19b7ec3c1b174",
                                "startTimeUnixNano": 1544712660000000000,
                                "kind": "SPAN_KIND_SERVER",
                                "somethingNew": {"x": 1},
                                "status": {},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    msg = otlpjson.decode(Signal.TRACES, json.dumps(body))
    span = msg.resource_spans[0].scope_spans[0].spans[0]  # type: ignore[union-attr]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.span_id.hex() == "eee19b7ec3c1b174"
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.kind == 2
    assert span.HasField("status")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "top level"),
        (b'{"resourceSpans": {"a": 1}}', "resourceSpans: expected an array"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abc"}]}]}]}', "traceId"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "00112233445566778899aabbccddee"}]}]}]}', "16"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}', "not an integer"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}', "name: expected a string"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    ],
)
def test_decode_errors_are_readable(body: bytes, fragment: str) -> None:
    with pytest.raises(otlpjson.JsonDecodeError) as info:
        otlpjson.decode(Signal.TRACES, body)
    assert fragment in str(info.value)


def test_deep_anyvalue_nesting_is_refused_not_crashing() -> None:
    value: dict[str, Any] = {"stringValue": "x"}
    for _ in range(200):
        value = {"arrayValue": {"values": [value]}}
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": value}]}]}]}
    with pytest.raises(otlpjson.JsonDecodeError, match="nested too deeply"):
        otlpjson.decode(Signal.LOGS, json.dumps(body))


def test_status_with_any_details_uses_the_any_json_form() -> None:
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="busy")
    info = error_details_pb2.RetryInfo()
    info.retry_delay.seconds = 1
    status.details.add().Pack(info)
    doc = json.loads(otlpjson.encode(Signal.TRACES, status))
    assert doc["details"][0]["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
    assert doc["details"][0]["retryDelay"] == "1s"
