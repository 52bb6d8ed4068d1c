"""Realistic, pre-encoded load units: traces of several services as span trees, with logs that follow them.

A *unit* is one traces request (whole traces, about ``spans_per_request`` spans) and, when logs are asked for,
one logs request whose records carry those traces' ids. Units are built once, before a run; at send time the
load generator only stamps them (``bench.stamp``), so its cost is one copy and a few slice writes per request.

What the data looks like, per trace: a root SERVER span and 4-49 descendants (CLIENT calls to other services,
INTERNAL work, database spans), HTTP / database / messaging attribute mixes, an ERROR status on one span of
``error_ratio`` of the traces, a root duration over ``slow_threshold_ms`` on ``slow_ratio`` of them, and PII
(e-mail addresses, card numbers, SSNs, IPs, phone numbers) in ``pii_ratio`` of the string values that can
carry it. PII values come from a fixed vocabulary (``PII_VALUES``) so sinks can search exported bytes for
leaks. Everything is derived from ``seed``: two generator processes with different seeds never share a trace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from bench.gen import kv

SERVICES = ("frontend", "checkout", "cart", "payment", "inventory", "shipping", "users", "search")
ROUTES = ("/api/cart", "/api/checkout", "/api/orders/{id}", "/api/products", "/api/users/{id}", "/api/search")
METHODS = ("GET", "GET", "GET", "POST", "PUT", "DELETE")
DB_STATEMENTS = (
    "SELECT id, sku, qty FROM cart_items WHERE cart_id = ?",
    "UPDATE inventory SET qty = qty - ? WHERE sku = ?",
    "INSERT INTO orders (user_id, total) VALUES (?, ?)",
    "SELECT * FROM users WHERE id = ?",
)
LOG_LINES = (
    "request handled",
    "cache miss for product catalogue page",
    "retrying upstream call after timeout",
    "order placed",
    "payment authorised",
    "inventory reserved",
)

# The PII vocabulary: valid-looking values the pii processor must catch (cards pass issuer prefix, length and
# Luhn; the SSN is outside the reserved ranges). Sinks search exported bytes for exactly these strings.
PII_EMAILS = ("alice.smith@example.com", "bob.jones@example.org", "carol+shop@example.net", "dave@mail.example.com")
PII_CARDS = ("4111111111111111", "5555555555554444", "378282246310005", "6011111111111117")
PII_OTHER = ("078-05-1120", "203.0.113.42", "+1-202-555-0143", "2001:db8::8a2e:370:7334")
PII_VALUES = PII_EMAILS + PII_CARDS + PII_OTHER
SCOPE = "opentelemetry.instrumentation.bench"
BASE_TIME_NS = 1_700_000_000_000_000_000


@dataclass(frozen=True, slots=True)
class Shape:
    """What the generated telemetry looks like (the load profile's data part)."""

    spans_per_request: int = 1000
    trace_size_min: int = 5
    trace_size_max: int = 50
    error_ratio: float = 0.02
    slow_ratio: float = 0.02
    slow_threshold_ms: int = 1000
    pii_ratio: float = 0.05
    # Mean log records per trace (0 = no logs), plus this share of records that carry no trace id at all.
    logs_per_trace: float = 1.0
    orphan_log_ratio: float = 0.05
    # Share of trace-carrying log records whose trace has no span in the load (the sender sampled it away);
    # their W3C sampled flag is set on half of them.
    unsent_trace_log_ratio: float = 0.0
    # Send no traces at all (logs-only load; the log records still carry trace ids).
    traces: bool = True


@dataclass(slots=True)
class TraceInfo:
    """One trace of a unit: the 8 bytes that identify it across stamps, and what a sampler would see."""

    suffix: bytes
    spans: int
    logs: int
    error: bool
    slow: bool
    # False for log-only trace ids (no span is sent for them).
    has_spans: bool = True


@dataclass(slots=True)
class Unit:
    """One pre-built load unit; ``traces``/``logs`` are protobuf messages (encoded per transport later)."""

    traces: ExportTraceServiceRequest | None
    logs: ExportLogsServiceRequest | None
    infos: list[TraceInfo] = field(default_factory=list)
    orphan_logs: int = 0

    @property
    def span_count(self) -> int:
        return sum(t.spans for t in self.infos if t.has_spans)

    @property
    def log_count(self) -> int:
        return sum(t.logs for t in self.infos) + self.orphan_logs


class _Builder:
    """Builds units from one random stream; resources and scopes are one per service per request."""

    def __init__(self, shape: Shape, rng: random.Random) -> None:
        self.shape = shape
        self.rng = rng

    def _pii(self, clean: str, template: str) -> str:
        """``clean``, or with probability pii_ratio a value with a PII item from the vocabulary in it."""
        if self.rng.random() >= self.shape.pii_ratio:
            return clean
        return template.format(pii=self.rng.choice(PII_VALUES))

    def _resource_spans(self, req: ExportTraceServiceRequest, cache: dict[str, ScopeSpans], svc: str) -> ScopeSpans:
        scope = cache.get(svc)
        if scope is None:
            rs: ResourceSpans = req.resource_spans.add()
            rs.resource.attributes.extend(
                [
                    kv("service.name", svc),
                    kv("service.version", f"1.{self.rng.randint(0, 9)}.{self.rng.randint(0, 20)}"),
                    kv("deployment.environment", "production"),
                    kv("host.name", f"node-{self.rng.randint(1, 40)}"),
                    kv("k8s.pod.name", f"{svc}-{self.rng.randbytes(3).hex()}"),
                ]
            )
            scope = cache[svc] = rs.scope_spans.add()
            scope.scope.name, scope.scope.version = SCOPE, "0.48b0"
        return scope

    def _attributes(self, span: Span, kind: str, route: str, method: str, status: int) -> None:
        rng = self.rng
        if kind == "db":
            span.attributes.extend(
                [
                    kv("db.system", rng.choice(("postgresql", "mysql", "redis"))),
                    kv(
                        "db.statement",
                        self._pii(rng.choice(DB_STATEMENTS), "SELECT * FROM users WHERE email = '{pii}'"),
                    ),
                    kv("server.address", "db.internal"),
                    kv("server.port", 5432),
                ]
            )
            return
        if kind == "messaging":
            span.attributes.extend(
                [
                    kv("messaging.system", "kafka"),
                    kv("messaging.destination.name", "orders"),
                    kv("messaging.message.body.size", rng.randint(100, 9000)),
                ]
            )
            return
        path = route.replace("{id}", str(rng.randint(1, 99999)))
        span.attributes.extend(
            [
                kv("http.request.method", method),
                kv("http.route", route),
                kv("http.response.status_code", status),
                kv(
                    "url.full",
                    self._pii(f"https://shop.example.com{path}", "https://shop.example.com" + path + "?email={pii}"),
                ),
                kv("client.address", self._pii("10.0.3.7", "{pii}")),
                kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
                kv("enduser.id", self._pii(f"user-{rng.randint(1, 500000)}", "{pii}")),
                kv("http.request.body.size", rng.randint(0, 4096)),
                kv("cache.hit", rng.random() < 0.7),
            ]
        )

    def trace(self, req: ExportTraceServiceRequest | None, cache: dict[str, ScopeSpans], n: int) -> TraceInfo:
        rng, shape = self.rng, self.shape
        trace_id = rng.randbytes(16)
        error, slow = rng.random() < shape.error_ratio, rng.random() < shape.slow_ratio
        info = TraceInfo(trace_id[8:], n, 0, error, slow, has_spans=req is not None)
        if req is None:
            return info
        root_ms = (
            rng.uniform(shape.slow_threshold_ms * 1.2, shape.slow_threshold_ms * 3) if slow else rng.uniform(5, 400)
        )
        start = BASE_TIME_NS + rng.randint(0, 10**12)
        error_at = rng.randrange(n) if error else -1
        # (span id, service, start, duration) of spans that may get children; the root first.
        parents: list[tuple[bytes, str, int, int]] = []
        for i in range(n):
            span_id = rng.randbytes(8)
            if i == 0:
                svc, kind, parent, s0, dur = SERVICES[0], "http", b"", start, int(root_ms * 1e6)
            else:
                parent, psvc, pstart, pdur = rng.choice(parents)
                kind = rng.choices(("http", "db", "internal", "messaging"), (5, 3, 3, 1))[0]
                svc = rng.choice(SERVICES[1:]) if kind == "http" else psvc
                s0 = pstart + rng.randint(0, max(1, pdur // 4))
                dur = max(1000, int(pdur * rng.uniform(0.05, 0.6)))
            scope = self._resource_spans(req, cache, svc)
            span = scope.spans.add()
            span.trace_id, span.span_id, span.parent_span_id = trace_id, span_id, parent
            route, method = rng.choice(ROUTES), rng.choice(METHODS)
            status = 500 if i == error_at else rng.choice((200, 200, 200, 201, 204, 404))
            if i == 0:
                span.kind, span.name = Span.SPAN_KIND_SERVER, f"{method} {route}"
            elif kind == "db":
                span.kind, span.name = Span.SPAN_KIND_CLIENT, "SELECT shop"
            elif kind == "messaging":
                span.kind, span.name = Span.SPAN_KIND_PRODUCER, "orders publish"
            elif kind == "internal":
                span.kind, span.name = Span.SPAN_KIND_INTERNAL, rng.choice(("render", "validate", "price"))
            else:
                span.kind, span.name = Span.SPAN_KIND_CLIENT, f"{method} {route}"
            span.start_time_unix_nano, span.end_time_unix_nano = s0, s0 + dur
            self._attributes(span, kind, route, method, status)
            if i == error_at:
                span.status.code = Status.STATUS_CODE_ERROR
                span.status.message = "upstream returned 500"
                event = span.events.add()
                event.name, event.time_unix_nano = "exception", s0 + dur
                event.attributes.extend(
                    [
                        kv("exception.type", "TimeoutError"),
                        kv("exception.message", self._pii("deadline exceeded", "deadline exceeded for {pii}")),
                    ]
                )
            if kind in ("http", "internal"):
                parents.append((span_id, svc, s0, dur))
        return info

    def logs(self, req: ExportLogsServiceRequest, cache: dict[str, ScopeLogs], trace_id: bytes, count: int) -> None:
        rng = self.rng
        for _ in range(count):
            svc = rng.choice(SERVICES)
            scope = cache.get(svc)
            if scope is None:
                rl: ResourceLogs = req.resource_logs.add()
                rl.resource.attributes.extend([kv("service.name", svc), kv("deployment.environment", "production")])
                scope = cache[svc] = rl.scope_logs.add()
                scope.scope.name = SCOPE
            record = scope.log_records.add()
            record.time_unix_nano = record.observed_time_unix_nano = BASE_TIME_NS + rng.randint(0, 10**12)
            error = rng.random() < 0.1
            record.severity_number = (
                SeverityNumber.SEVERITY_NUMBER_ERROR if error else SeverityNumber.SEVERITY_NUMBER_INFO
            )
            record.severity_text = "ERROR" if error else "INFO"
            record.body.string_value = self._pii(rng.choice(LOG_LINES), rng.choice(LOG_LINES) + " for {pii}")
            record.attributes.extend([kv("code.function", "handle"), kv("user.email", self._pii("anonymous", "{pii}"))])
            if trace_id:
                record.trace_id, record.span_id = trace_id, rng.randbytes(8)
                record.flags = 1 if rng.random() < 0.5 else 0

    def unit(self) -> Unit:
        shape, rng = self.shape, self.rng
        traces = ExportTraceServiceRequest() if shape.traces else None
        logs = ExportLogsServiceRequest() if shape.logs_per_trace > 0 else None
        unit = Unit(traces, logs)
        span_cache: dict[str, ScopeSpans] = {}
        log_cache: dict[str, ScopeLogs] = {}
        made = 0
        while made < shape.spans_per_request:
            n = min(rng.randint(shape.trace_size_min, shape.trace_size_max), shape.spans_per_request - made)
            n = max(n, 1)
            unsent = logs is not None and rng.random() < shape.unsent_trace_log_ratio
            info = self.trace(None if unsent else traces, span_cache, n)
            if unsent:
                info.spans = 0
            if logs is not None:
                # Poisson-ish: floor plus a Bernoulli remainder keeps the mean exact.
                mean = shape.logs_per_trace
                count = int(mean) + (1 if rng.random() < mean - int(mean) else 0)
                if count:
                    self.logs(logs, log_cache, rng.randbytes(8) + info.suffix, count)
                info.logs = count
            unit.infos.append(info)
            made += n
        if logs is not None:
            orphans = round(unit.log_count * shape.orphan_log_ratio)
            self.logs(logs, log_cache, b"", orphans)
            unit.orphan_logs = orphans
        return unit


def build_units(shape: Shape, count: int, seed: int) -> list[Unit]:
    """``count`` distinct units from ``seed`` (each generator process passes its own seed)."""
    builder = _Builder(shape, random.Random(seed))
    return [builder.unit() for _ in range(count)]
