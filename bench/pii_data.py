"""The realistic mix of the PII benchmark: 1000-span trace requests and 1000-record log requests.

Spans are HTTP server/client and database spans (method, route, URL with query strings, user agent, peer
address, SQL, messages); log records have 60-200 byte bodies. A share of the string values (``Mix.ratio``, 10% by
default) carry PII: e-mails, cards (valid Luhn), SSNs, IPv4/IPv6, phones, JWTs, bearer tokens, IBANs, passwords,
half of them alone and half inside text. By default every secret is unique (no cache can help: the worst case);
``Mix.pool`` draws them from a fixed list instead, so they repeat as in real traffic.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import SEVERITY_NUMBER_INFO
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from bench.gen import kv


@dataclass(frozen=True)
class Mix:
    # The share of string values that carry PII.
    ratio: float = 0.10
    # Secrets to draw from; empty: a new one for every value.
    pool: Sequence[str] = ()


DEFAULT_MIX = Mix()


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    """A card number with a valid Luhn digit (the generated PII is unique per value: no cache hits)."""
    digits = [int(c) for c in prefix] + [rng.randint(0, 9) for _ in range(length - len(prefix) - 1)]
    for check in range(10):
        total = 0
        for i, d in enumerate(reversed([*digits, check])):
            total += (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
        if total % 10 == 0:
            return "".join(map(str, [*digits, check]))
    raise AssertionError("unreachable")


def make_secret(rng: random.Random) -> str:
    """One PII value of a random kind, unique (random digits, names, ids)."""
    kind = rng.randrange(10)
    if kind == 0:
        name = rng.choice(["ann", "bob.lee", "c.wu", "dana"])
        return f"{name}{rng.randint(1, 9999)}@{rng.choice(['example.com', 'mail.example.org'])}"
    if kind == 1:
        card = _luhn_complete(*rng.choice([("4", 16), ("51", 16), ("37", 15), ("6011", 16)]), rng)
        return " ".join(card[i : i + 4] for i in range(0, len(card), 4)) if rng.random() < 0.5 else card
    if kind == 2:
        return f"{rng.randint(100, 665):03d}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    if kind == 3:
        return f"{rng.randint(11, 200)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if kind == 4:
        return f"2001:db8:{rng.randint(0, 65535):x}::{rng.randint(1, 65535):x}"
    if kind == 5:
        return rng.choice([f"+1 415 555 {rng.randint(1000, 9999)}", f"(415) 555-{rng.randint(1000, 9999)}"])
    if kind == 6:
        return (
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            + uuid.UUID(int=rng.getrandbits(128)).hex
        )
    if kind == 7:
        return "Bearer " + uuid.UUID(int=rng.getrandbits(128)).hex
    if kind == 8:
        return "DE89 3704 0044 0532 0130 00"
    return f"password={uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"


_ROUTES = ("/api/cart", "/api/checkout", "/api/orders/{id}", "/api/products", "/api/users/{id}", "/health")
_CLEAN: tuple[Callable[[random.Random], str], ...] = (
    lambda r: f"https://shop.example.com{r.choice(_ROUTES).replace('{id}', str(r.randint(1, 99999)))}",
    lambda r: f"https://shop.example.com/api/search?q=red%20shoes&page={r.randint(1, 40)}&sort=price",
    lambda r: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    lambda r: f"SELECT id, total, status FROM orders WHERE customer_id = {r.randint(1, 99999)} AND status = 'paid'",
    lambda r: f"order {uuid.UUID(int=r.getrandbits(128))} processed in {r.randint(1, 999)}ms",
    lambda r: f"2024-01-15T10:{r.randint(10, 59)}:{r.randint(10, 59)}.123Z cache miss for product:{r.randint(1, 9999)}",
    lambda r: f"checkout v1.{r.randint(0, 20)}.{r.randint(0, 9)} build {1_700_000_000_000 + r.randint(0, 10**9)}",
    lambda r: r.choice(("GET", "POST", "PUT")),
    lambda r: "shop.example.com",
    lambda r: f"retrying upstream call to inventory (attempt {r.randint(1, 5)} of 5)",
)


def _value(rng: random.Random, stats: dict[str, int], mix: Mix) -> str:
    stats["values"] += 1
    if rng.random() < mix.ratio:
        stats["pii"] += 1
        secret = rng.choice(mix.pool) if mix.pool else make_secret(rng)
        return secret if rng.random() < 0.5 else f"{rng.choice(_CLEAN)(rng)[:40]} {secret} done"
    return rng.choice(_CLEAN)(rng)


def trace_requests(
    n: int, spans: int = 1000, seed: int = 7, mix: Mix = DEFAULT_MIX
) -> tuple[list[bytes], dict[str, int]]:
    rng = random.Random(seed)
    stats = {"values": 0, "pii": 0}
    out = []
    for _ in range(n):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.extend([kv("service.name", "checkout"), kv("host.name", "node-7")])
        ss = rs.scope_spans.add()
        ss.scope.name = "opentelemetry.instrumentation.http"
        for i in range(spans):
            span = ss.spans.add()
            span.trace_id, span.span_id = rng.randbytes(16), rng.randbytes(8)
            span.parent_span_id = rng.randbytes(8) if i % 10 else b""
            span.name = _value(rng, stats, mix) if rng.random() < 0.2 else f"GET {rng.choice(_ROUTES)}"
            span.kind = Span.SPAN_KIND_SERVER
            span.start_time_unix_nano = 1_700_000_000_000_000_000 + i
            span.end_time_unix_nano = span.start_time_unix_nano + rng.randint(200_000, 80_000_000)
            keys = ("http.request.method", "url.full", "user_agent.original", "server.address", "app.message")
            span.attributes.extend([kv(k, _value(rng, stats, mix)) for k in keys])
            if i % 3 == 0:
                span.attributes.append(kv("db.statement", _value(rng, stats, mix)))
            span.attributes.extend(
                [kv("http.response.status_code", 200), kv("net.peer.port", rng.randint(1024, 65535))]
            )
        out.append(req.SerializeToString())
    return out, stats


def log_requests(
    n: int, records: int = 1000, seed: int = 11, mix: Mix = DEFAULT_MIX
) -> tuple[list[bytes], dict[str, int]]:
    rng = random.Random(seed)
    stats = {"values": 0, "pii": 0}
    out = []
    for _ in range(n):
        req = ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        rl.resource.attributes.append(kv("service.name", "checkout"))
        sl = rl.scope_logs.add()
        for i in range(records):
            rec = sl.log_records.add()
            rec.time_unix_nano = 1_700_000_000_000_000_000 + i
            rec.severity_number, rec.severity_text = SEVERITY_NUMBER_INFO, "INFO"
            rec.body.string_value = f"{_value(rng, stats, mix)} | {rng.choice(_CLEAN)(rng)}"
            rec.attributes.extend([kv("code.function", "handle_request"), kv("user", _value(rng, stats, mix))])
            rec.trace_id, rec.span_id = rng.randbytes(16), rng.randbytes(8)
        out.append(req.SerializeToString())
    return out, stats


def strings(message: Message) -> Iterator[Any]:
    """Every string value that the engine would scan (keys excluded), as protobuf objects and field names."""
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                if field.message_type is not None and field.message_type.name == "KeyValue":
                    if item.value.WhichOneof("value") == "string_value":
                        yield item.value.string_value
                else:
                    yield from strings(item)
        elif field.type == field.TYPE_STRING and field.name in ("name", "message", "string_value"):
            yield value
