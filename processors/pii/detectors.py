"""The built-in detectors: candidate patterns (RE2, over UTF-8 bytes) and the checks that confirm them.

A detector is one or more *shapes*. A shape is a candidate pattern plus a ``confirm`` function that looks at a
candidate in its text and returns the byte spans that really are secrets (none, one, or several: a run of
digit groups may hold a card number that starts at its third group). Patterns carry no ``\\b``, ``^`` or ``$``:
word-boundary and context rules live in ``confirm``, which sees the whole value. That keeps every pattern usable
as-is for the bulk pass over a serialized batch, where a protobuf length byte right before a value could
otherwise hide a match (a length of 65 is the byte "A", a word character).

Pure: no I/O, no state. See validators.py for the checks themselves and docs/pii.md for what each detector
deliberately does not match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from processors.pii import validators as v
from processors.pii.regex import Span

Confirm = Callable[[bytes, Sequence[Span]], list[Span]]


@dataclass(frozen=True, slots=True)
class Shape:
    detector: str
    pattern: bytes
    confirm: Confirm
    # The pattern of the bulk pass and the per-value Sets (bulk.py), when not ``pattern``. For every span
    # ``confirm`` accepts it must match a span overlapping the value holding it, both in a serialized batch and
    # in the value scanned alone: a part of every match that RE2's DFA follows more cheaply (an address from its
    # "@", so that not every word is a candidate), a narrower pattern (cards need an issuer digit), or the
    # match with the byte before it (AFTER_NON_DIGIT).
    loose: bytes | None = None

    @property
    def bulk_pattern(self) -> bytes:
        return self.pattern if self.loose is None else self.loose


def _at(text: bytes, i: int) -> int:
    """The byte at ``i``, or -1 outside the text (start or end of the value)."""
    return text[i] if 0 <= i < len(text) else -1


def _digit_at(text: bytes, i: int) -> bool:
    return 0 <= i < len(text) and text[i] in b"0123456789"


def _alnum_at(text: bytes, i: int) -> bool:
    return 0 <= i < len(text) and v.is_alnum(text[i])


# --- email -------------------------------------------------------------------------------------------------

# Likely file names that look like addresses ("logo@2x.png"): no such top-level domains exist.
_FILE_SUFFIXES = frozenset(b"png jpg jpeg gif svg webp ico bmp css js mjs map json txt log html htm".split())
_EMAIL = rb"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_EMAIL_LOOSE = rb"(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"


def _email(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[0]
    candidate = text[s:e]
    at = candidate.find(b"@")
    sep = 1
    if at < 0:  # percent-encoded "@" (a URL path or a logged query string)
        at, sep = candidate.find(b"%40"), 3
    local, domain = candidate[:at], candidate[at + sep :]
    stripped = local.lstrip(b".")
    if not stripped:
        return []
    s += len(local) - len(stripped)
    # Labels are non-empty and do not start or end with a dash (the pattern allows "a-.b" and "a..b"). find(), not
    # ``in``: see scan._QUESTION_MARK.
    if domain.find(b"..") >= 0 or domain.find(b"-.") >= 0 or domain.find(b".-") >= 0:
        return []
    if domain[0] == 0x2D or domain[-1] == 0x2D:
        return []
    if domain[domain.rfind(b".") + 1 :].lower() in _FILE_SUFFIXES:
        return []
    return [(s, e)]


# --- credit_card ---------------------------------------------------------------------------------------------

_CARD = rb"[0-9](?:[ -]?[0-9]){12,}"
# Taken along, by the bulk patterns of shapes whose ``confirm`` wants no digit right before them (cards,
# North American and trunk phone numbers), before each candidate: one byte that is not a digit, then perhaps
# one more. Without it RE2's DFA follows a candidate from every digit of a long number that could start one,
# and the sets of such candidates kept a pass of cards and the other digit shapes building new states on fresh
# data (that pass: 1.3 ms per 530 KB request with "[2-6]..." for cards, 1.13 ms with this before cards and
# phones; see bulk.py). Inside a value, the byte before such a candidate is not a digit. Before a value come its
# field's tag and varint length, and of those only the length's last byte can be a digit (a length of 48-57 is
# "0"-"9"): the optional byte. "^" is the start of a value scanned alone (the per-value Sets). The pass holding
# these reads bytes (bulk.DIGIT_PASS): in UTF-8, "[^0-9]" matches no varint byte above 0x7F.
AFTER_NON_DIGIT = rb"(?:^|[^0-9])[\x00-\xff]?"
# Every issuer prefix starts with 2-6 (validators.card_network), so 13-digit epoch milliseconds need not be
# looked at.
_CARD_LOOSE = AFTER_NON_DIGIT + rb"[2-6](?:[ -]?[0-9]){12,}"
_CARD_FIRST = b"23456"


def _card(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[0]
    candidate = text[s:e]
    if _digit_at(text, s - 1) or _digit_at(text, e):
        return []
    if len(candidate) <= 19 and candidate.isdigit():  # the common case: one unbroken number
        return [(s, e)] if v.card_ok(candidate) else []
    # Digit groups with their offsets; a card may start and end at any group boundary, so a card next to an
    # order number ("1234 4111 1111 1111 1111") is still found. Separators are single characters.
    groups: list[tuple[int, bytes]] = []
    offset = s
    for group in candidate.replace(b"-", b" ").split(b" "):
        groups.append((offset, group))
        offset += len(group) + 1
    found: list[Span] = []
    n = len(groups)
    for i in range(n):
        head = groups[i][1]
        if not head or head[0] not in _CARD_FIRST:  # no issuer prefix starts here (validators.card_network)
            continue
        digits = b""
        for j in range(i, n):
            digits += groups[j][1]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and v.card_ok(digits):
                found.append((groups[i][0], groups[j][0] + len(groups[j][1])))
    return found


# --- us_ssn ----------------------------------------------------------------------------------------------------

_SSN = rb"[0-9]{3}-[0-9]{2}-[0-9]{4}"


def _ssn(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[0]
    if _digit_at(text, s - 1) or _digit_at(text, e):
        return []
    # Part of a longer dashed number (a phone, a date-like id): "1-123-45-6789", "123-45-6789-1".
    if (_at(text, s - 1) == 0x2D and _digit_at(text, s - 2)) or (_at(text, e) == 0x2D and _digit_at(text, e + 1)):
        return []
    if not v.ssn_ok(text[s : s + 3], text[s + 4 : s + 6], text[s + 7 : e]):
        return []
    return [(s, e)]


# --- ipv4 ------------------------------------------------------------------------------------------------------

_IPV4 = rb"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"
# At least one of the last three octets is not zero: network addresses (A.0.0.0) are not confirmed, and
# Chrome's reduced user agent ("Chrome/120.0.0.0", on most HTTP spans) must not cost a strict scan.
_NZ = rb"(?:[1-9][0-9]{0,2}|0[0-9]{1,2})"
_O = rb"[0-9]{1,3}"
_IPV4_LOOSE = (
    _O + rb"\.(?:" + _O + rb"\." + _O + rb"\." + _NZ + rb"|" + _O + rb"\." + _NZ + rb"\." + _O
    + rb"|" + _NZ + rb"\." + _O + rb"\." + _O + rb")"
)  # fmt: skip


def _ipv4(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[0]
    before = _at(text, s - 1)
    # Part of a longer dotted sequence (five-part versions, OIDs) or a version with a "v" prefix.
    if before != -1 and before in b"0123456789.vV":
        return []
    after = _at(text, e)
    if after != -1 and (after in b"0123456789" or (after == 0x2E and _digit_at(text, e + 1))):
        return []
    return [(s, e)] if v.ipv4_ok(text[s:e]) else []


# --- ipv6 ------------------------------------------------------------------------------------------------------

_H = rb"[0-9A-Fa-f]{1,4}"
_V4 = rb"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
_IPV6 = (
    rb"(?:" + _H + rb":){7}" + _H
    + rb"|(?:" + _H + rb":){6}" + _V4
    + rb"|(?:" + _H + rb"(?::" + _H + rb"){0,6})?::(?:(?:" + _H + rb":){0,5}(?:" + _V4 + rb"|" + _H + rb"))?"
)  # fmt: skip


def _hexish(c: int) -> bool:
    return c != -1 and (c in b"0123456789abcdefABCDEF:")


def _ipv6(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[0]
    before, after = _at(text, s - 1), _at(text, e)
    # "std::vector", "Foo::Bar", "a:b:c:d:e:f:g:h:i": a hex-looking piece glued to a word or to more groups is
    # not an address; a colon that only labels it ("peer:fe80::1", "2001:db8::1: refused") is fine.
    if before != -1 and (v.is_alnum(before) or before == 0x2E or (before == 0x3A and _hexish(_at(text, s - 2)))):
        return []
    if after != -1 and (
        v.is_alnum(after) or (after == 0x2E and _digit_at(text, e + 1)) or (after == 0x3A and _hexish(_at(text, e + 1)))
    ):
        return []
    return [(s, e)] if v.ipv6_ok(text[s:e]) else []


# --- phone -----------------------------------------------------------------------------------------------------

# E.164 with the usual separators: "+1 (415) 555-2671", "+44 (0)20 7946 0958", "+4930123456".
_PHONE_E164 = rb"\+[1-9](?:[ .()-]{0,2}[0-9]){6,16}"
# North American: "(415) 555-2671", "415-555-2671", "415.555.2671", "1-800-555-0199".
_PHONE_NANP = rb"(?:1[ .-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}"
# National numbers with a trunk 0, 10 or 11 digits, grouped: "020 7946 0958", "07700 900123", "01 23 45 67 89".
_PHONE_TRUNK = rb"0[1-9](?:[ -]?[0-9]){8,9}"
# ``confirm`` wants 10-11 digits and a separator after a first group of 2-9 digits: plain digit runs (epoch
# milliseconds hold "0[1-9]" and 8 more digits all the time) and dates need not be looked at. One alternative
# per length of the first group.
_PHONE_TRUNK_LOOSE = AFTER_NON_DIGIT + b"(?:%b)" % b"|".join(
    b"0[1-9][0-9]{%d}[ -][0-9](?:[ -]?[0-9]){%d,%d}" % (k, 7 - k, 8 - k) for k in range(8)
)
_PHONE_NANP_LOOSE = AFTER_NON_DIGIT + b"(?:%b)" % _PHONE_NANP


def _digits_of(candidate: bytes) -> int:
    return len(candidate.translate(None, b" .()-"))  # the phone patterns hold only digits and these


def _phone_context_ok(text: bytes, s: int, e: int) -> bool:
    before, after = _at(text, s - 1), _at(text, e)
    if before != -1 and (v.is_alnum(before) or before in b"+.-"):
        return False
    # Followed by more digits or by a dotted/dashed continuation: a longer number, a version, a date.
    return not (after != -1 and (after in b"0123456789" or (after in b".-" and _digit_at(text, e + 1))))


def _phone_e164(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[0]
    candidate = text[s:e]
    if candidate.count(b"(") != candidate.count(b")") or not 8 <= _digits_of(candidate) <= 16:
        return []
    return [(s, e)] if _phone_context_ok(text, s, e) else []


def _phone_nanp(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[0]
    return [(s, e)] if _phone_context_ok(text, s, e) else []


def _phone_trunk(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[0]
    candidate = text[s:e]
    # Unformatted zero-padded numbers are ids, not phone numbers; a written number has groups.
    if 0x20 not in candidate and 0x2D not in candidate:  # " ", "-" (as ints: see scan._QUESTION_MARK)
        return []
    if any(len(group) < 2 for group in candidate.replace(b"-", b" ").split(b" ")):
        return []
    return [(s, e)] if _phone_context_ok(text, s, e) else []


# --- jwt -------------------------------------------------------------------------------------------------------

_JWT = rb"eyJ[A-Za-z0-9_-]{8,}\.ey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
_JWT_LOOSE = rb"eyJ[A-Za-z0-9_-]{8,}\.ey"


def _jwt(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[0]
    before = _at(text, s - 1)
    if before != -1 and (v.is_alnum(before) or before in b"_-"):
        return []
    header = text[s : text.index(b".", s)]
    return [(s, e)] if v.jwt_header_ok(header) else []


# --- credentials -----------------------------------------------------------------------------------------------

_BEARER = rb"(?i:bearer)[ \t]+([A-Za-z0-9._~+/-]+=*)"
_BASIC = rb"(?i:basic)[ \t]+([A-Za-z0-9+/]{6,}={0,2})"
_AWS_KEY_ID = rb"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}"
_PROVIDER_KEY = (
    rb"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}"  # Stripe secret and restricted keys
    rb"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    rb"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    rb"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    rb"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    rb"|npm_[A-Za-z0-9]{36}"  # npm
    rb"|SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"  # SendGrid
    rb"|sk-(?:proj-|ant-[a-z0-9]+-)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
)
_PRIVATE_KEY = (
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[A-Za-z0-9+/=\s\\]*(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?"
)
# Words naming a secret. The bulk pass looks for them alone: every assignment below starts with one.
_SECRET_WORDS = (
    rb"(?i:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|authorization"
    rb"|credential)"
)
# "password=hunter2", "api_key: abc", '"secret": "x y"', JSON inside a string ('\"token\":\"abc\"').
_ASSIGNMENT = (
    _SECRET_WORDS + rb"[A-Za-z0-9_.-]*(?:\\?[\"'])?[ \t]*[:=][ \t]*"
    rb"(?:\\?\"([^\"\\]*)|'([^'\\]*)|([^\s\"'&,;<>()\[\]{}\\]+))"
)
_URL_USERINFO = rb"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:([^/\s@]+)@"
_URL_USERINFO_LOOSE = rb"://[^/\s:@]+:[^/\s@]+@"


def _first_group(m: Sequence[Span]) -> list[Span]:
    """The first capturing group that took part and is not empty (the secret part of a key=value shape)."""
    for s, e in m[1:]:
        if s >= 0 and e > s:
            return [(s, e)]
    return []


def _bearer(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[1]
    token = text[s:e]
    # "bearer token", "Bearer realm=...": a word is not a credential.
    if e - s < 8 or (token.rstrip(b"=").isalpha() and token.islower()):
        return []
    return [(s, e)]


def _basic(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[1]
    return [(s, e)] if v.basic_credentials_ok(text[s:e]) else []


def _isolated_token(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[0]
    if _alnum_at(text, s - 1) or _alnum_at(text, e):
        return []
    return [(s, e)]


def _whole(text: bytes, m: Sequence[Span]) -> list[Span]:
    return [m[0]]


def _group(text: bytes, m: Sequence[Span]) -> list[Span]:
    return _first_group(m)


# "Authorization: Bearer <token>": the scheme is not the secret; the bearer/basic shapes take the token.
_AUTH_SCHEMES = frozenset((b"bearer", b"basic", b"digest", b"negotiate", b"token"))


def _assignment(text: bytes, m: Sequence[Span]) -> list[Span]:
    found = _first_group(m)
    if found and text[found[0][0] : found[0][1]].lower() in _AUTH_SCHEMES:
        return []
    return found


# --- iban ------------------------------------------------------------------------------------------------------

_IBAN = rb"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}"


def _iban(text: bytes, m: Sequence[Span]) -> list[Span]:
    s, e = m[0]
    if _alnum_at(text, s - 1):
        return []
    length = v.IBAN_LENGTHS.get(text[s : s + 2])
    if length is None:
        return []
    # The pattern is greedy ("DE89 3704 0044 0532 0130 00 EUR 12"): cut at the country's length.
    end = s
    compact = b""
    for group in text[s:e].split(b" "):
        take = length - len(compact)
        compact += group[:take]
        end += min(len(group), take)
        if len(compact) == length:
            break
        end += 1  # the space after this group
    if len(compact) != length or _alnum_at(text, end):
        return []
    return [(s, end)] if v.iban_ok(compact) else []


DetectorName = Literal["email", "credit_card", "us_ssn", "ipv4", "ipv6", "phone", "jwt", "credentials", "iban"]
DETECTOR_NAMES: tuple[DetectorName, ...] = get_args(DetectorName)

SHAPES: tuple[Shape, ...] = (
    Shape("email", _EMAIL, _email, _EMAIL_LOOSE),
    Shape("credit_card", _CARD, _card, _CARD_LOOSE),
    Shape("us_ssn", _SSN, _ssn),
    Shape("ipv4", _IPV4, _ipv4, _IPV4_LOOSE),
    Shape("ipv6", _IPV6, _ipv6),
    Shape("phone", _PHONE_E164, _phone_e164),
    Shape("phone", _PHONE_NANP, _phone_nanp, _PHONE_NANP_LOOSE),
    Shape("phone", _PHONE_TRUNK, _phone_trunk, _PHONE_TRUNK_LOOSE),
    Shape("jwt", _JWT, _jwt, _JWT_LOOSE),
    Shape("credentials", _BEARER, _bearer),
    Shape("credentials", _BASIC, _basic),
    Shape("credentials", _AWS_KEY_ID, _isolated_token),
    Shape("credentials", _PROVIDER_KEY, _isolated_token),
    Shape("credentials", _PRIVATE_KEY, _whole),
    Shape("credentials", _ASSIGNMENT, _assignment, _SECRET_WORDS),
    Shape("credentials", _URL_USERINFO, _group, _URL_USERINFO_LOOSE),
    Shape("iban", _IBAN, _iban),
)


def shapes_for(detectors: Sequence[str]) -> tuple[Shape, ...]:
    wanted = set(detectors)
    return tuple(shape for shape in SHAPES if shape.detector in wanted)
