"""Detection and masking of single values with the default configuration: the built-in corpus (positives with
their pinned output, near misses untouched), overlapping matches, hidden candidates, URL query parameters."""

from __future__ import annotations

import pytest

from processors.pii.bulk import DIGIT_DETECTORS, DIGIT_PASS, SHAPE
from processors.pii.corpus import DETECTORS_COVERED, NEAR_MISSES, POSITIVES, NearMiss, Sample
from processors.pii.detectors import AFTER_NON_DIGIT, DETECTOR_NAMES, SHAPES, Shape
from processors.pii.regex import Pattern
from tests.processors.pii.helpers import engine, mask

DEFAULT = engine()


def test_corpus_covers_every_detector() -> None:
    assert set(DETECTOR_NAMES) == DETECTORS_COVERED


@pytest.mark.parametrize("sample", POSITIVES, ids=lambda s: f"{s.detector}:{s.text[:30]}")
def test_positive_is_masked(sample: Sample) -> None:
    out = DEFAULT.mask_text(sample.text)
    assert out is not None
    assert sample.secret not in out
    if sample.expected is not None:
        assert out == sample.expected


@pytest.mark.parametrize("sample", POSITIVES, ids=lambda s: f"{s.detector}:{s.text[:30]}")
def test_positive_is_caught_by_its_own_detector(sample: Sample) -> None:
    out = mask(sample.text, detectors=[sample.detector], blocked_keys=[])
    assert out is not None
    assert sample.secret not in out


@pytest.mark.parametrize("miss", NEAR_MISSES, ids=lambda m: m.why)
def test_near_miss_is_left_alone(miss: NearMiss) -> None:
    assert DEFAULT.mask_text(miss.text) == miss.text


def test_version_strings_decision() -> None:
    # Four numeric parts cannot be told from an address: masked. A "v" prefix, a fifth part, three parts, or a
    # network address A.0.0.0 (Chrome's reduced user agent "Chrome/120.0.0.0") are versions: kept.
    assert DEFAULT.mask_text("1.2.3.4") == "[REDACTED:ipv4]"
    assert DEFAULT.mask_text("release 2.10.0.0") == "release [REDACTED:ipv4]"
    for version in ("v1.2.3.4", "1.2.3.4.5", "1.2.3", "Chrome/120.0.0.0", "OPR/105.0.0.0"):
        assert DEFAULT.mask_text(version) == version


def test_several_matches_in_one_value_are_all_masked_in_order() -> None:
    text = "a@example.com then 4111 1111 1111 1111 then 10.1.2.3 then b@example.org"
    assert DEFAULT.mask_text(text) == (
        "[REDACTED:email] then [REDACTED:credit_card] then [REDACTED:ipv4] then [REDACTED:email]"
    )


def test_a_failed_candidate_does_not_hide_another_detectors_match() -> None:
    # One digit run: as a card candidate it fails (no network, bad Luhn), but it holds an SSN.
    text = "ref 123-45-6789 0000 1111"
    combined = Pattern(b"|".join(b"(?:" + s.pattern + b")" for s in SHAPES))
    first = next(combined.spans(text.encode()))
    assert first == (4, len(text))  # a combined pattern reports only the failing card candidate here
    assert DEFAULT.mask_text(text) == "ref [REDACTED:us_ssn] 0000 1111"


def test_a_card_next_to_other_digit_groups_is_found() -> None:
    assert DEFAULT.mask_text("order 1234 4111 1111 1111 1111 qty 2") == "order 1234 [REDACTED:credit_card] qty 2"
    assert DEFAULT.mask_text("4111111111111111 5555555555554444") == "[REDACTED:credit_card] [REDACTED:credit_card]"


def test_overlapping_matches_merge_into_one_region_with_the_strongest_action() -> None:
    # The card digits are the email's local part: one region, no partial leak between two replacements.
    text = "4111111111111111@example.com"
    assert DEFAULT.mask_text(text) == "[REDACTED:email]"
    hashed = mask(text, actions={"email": "hash", "credit_card": "redact"}, hash_key="k" * 16)
    assert hashed == "[REDACTED:credit_card]"  # redact is stronger than hash
    dropped = mask(text, actions={"credit_card": "drop"})
    assert dropped is None


def test_mask_partial_cannot_be_shared_by_two_different_secrets() -> None:
    out = mask("4111111111111111@example.com", action="mask_partial")
    assert out == "[REDACTED:email]"


