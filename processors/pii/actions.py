"""What replaces a match: redact, mask_partial, hash (keyed HMAC-SHA256) or drop. Pure functions over bytes.

- ``redact``: the configured string (default ``[REDACTED:<name>]``).
- ``mask_partial``: keeps what is useful and not secret: a card's last 4 digits, an email's domain, an SSN's
  serial, an IBAN's country and last 4, an IPv4's /16, an IPv6's /32, a JWT's header; for every other rule the
  last 4 characters of matches of at least 12 characters (shorter ones are masked whole).
- ``hash``: ``<name>:<key_id>:<16 hex>``, the HMAC-SHA256 of the normalized match under ``hash_key``. The same
  value always gives the same token, so joins and counts still work; ``key_id`` (first 8 hex digits of
  SHA-256 of the key) changes with the key, so a rotation is visible in the data. No unkeyed hash is offered:
  a plain hash of a card number or a phone number is reversed by enumerating the small space.
- ``drop``: the attribute holding the match is removed (where nothing can be removed, the match is redacted).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Action = Literal["redact", "mask_partial", "hash", "drop"]
ACTIONS: tuple[Action, ...] = ("redact", "mask_partial", "hash", "drop")
# When matches overlap, the merged region takes the strongest action.
STRENGTH: dict[str, int] = {"mask_partial": 0, "hash": 1, "redact": 2, "drop": 3}
HASH_HEX_CHARS = 16


@dataclass(frozen=True, slots=True)
class Rule:
    """A detector, a user rule or the blocked-key rule, with the action configured for it."""

    name: str
    action: Action
    # Lower ranks win ties between overlapping matches of equal strength.
    rank: int
    builtin: bool = False


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _digits_and_letters(text: bytes) -> bytes:
    return bytes(c for c in text if 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122).upper()


# Different spellings of one value hash alike: "4111 1111 1111 1111" and "4111-1111-1111-1111" join.
_NORMALIZE: dict[str, Callable[[bytes], bytes]] = {
    "email": lambda t: t.replace(b"%40", b"@").lower(),
    "credit_card": _digits_and_letters,
    "us_ssn": _digits_and_letters,
    "phone": _digits_and_letters,
    "iban": _digits_and_letters,
    "ipv6": lambda t: t.lower(),
}


def _star_digits(text: bytes, keep_last: int) -> bytes:
    """Digits become '*' except the last ``keep_last``; separators stay, so the format is still readable."""
    total = sum(1 for c in text if 48 <= c <= 57)
    out = bytearray()
    seen = 0
    for c in text:
        if 48 <= c <= 57:
            seen += 1
            out.append(c if seen > total - keep_last else 0x2A)
        else:
            out.append(c)
    return bytes(out)


def _partial_email(text: bytes) -> bytes:
    at = text.find(b"@")
    if at < 0:
        at = text.find(b"%40")
    return b"***" + text[at:] if at >= 0 else b"***"


def _partial_iban(text: bytes) -> bytes:
    alnum = [i for i, c in enumerate(text) if c != 0x20]
    keep = set(alnum[:2]) | set(alnum[-4:])
    return bytes(c if i in keep or c == 0x20 else 0x2A for i, c in enumerate(text))


def _partial_ipv4(text: bytes) -> bytes:
    parts = text.split(b".")
    return b".".join([*parts[:2], b"*", b"*"])


def _partial_ipv6(text: bytes) -> bytes:
    groups = text.split(b":")
    head = [g for g in groups[:2] if g]
    return b":".join([*head, b"*"]) if head else b"*"


def _partial_jwt(text: bytes) -> bytes:
    return text[: text.find(b".")] + b".***.***"


def partial_generic(text: bytes) -> bytes:
    """Last 4 characters of a match of at least 12 characters; shorter matches are masked whole."""
    decoded = text.decode("utf-8", "replace")
    if len(decoded) < 12:
        return b"****"
    return b"****" + decoded[-4:].encode()


_PARTIAL: dict[str, Callable[[bytes], bytes]] = {
    "email": _partial_email,
    "credit_card": lambda t: _star_digits(t, 4),
    "us_ssn": lambda t: _star_digits(t, 4),
    "phone": lambda t: _star_digits(t, 2),
    "iban": _partial_iban,
    "ipv4": _partial_ipv4,
    "ipv6": _partial_ipv6,
    "jwt": _partial_jwt,
}


class Masker:
    """Turns a match into its replacement bytes."""

    def __init__(self, redaction: str, hash_key: str) -> None:
        self._redaction = redaction
        self._redacted: dict[str, bytes] = {}
        key = hash_key.encode()
        self.key_id = key_id(key) if key else ""
        # A keyed HMAC prepared once; each token copies it (cheaper than re-keying).
        self._hmac = hmac.new(key, digestmod=hashlib.sha256) if key else None

    def redacted(self, name: str) -> bytes:
        token = self._redacted.get(name)
        if token is None:
            token = self._redacted[name] = self._redaction.replace("{name}", name).encode()
        return token

    def hashed(self, name: str, text: bytes) -> bytes:
        if self._hmac is None:  # the config refuses hash without a key; never fall back to a plain hash
            return self.redacted(name)
        normalize = _NORMALIZE.get(name)
        h = self._hmac.copy()
        h.update(normalize(text) if normalize is not None else text)
        return f"{name}:{self.key_id}:{h.hexdigest()[:HASH_HEX_CHARS]}".encode()

    def replacement(self, rule: Rule, action: Action, text: bytes) -> bytes:
        """The bytes that replace ``text``; ``drop`` is handled by the caller (it removes the attribute), so
        here it redacts, which is what it means where nothing can be removed."""
        if action == "hash":
            return self.hashed(rule.name, text)
        if action == "mask_partial":
            partial = _PARTIAL.get(rule.name) if rule.builtin else None
            return partial(text) if partial is not None else partial_generic(text)
        return self.redacted(rule.name)
