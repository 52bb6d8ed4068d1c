"""Property: no generated secret survives masking, whatever field holds it and whatever surrounds it.

Secrets of every default detector are generated valid (Luhn and network for cards, mod-97 for IBANs, SSA rules
for SSNs, ...), put between random words and separators, placed in a random field of a random signal (nested
arrays and maps and URL query parameters included) among clean filler, and the whole request goes through the
engine exactly as the processor runs it: bulk pass over the serialized bytes, then per-value checks.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from urllib.parse import quote, quote_plus

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.model import Request, Signal
from tests.processors.pii.helpers import engine, process, strings

ENGINE = engine()
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix, length = draw(
        st.sampled_from([("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
                         ("6011", 16), ("65", 16), ("3530", 16), ("36", 14), ("62", 17)])
    )  # fmt: skip
    body = prefix + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=length - len(prefix) - 1,
                                          max_size=length - len(prefix) - 1)))  # fmt: skip
    number = body + _luhn_digit(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4)) if sep else number


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country, bban_len, letters = draw(st.sampled_from([("DE", 18, 0), ("GB", 18, 4), ("FR", 23, 0), ("NL", 14, 4)]))
    bban = "".join(draw(st.lists(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=letters, max_size=letters)))
    bban += "".join(
        draw(st.lists(st.sampled_from("0123456789"), min_size=bban_len - letters, max_size=bban_len - letters))
    )
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if draw(st.booleans()) else iban


@st.composite
def ssns(draw: st.DrawFn) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    return f"{area:03d}-{draw(st.integers(1, 99)):02d}-{draw(st.integers(1, 9999)):04d}"


@st.composite
def ipv4s(draw: st.DrawFn) -> str:
    first = draw(st.integers(1, 223).filter(lambda o: o != 127))
    rest = draw(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(1, 255)))
    return ".".join(map(str, (first, *rest)))


@st.composite
def ipv6s(draw: st.DrawFn) -> str:
    address = ipaddress.IPv6Address(draw(st.integers(2, 2**128 - 1)))
    return address.compressed if draw(st.booleans()) else address.exploded


@st.composite
def phones(draw: st.DrawFn) -> str:
    digits = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=9, max_size=12)))
    country = str(draw(st.integers(1, 99)))
    style = draw(st.integers(0, 2))
    if style == 0:
        return f"+{country}{digits}"
    if style == 1:
        return f"+{country} {digits[:3]} {digits[3:6]} {digits[6:]}"
    area, exchange = draw(st.integers(200, 999)), draw(st.integers(200, 999))
    return f"({area}) {exchange}-{digits[:4]}"


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789._+-", min_size=1, max_size=12).filter(
        lambda s: s[0] not in ".-+" and s[-1] != "."))  # fmt: skip
    domain = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10))
    tld = draw(st.sampled_from(["com", "org", "net", "io", "de", "co.uk"]))
    return f"{local}{draw(st.integers(0, 999))}@{domain}.{tld}"


@st.composite
def jwts(draw: st.DrawFn) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {"sub": draw(st.text(ALNUM, min_size=1, max_size=12)), "iat": draw(st.integers(0, 2**31))}
    signature = draw(st.text(ALNUM + "-_", min_size=16, max_size=43))
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{signature}"


def _token(min_size: int) -> st.SearchStrategy[str]:
    # With a digit, a secret cannot be a piece of a replacement token ("[REDACTED:credentials]").
    return st.text(ALNUM, min_size=min_size, max_size=min_size + 16).filter(lambda s: any(c.isdigit() for c in s))


# (secret strategy, how the secret is written around it: what must not survive is the secret)
SECRETS = st.one_of(
    cards(), ibans(), ssns(), ipv4s(), ipv6s(), phones(), emails(), jwts(),
    st.builds(lambda s: "AKIA" + s.upper()[:16].ljust(16, "7"), _token(16)),
    st.builds(lambda s: "sk_live_" + s, _token(16)),
)  # fmt: skip
WRAPPED = st.one_of(
    st.tuples(st.just("Bearer "), _token(20)),
    st.tuples(st.just("password="), _token(8)),
    st.tuples(st.just('"api_key": "'), _token(12)),
)
WORDS = st.lists(st.sampled_from(["order", "shipped", "user", "GET", "/api/items", "ok", "id 42", "retry"]), max_size=3)
SEPARATORS = st.sampled_from([" ", ", ", ": ", "=", "(", '"', "'", "\n", "\t", "/", "[", "<"])
FIELDS = st.sampled_from(
    ["span.name", "span.attr", "span.array", "span.map", "event.name", "event.attr", "link.attr", "status",
     "resource.attr", "scope.attr", "log.body", "log.map", "log.attr", "metric.attr", "url.query"]
)  # fmt: skip


def _text(before: list[str], sep: str, secret: str, sep2: str, after: list[str]) -> str:
    return " ".join(before) + sep + secret + sep2 + " ".join(after)


def _place(field: str, text: str) -> tuple[Signal, Request]:
    def filler(value: AnyValue) -> None:
        value.string_value = "GET /api/orders/123 HTTP/1.1"

    if field.startswith(("log", "metric")):
        if field.startswith("metric"):
            mreq = ExportMetricsServiceRequest()
            point = mreq.resource_metrics.add().scope_metrics.add().metrics.add(name="m").sum.data_points.add()
            filler(point.attributes.add(key="route").value)
            point.attributes.add(key="note").value.string_value = text
            return Signal.METRICS, mreq
        lreq = ExportLogsServiceRequest()
        records = lreq.resource_logs.add().scope_logs.add().log_records
        filler(records.add().body)
        record = records.add()
        if field == "log.body":
            record.body.string_value = text
        elif field == "log.map":
            record.body.kvlist_value.values.add(key="msg").value.array_value.values.add().string_value = text
        else:
            record.attributes.add(key="note").value.string_value = text
        return Signal.LOGS, lreq
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "shop"
    ss = rs.scope_spans.add()
    filler(ss.spans.add().attributes.add(key="http.target").value)
    span = ss.spans.add()
    span.name = "op"
    filler(span.attributes.add(key="http.target").value)
    targets = {
        "span.name": lambda: setattr(span, "name", text),
        "span.attr": lambda: setattr(span.attributes.add(key="note").value, "string_value", text),
        "span.array": lambda: setattr(
            span.attributes.add(key="a").value.array_value.values.add(), "string_value", text
        ),
        "span.map": lambda: setattr(
            span.attributes.add(key="m").value.kvlist_value.values.add(key="k").value, "string_value", text
        ),
        "event.name": lambda: setattr(span.events.add(), "name", text),
        "event.attr": lambda: setattr(span.events.add().attributes.add(key="n").value, "string_value", text),
        "link.attr": lambda: setattr(span.links.add().attributes.add(key="n").value, "string_value", text),
        "status": lambda: setattr(span.status, "message", text),
        "resource.attr": lambda: setattr(rs.resource.attributes.add(key="n").value, "string_value", text),
        "scope.attr": lambda: setattr(ss.scope.attributes.add(key="n").value, "string_value", text),
        "url.query": lambda: setattr(
            span.attributes.add(key="url.full").value, "string_value", f"https://x.example/p?a=1&q={quote(text)}&b=2"
        ),
    }
    targets[field]()
    return Signal.TRACES, req


def _assert_gone(secret: str, request: Request) -> None:
    forms = {secret, quote(secret), quote_plus(secret)}
    for s in strings(request):
        for form in forms:
            assert form not in s, f"{secret!r} survives as {form!r} in {s!r}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=SECRETS, before=WORDS, sep=SEPARATORS, sep2=SEPARATORS, after=WORDS, field=FIELDS)
def test_no_generated_secret_survives(
    secret: str, before: list[str], sep: str, sep2: str, after: list[str], field: str
) -> None:
    signal, request = _place(field, _text(before, sep, secret, sep2, after))
    process(ENGINE, signal, request)
    _assert_gone(secret, request)


@settings(max_examples=150, deadline=None)
@given(wrapped=WRAPPED, before=WORDS, sep=SEPARATORS, after=WORDS, field=FIELDS)
def test_no_generated_credential_survives(
    wrapped: tuple[str, str], before: list[str], sep: str, after: list[str], field: str
) -> None:
    lead, secret = wrapped
    signal, request = _place(field, _text(before, sep, lead + secret, " ", after))
    process(ENGINE, signal, request)
    _assert_gone(secret, request)
