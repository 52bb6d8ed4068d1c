"""OTLP/JSON codec (the OTLP spec's JSON mapping, PROTOCOLS.md 22).

It differs from the proto3 JSON mapping in that trace and span ids are hex strings (not base64), enums are
written as integers, and unknown fields are ignored. protobuf's json_format does the rest, slowly (~11K
spans/s): this is the compatibility path; protobuf is the fast one.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf import json_format

from pipeline.model import Request, Signal

_ID_KEYS = ("traceId", "spanId", "parentSpanId")
_ID_LEN = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


class JsonDecodeError(ValueError):
    """The body is not valid OTLP/JSON; the message says where."""


def _dicts(obj: Any, *path: str) -> Iterator[dict[str, Any]]:
    """Yield the dicts found by following ``path`` through lists and dicts (missing parts are skipped)."""
    if not path:
        if isinstance(obj, dict):
            yield obj
        return
    if isinstance(obj, dict):
        child = obj.get(path[0])
        if isinstance(child, list):
            for item in child:
                yield from _dicts(item, *path[1:])
        elif isinstance(child, dict):
            yield from _dicts(child, *path[1:])


def _id_holders(signal: Signal, doc: Any) -> Iterator[dict[str, Any]]:
    if signal is Signal.TRACES:
        for span in _dicts(doc, "resourceSpans", "scopeSpans", "spans"):
            yield span
            yield from _dicts(span, "links")
    elif signal is Signal.LOGS:
        yield from _dicts(doc, "resourceLogs", "scopeLogs", "logRecords")
    else:
        for metric in _dicts(doc, "resourceMetrics", "scopeMetrics", "metrics"):
            for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "summary"):
                yield from _dicts(metric, kind, "dataPoints", "exemplars")


def _hex_to_b64(holder: dict[str, Any], key: str) -> None:
    value = holder.get(key)
    if value is None or value == "":
        return
    if not isinstance(value, str):
        raise JsonDecodeError(f"{key}: expected a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise JsonDecodeError(f"{key}: {value[:40]!r} is not a hex string") from None
    if len(raw) != _ID_LEN[key]:
        raise JsonDecodeError(f"{key}: expected {_ID_LEN[key]} bytes ({_ID_LEN[key] * 2} hex digits), got {len(raw)}")
    holder[key] = base64.b64encode(raw).decode("ascii")


def _b64_to_hex(holder: dict[str, Any], key: str) -> None:
    value = holder.get(key)
    if isinstance(value, str) and value:
        holder[key] = base64.b64decode(value).hex()


def _convert_ids(signal: Signal, doc: Any, convert: Callable[[dict[str, Any], str], None]) -> None:
    for holder in _id_holders(signal, doc):
        for key in _ID_KEYS:
            if key in holder:
                convert(holder, key)


def decode(signal: Signal, data: bytes | str) -> Request:
    """Parse an OTLP/JSON export request; raises JsonDecodeError with a readable reason."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonDecodeError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise JsonDecodeError("invalid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise JsonDecodeError("expected a JSON object at the top level")
    _convert_ids(signal, doc, _hex_to_b64)
    message = signal.request_type()
    try:
        json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, ValueError, TypeError) as exc:
        raise JsonDecodeError(f"invalid OTLP/JSON: {exc}") from None
    except RecursionError:
        raise JsonDecodeError("invalid OTLP/JSON: nested too deeply") from None
    return message


def to_dict(signal: Signal, message: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json_format.MessageToDict(message, use_integers_for_enums=True)
    _convert_ids(signal, doc, _b64_to_hex)
    return doc


def encode(signal: Signal, message: Any) -> bytes:
    """Serialize a message (a request, or a response/Status with ``signal`` ignored) as compact OTLP/JSON."""
    return json.dumps(to_dict(signal, message), separators=(",", ":")).encode()
