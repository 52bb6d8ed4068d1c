"""Key rules (blocked, allowed, ignored) and actions (redact, mask_partial, hash, drop), including HMAC
stability and key rotation."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.model import Signal
from processors.pii import keys
from processors.pii.actions import key_id
from tests.processors.pii.helpers import HASH_KEY, engine, mask, process


def _request(attributes: dict[str, str | int]) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "checkout"
    span = rs.scope_spans.add().spans.add()
    for key, value in attributes.items():
        kv = span.attributes.add(key=key)
        if isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = value
    return req


def _attributes(req: ExportTraceServiceRequest) -> dict[str, str | int]:
    span = req.resource_spans[0].scope_spans[0].spans[0]
    out: dict[str, str | int] = {}
    for kv in span.attributes:
        out[kv.key] = kv.value.string_value if kv.value.WhichOneof("value") == "string_value" else kv.value.int_value
    return out


@pytest.mark.parametrize(
    ("key", "blocked"),
    [
        ("db.password", True),
        ("PASSWORD", True),
        ("client_secret", True),
        ("x-auth-token", True),
        ("stripe.api_key", True),
        ("MyApiKey", True),
        ("Authorization", True),
        ("cookie", True),
        ("Set-Cookie", True),
        ("http.request.header.authorization", False),  # exact globs match whole keys only
        ("user.id", False),
        ("tokenizer.model", True),  # *token* is deliberately broad
    ],
)
def test_default_blocked_keys(key: str, blocked: bool) -> None:
    rules = keys.KeyRules(engine().keys.blocked_globs, (), ())
    assert rules.is_blocked(key.encode()) is blocked


def test_blocked_key_replaces_the_whole_value_whatever_it_holds() -> None:
    req = _request({"db.password": "hunter2", "session_token": 12345, "user.id": "u-42", "ok": "fine"})
    process(engine(blocked_keys=["*password*", "*token*", "user.id"]), Signal.TRACES, req)
    assert _attributes(req) == {
        "db.password": "[REDACTED:blocked_key]",
        "session_token": "[REDACTED:blocked_key]",
        "user.id": "[REDACTED:blocked_key]",
        "ok": "fine",
    }


def test_glob_syntax() -> None:
    rules = keys.KeyRules(["user.?d", "card[0-9]", "x[!a]y", "*.secret.*"], [], [])
    assert rules.is_blocked(b"USER.ID")
    assert rules.is_blocked(b"user.xd")
    assert rules.is_blocked(b"card7")
    assert not rules.is_blocked(b"cardx")
    assert rules.is_blocked(b"xby")
    assert not rules.is_blocked(b"xay")
    assert rules.is_blocked(b"app.secret.value")
    assert not rules.is_blocked(b"secret")


def test_allowed_keys_remove_every_other_attribute_everywhere() -> None:
    req = _request({"http.method": "GET", "user.name": "ann", "note": "mail a@example.com"})
    outcome = process(engine(allowed_keys=["http.*", "note", "service.name"]), Signal.TRACES, req)
    assert _attributes(req) == {"http.method": "GET", "note": "mail [REDACTED:email]"}
    assert req.resource_spans[0].resource.attributes[0].key == "service.name"
    assert outcome.matches[("allowed_keys", "drop")] == 1


def test_allowed_keys_apply_to_resource_attributes_too() -> None:
    req = _request({"http.method": "GET"})
    process(engine(allowed_keys=["http.*"]), Signal.TRACES, req)
    assert len(req.resource_spans[0].resource.attributes) == 0


def test_ignored_keys_are_never_scanned_but_blocked_keys_still_win() -> None:
    req = _request({"debug.dump": "a@example.com", "debug.token": "abc", "other": "a@example.com"})
    process(engine(ignored_keys=["debug.*"]), Signal.TRACES, req)
    assert _attributes(req) == {
        "debug.dump": "a@example.com",
        "debug.token": "[REDACTED:blocked_key]",
        "other": "[REDACTED:email]",
    }


def test_ignored_keys_are_implicitly_allowed() -> None:
    req = _request({"keep.me": "x", "gone": "y"})
    process(engine(allowed_keys=["nothing"], ignored_keys=["keep.*"]), Signal.TRACES, req)
    assert _attributes(req) == {"keep.me": "x"}


def test_a_glob_without_literal_text_still_blocks_every_matching_key() -> None:
    eng = engine(blocked_keys=["?"])  # one-character keys: no literal for the bulk pass
    assert eng.every_key
    req = _request({"a": "1", "bb": "2"})
    process(eng, Signal.TRACES, req)
    assert _attributes(req) == {"a": "[REDACTED:blocked_key]", "bb": "2"}


def test_hash_is_stable_keyed_and_spelling_independent() -> None:
    first = mask("card 4111 1111 1111 1111", action="hash", hash_key=HASH_KEY)
    again = mask("card 4111-1111-1111-1111", action="hash", hash_key=HASH_KEY)
    assert first is not None
    assert first == again
    name, kid, digest = first.removeprefix("card ").split(":")
    assert name == "credit_card"
    assert kid == key_id(HASH_KEY.encode())
    assert len(kid) == 8
    assert len(digest) == 16
    assert int(digest, 16) >= 0
    assert "4111" not in first


def test_hash_changes_with_the_key_and_shows_the_key_id() -> None:
    one = mask("a@example.com", action="hash", hash_key=HASH_KEY)
    two = mask("a@example.com", action="hash", hash_key=HASH_KEY + "-rotated")
    assert one is not None
    assert two is not None
    assert one.split(":")[1] != two.split(":")[1]
    assert one.split(":")[2] != two.split(":")[2]
    other = mask("b@example.com", action="hash", hash_key=HASH_KEY)
    assert other is not None
    assert other.split(":")[2] != one.split(":")[2]
    assert mask("A@Example.COM", action="hash", hash_key=HASH_KEY) == one


def test_hash_of_a_blocked_key_value() -> None:
    eng = engine(actions={"blocked_key": "hash"}, hash_key=HASH_KEY)
    a, b = _request({"db.password": "hunter2"}), _request({"db.password": "hunter2"})
    process(eng, Signal.TRACES, a)
    process(eng, Signal.TRACES, b)
    token = _attributes(a)["db.password"]
    assert isinstance(token, str)
    assert token.startswith("blocked_key:")
    assert "hunter2" not in token
    assert _attributes(b)["db.password"] == token


@pytest.mark.parametrize(
    ("text", "partial"),
    [
        ("4111 1111 1111 1111", "**** **** **** 1111"),
        ("john.doe@example.com", "***@example.com"),
        ("123-45-6789", "***-**-6789"),
        ("+1 415 555 2671", "+* *** *** **71"),
        ("DE89 3704 0044 0532 0130 00", "DE** **** **** **** **30 00"),
        ("203.0.113.7", "203.0.*.*"),
        ("2001:db8::1", "2001:db8:*"),
        ("AKIAIOSFODNN7EXAMPLE", "****MPLE"),
        ("password=hunter2", "password=****"),
    ],
)
def test_mask_partial(text: str, partial: str) -> None:
    assert mask(text, action="mask_partial") == partial


def test_per_detector_actions() -> None:
    out = mask(
        "a@example.com 10.1.2.3 123-45-6789", actions={"email": "mask_partial", "ipv4": "hash"}, hash_key=HASH_KEY
    )
    assert out is not None
    mail, ip, ssn = out.split(" ")
    assert mail == "***@example.com"
    assert ip.startswith("ipv4:")
    assert ssn == "[REDACTED:us_ssn]"


def test_a_blocked_non_string_value_hashes_alike_at_top_level_and_nested() -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    eng = engine(actions={"blocked_key": "hash"}, hash_key=HASH_KEY)
    req = ExportLogsServiceRequest()
    record = req.resource_logs.add().scope_logs.add().log_records.add()
    record.attributes.add(key="api_token").value.int_value = 987654321
    record.body.kvlist_value.values.add(key="api_token").value.int_value = 987654321
    process(eng, Signal.LOGS, req)
    record = req.resource_logs[0].scope_logs[0].log_records[0]  # the request was replaced by the masked one
    top = record.attributes[0].value.string_value
    assert top.startswith("blocked_key:")
    assert record.body.kvlist_value.values[0].value.string_value == top
