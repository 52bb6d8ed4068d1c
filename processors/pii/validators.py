"""Strict validators for PII candidates: pure functions over ASCII bytes, no I/O.

A regular expression only finds the shape of a secret; these checks decide whether a candidate is one. They
exist to keep false positives low: Luhn alone passes one random digit string in ten (13-digit epoch-millisecond
timestamps included), so card numbers must also carry a real issuer prefix and a length that network uses;
IBANs must have their country's exact length and pass mod-97; SSNs must not use areas or groups the SSA never
issues.
"""

from __future__ import annotations

import base64
import binascii
import socket

_DIGITS = frozenset(b"0123456789")
_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# Luhn: every second digit from the right is doubled; the digit sum of 2*d is itself one digit.
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_ok(digits: bytes) -> bool:
    """Luhn (mod 10) checksum over ASCII digits."""
    total = sum(digits[-1::-2]) + sum(digits[-2::-2].translate(_LUHN_DOUBLED)) - 48 * len(digits)
    return total % 10 == 0


def card_network(digits: bytes) -> str | None:
    """The card network whose issuer prefix and length match ``digits`` (ASCII digits), or None."""
    n = len(digits)
    if n < 12 or n > 19:
        return None
    # The prefixes as numbers straight from the bytes: this runs for every card-shaped candidate (most of them
    # not cards), and slicing and parsing each prefix had cost more than the rest of the check.
    first = digits[0] - 48
    p2 = first * 10 + digits[1] - 48
    p3 = p2 * 10 + digits[2] - 48
    p4 = p3 * 10 + digits[3] - 48
    if first == 4:
        return "visa" if n == 13 or n == 16 or n == 19 else None
    if first == 5:
        if 51 <= p2 <= 55:
            return "mastercard" if n == 16 else None
        if p4 == 5018 or p4 == 5020 or p4 == 5038 or p4 == 5893:
            return "maestro"
        return None
    if first == 2:
        if 2221 <= p4 <= 2720:
            return "mastercard" if n == 16 else None
        if 2200 <= p4 <= 2204:
            return "mir" if 16 <= n <= 19 else None
        return None
    if first == 3:
        if p2 == 34 or p2 == 37:
            return "amex" if n == 15 else None
        if 3528 <= p4 <= 3589:
            return "jcb" if n >= 16 else None
        if 300 <= p3 <= 305 or p2 == 36 or p2 == 38 or p2 == 39 or p4 == 3095:
            return "diners" if n >= 14 else None
        return None
    if first == 6:
        if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65:
            return "discover" if n >= 16 else None
        if p4 == 6304 or p4 == 6759 or p4 == 6761 or p4 == 6762 or p4 == 6763:
            return "maestro"
        if p2 == 62:
            return "unionpay" if n >= 16 else None
        return None
    return None


def card_ok(digits: bytes) -> bool:
    """A payment card number: a network's prefix and length, and a valid Luhn checksum."""
    return 13 <= len(digits) <= 19 and card_network(digits) is not None and luhn_ok(digits)


# IBAN lengths per country (SWIFT IBAN registry); a code missing here is not an IBAN country.
IBAN_LENGTHS: dict[bytes, int] = {
    k.encode(): v
    for k, v in {
        "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
        "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
        "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
        "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
        "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
        "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
        "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
        "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
        "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
    }.items()
}  # fmt: skip

# ISO 13616 mod-97: letters count as two digits, A=10 ... Z=35.
_IBAN_NUMERIC = {c: str(c - 48) if c < 65 else str(c - 55) for c in b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def iban_ok(compact: bytes) -> bool:
    """An IBAN without spaces, upper case: known country, that country's length, mod-97 == 1."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    bban = compact[4:]
    if bban.isdigit():  # the common case, without the string of digits: the country's letters are 10..35
        country = (compact[0] - 55) * 100 + compact[1] - 55
        return (int(bban) * 1_000_000 + country * 100 + int(compact[2:4])) % 97 == 1
    rearranged = bban + compact[:4]
    try:
        number = "".join(map(_IBAN_NUMERIC.__getitem__, rearranged))
    except KeyError:
        return False
    return int(number) % 97 == 1


def ssn_ok(area: bytes, group: bytes, serial: bytes) -> bool:
    """A US SSN the SSA could have issued: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    return area != b"000" and area != b"666" and area[0] != 0x39 and group != b"00" and serial != b"0000"


def ipv4_ok(candidate: bytes) -> bool:
    """Four decimal octets <= 255. Not personal data, so not confirmed: loopback (127/8), the "this network"
    block (0/8) and network addresses A.0.0.0 (also the shape of versions such as "Chrome/120.0.0.0")."""
    parts = candidate.split(b".")
    if len(parts) != 4:
        return False
    a, b, c, d = map(int, parts)
    if a > 255 or b > 255 or c > 255 or d > 255:
        return False
    return a != 127 and a != 0 and (b or c or d) != 0


_IPV6_UNSPECIFIED = bytes(16)
_IPV6_LOOPBACK = bytes(15) + b"\x01"


def ipv6_ok(candidate: bytes) -> bool:
    """A valid IPv6 address in full or compressed form; unspecified (::) and loopback (::1) excluded."""
    try:
        packed = socket.inet_pton(socket.AF_INET6, candidate.decode("ascii"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return packed != _IPV6_UNSPECIFIED and packed != _IPV6_LOOPBACK


# A service signs every token with the same header: remember the verdicts (bounded).
_JWT_HEADERS: dict[bytes, bool] = {}


def jwt_header_ok(header: bytes) -> bool:
    """The first JWT segment decodes (base64url) to a JSON object naming an algorithm or type."""
    known = _JWT_HEADERS.get(header)
    if known is not None:
        return known
    try:
        decoded = base64.urlsafe_b64decode(header + b"=" * (-len(header) % 4))
        ok = decoded.startswith(b"{") and (b'"alg"' in decoded or b'"typ"' in decoded)
    except (binascii.Error, ValueError):
        ok = False
    if len(_JWT_HEADERS) >= 256:
        _JWT_HEADERS.clear()
    _JWT_HEADERS[header] = ok
    return ok


def basic_credentials_ok(token: bytes) -> bool:
    """An HTTP Basic credential: base64 of printable ``user:password``. Keeps "basic authentication" out."""
    if len(token) % 4:
        return False
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return False
    return 0x3A in decoded and len(decoded) >= 3 and all(32 <= c < 127 for c in decoded)  # ":"


def is_digit(c: int) -> bool:
    return c in _DIGITS


def is_alnum(c: int) -> bool:
    return c in _ALNUM