def test_url_query_values_are_decoded_and_masked_as_values() -> None:
    url = "https://shop.example.com/cb?email=john.doe%40example.com&q=red%20shoes&phone=%2B14155552671"
    assert DEFAULT.mask_text(url) == (
        "https://shop.example.com/cb?email=[REDACTED:email]&q=red%20shoes&phone=[REDACTED:phone]"
    )


def test_url_query_parameter_named_like_a_blocked_key_is_replaced_whole() -> None:
    url = "/login?user=ann&session_token=abc%20def&next=%2Fhome"
    assert DEFAULT.mask_text(url) == "/login?user=ann&session_token=[REDACTED:blocked_key]&next=%2Fhome"
    assert mask("/p?user.id=42&x=1", blocked_keys=["user.id"]) == "/p?user.id=[REDACTED:blocked_key]&x=1"


def test_mask_partial_in_a_url_keeps_the_domain() -> None:
    assert mask("/cb?email=john%40example.com", action="mask_partial") == "/cb?email=***%40example.com"
    # A phone number only visible after decoding: masked on the decoded value, then encoded again.
    assert mask("/cb?to=%2B1%20415%20555%202671", action="mask_partial") == "/cb?to=%2B*%20***%20***%20**71"


def test_user_rule_with_and_without_group() -> None:
    rules = [
        {"name": "customer", "pattern": r"\bCUST-[0-9]{6}\b"},
        {"name": "member", "pattern": r"member=([0-9]+)", "action": "hash"},
    ]
    out = mask("CUST-123456 member=9876 ok", rules=rules, hash_key="k" * 16)
    assert out is not None
    assert out.startswith("[REDACTED:customer] member=member:")
    assert "9876" not in out
    assert "123456" not in out


def test_custom_redaction_string() -> None:
    assert mask("mail a@example.com", redaction="***") == "mail ***"
    assert mask("mail a@example.com", redaction="<{name} removed>") == "mail <email removed>"


@pytest.mark.parametrize("detectors", [["email"], ["phone", "jwt"], ["iban"], ["credentials"]])
def test_any_subset_of_detectors_works_through_the_bulk_passes(detectors: list[str]) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from pipeline.model import Signal
    from tests.processors.pii.helpers import process, strings

    eng = engine(detectors=detectors, blocked_keys=[])
    samples = [s for s in POSITIVES if s.detector in detectors]
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    for i, sample in enumerate(samples):
        span.attributes.add(key=f"k{i}").value.string_value = sample.text
    process(eng, Signal.TRACES, req)
    for sample in samples:
        assert not any(sample.secret in s for s in strings(req))


def test_shapes_taking_the_byte_before_them_along_run_bytewise_and_nothing_else_does() -> None:
    # "[^0-9]" must match the varint bytes above 0x7F before a value (detectors.AFTER_NON_DIGIT), which only
    # RE2's Latin-1 mode does; user rules, key literals and encodings keep UTF-8 semantics (case folding, ".").
    eng = engine(rules=[{"name": "ticket", "pattern": "(?i)tck-[0-9]+"}])
    taking = [a for a in eng.scanner.bulk.alternatives if a.source.startswith(AFTER_NON_DIGIT)]
    assert len(taking) == 3  # cards, North American and trunk phone numbers
    assert all(a.bulk_pass == DIGIT_PASS for a in taking)
    for a in eng.scanner.bulk.alternatives:
        if a.bulk_pass == DIGIT_PASS:
            assert a.kind == SHAPE, a
            assert a.source.isascii(), a


@pytest.mark.parametrize("shape", [s for s in SHAPES if s.loose is not None], ids=lambda s: s.loose.decode()[:40])
def test_a_shapes_bulk_pattern_finds_every_value_its_strict_pattern_confirms_something_in(shape: Shape) -> None:
    strict = Pattern(shape.pattern)
    bulk = Pattern(shape.bulk_pattern, latin1=shape.detector in DIGIT_DETECTORS)
    confirmed = 0
    for sample in POSITIVES:
        for text in (sample.text, f"x {sample.text}.", f"({sample.text})"):
            value = text.encode()
            if any(shape.confirm(value, spans) for spans in strict.matches(value)):
                confirmed += 1
                assert bulk.search(value), (shape.detector, text)
    assert confirmed  # the corpus holds positives of this shape
