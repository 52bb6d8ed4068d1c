"""The strict validators: card networks and Luhn, IBAN mod-97, SSN areas, addresses, JWT and Basic shapes."""

from __future__ import annotations

import random

import pytest

from processors.pii import validators as v

# Documented test numbers of each network.
CARDS = {
    "4111111111111111": "visa",
    "4012888888881881": "visa",
    "4222222222222": "visa",
    "5555555555554444": "mastercard",
    "5105105105105100": "mastercard",
    "2223003122003222": "mastercard",
    "378282246310005": "amex",
    "371449635398431": "amex",
    "6011111111111117": "discover",
    "6011000990139424": "discover",
    "30569309025904": "diners",
    "38520000023237": "diners",
    "3530111333300000": "jcb",
    "3566002020360505": "jcb",
    "6200000000000005": "unionpay",
}


@pytest.mark.parametrize(("number", "network"), CARDS.items())
def test_documented_test_cards_pass(number: str, network: str) -> None:
    assert v.luhn_ok(number.encode())
    assert v.card_network(number.encode()) == network
    assert v.card_ok(number.encode())


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111112",  # bad Luhn
        "1700000000000",  # epoch milliseconds: Luhn-valid or not, no network starts with 1
        "1700000000006",
        "9111111111111111",  # no network starts with 9
        "411111111111111",  # Visa prefix, 15 digits: not a Visa length
        "378282246310005000",  # Amex prefix, 18 digits
        "0000000000000",
    ],
)
def test_card_near_misses_fail(number: str) -> None:
    assert not v.card_ok(number.encode())


def test_luhn_alone_passes_one_in_ten_so_prefix_and_length_matter() -> None:
    epoch_like = [str(1_700_000_000_000 + i).encode() for i in range(1000)]
    assert sum(v.luhn_ok(d) for d in epoch_like) == 100
    assert not any(v.card_ok(d) for d in epoch_like)


@pytest.mark.parametrize(
    ("iban", "ok"),
    [
        ("DE89370400440532013000", True),
        ("GB82WEST12345698765432", True),
        ("FR1420041010050500013M02606", True),
        ("NL91ABNA0417164300", True),
        ("NO9386011117947", True),
        ("DE89370400440532013001", False),  # mod-97 fails
        ("DE8937040044053201300", False),  # one short for DE
        ("ZZ89370400440532013000", False),  # no such country
        ("DEXX370400440532013000", False),  # check digits not digits
    ],
)
def test_iban(iban: str, ok: bool) -> None:
    assert v.iban_ok(iban.encode()) is ok


@pytest.mark.parametrize(
    ("ssn", "ok"),
    [
        ("123-45-6789", True),
        ("078-05-1120", True),
        ("000-12-3456", False),
        ("666-12-3456", False),
        ("900-12-3456", False),
        ("999-12-3456", False),
        ("123-00-4567", False),
        ("123-45-0000", False),
    ],
)
def test_ssn_areas_groups_serials(ssn: str, ok: bool) -> None:
    area, group, serial = ssn.encode().split(b"-")
    assert v.ssn_ok(area, group, serial) is ok


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("203.0.113.7", True),
        ("10.0.0.1", True),
        ("1.2.3.4", True),
        ("256.1.1.1", False),
        ("127.0.0.1", False),
        ("0.0.0.0", False),
        ("120.0.0.0", False),  # a network address, and Chrome's reduced user-agent version
    ],
)
def test_ipv4(address: str, ok: bool) -> None:
    assert v.ipv4_ok(address.encode()) is ok


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("2001:db8::1", True),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", True),
        ("::ffff:192.0.2.1", True),
        ("::1", False),
        ("::", False),
        ("1:2:3:4:5:6:7", False),
        ("10:30:00", False),
    ],
)
def test_ipv6(address: str, ok: bool) -> None:
    assert v.ipv6_ok(address.encode()) is ok


def test_jwt_header_and_basic_credentials() -> None:
    assert v.jwt_header_ok(b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9")
    assert not v.jwt_header_ok(b"eyJmb28iOiJiYXIifQ")  # {"foo":"bar"}: no alg, no typ
    assert v.basic_credentials_ok(b"dXNlcjpwYXNzd29yZA==")  # user:password
    assert not v.basic_credentials_ok(b"authentication")
    assert not v.basic_credentials_ok(b"aGVsbG8gd29ybGQ=")  # "hello world": no colon


def _iban_reference(compact: bytes) -> bool:
    """ISO 13616 mod-97 spelled out: every letter as two digits, the whole number at once."""
    if v.IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = (compact[4:] + compact[:4]).decode()
    if not all(c.isdigit() or "A" <= c <= "Z" for c in rearranged):
        return False
    return int("".join(c if c.isdigit() else str(ord(c) - 55) for c in rearranged)) % 97 == 1


def test_iban_matches_reference() -> None:
    """The all-digit BBAN shortcut and the letter path agree with the plain definition."""
    rng = random.Random(5)
    countries = sorted(v.IBAN_LENGTHS)
    valid = 0
    for _ in range(20000):
        country = rng.choice(countries)
        length = v.IBAN_LENGTHS[country]
        alphabet = "0123456789" if rng.random() < 0.8 else "0123456789AZKQ"
        body = "".join(rng.choice(alphabet) for _ in range(length - 4)).encode()
        # A correct check (computed) half of the time, a random one otherwise.
        check = b"%02d" % rng.randrange(100)
        if rng.random() < 0.5:
            for c in range(100):
                if _iban_reference(country + b"%02d" % c + body):
                    check = b"%02d" % c
                    break
        compact = country + check + body
        valid += v.iban_ok(compact)
        assert v.iban_ok(compact) is _iban_reference(compact), compact
    assert valid > 1000
