"""Realistic, pre-encoded OTLP load: traces of several services with typical HTTP/DB attributes.

Everything is built once before a run, so the generator's own cost is one send per request, not per span.
"""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

SERVICES = ("checkout", "cart", "payment", "frontend", "inventory", "shipping")
ROUTES = ("/api/cart", "/api/checkout", "/api/orders/{id}", "/api/products", "/health", "/api/users/{id}")
METHODS = ("GET", "POST", "PUT", "DELETE")


def kv(key: str, value: str | int | bool | float) -> KeyValue:
    """An attribute of the AnyValue kind that ``value``'s type names."""
    kv = KeyValue(key=key)
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = value
    return kv


def _fill_span(span: Span, rng: random.Random, trace_id: bytes, parent: bytes, start_ns: int, error: bool) -> None:
    span.trace_id = trace_id
    span.span_id = rng.randbytes(8)
    span.parent_span_id = parent
    route = rng.choice(ROUTES)
    method = rng.choice(METHODS)
    span.name = f"{method} {route}"
    span.kind = Span.SPAN_KIND_SERVER if not parent else rng.choice((Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL))
    span.start_time_unix_nano = start_ns
    span.end_time_unix_nano = start_ns + rng.randint(200_000, 80_000_000)
    status = 500 if error else rng.choice((200, 200, 200, 201, 204, 404))
    span.attributes.extend(
        [
            kv("http.request.method", method),
            kv("http.route", route),
            kv("http.response.status_code", status),
            kv("url.full", f"https://shop.example.com{route.replace('{id}', str(rng.randint(1, 99999)))}"),
            kv("server.address", "shop.example.com"),
            kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
            kv("net.peer.port", rng.randint(1024, 65535)),
        ]
    )
    if error:
        span.status.code = Status.STATUS_CODE_ERROR
        span.status.message = "upstream returned 500"
        ev = span.events.add()
        ev.name = "exception"
        ev.time_unix_nano = span.end_time_unix_nano
        ev.attributes.extend([kv("exception.type", "TimeoutError"), kv("exception.message", "deadline exceeded")])


def trace_requests(
    n_requests: int, spans_per_request: int = 1000, spans_per_trace: int = 10, error_ratio: float = 0.02, seed: int = 1
) -> list[bytes]:
    """Serialized ExportTraceServiceRequests, one resource per service, traces kept whole inside a request."""
    rng = random.Random(seed)
    out: list[bytes] = []
    start = 1_700_000_000_000_000_000
    for _ in range(n_requests):
        req = ExportTraceServiceRequest()
        by_service: dict[str, ResourceSpans] = {}
        made = 0
        while made < spans_per_request:
            trace_id = rng.randbytes(16)
            error = rng.random() < error_ratio
            root = b""
            for i in range(min(spans_per_trace, spans_per_request - made)):
                service = rng.choice(SERVICES)
                rs = by_service.get(service)
                if rs is None:
                    rs = by_service[service] = req.resource_spans.add()
                    rs.resource.attributes.extend(
                        [kv("service.name", service), kv("service.version", "1.4.2"), kv("host.name", "node-7")]
                    )
                    rs.scope_spans.add().scope.name = "opentelemetry.instrumentation.http"
                span = rs.scope_spans[0].spans.add()
                _fill_span(span, rng, trace_id, root, start + made * 1000, error and i == 0)
                if i == 0:
                    root = span.span_id
                made += 1
        out.append(req.SerializeToString())
    return out
