"""The bulk passes: a few RE2 patterns run over the serialized bytes of a whole batch.

Together they must find at least one hit overlapping every value that the strict per-value scan would change,
and they may find more (those values are scanned and left alone). Each pass is the union of some of these
alternatives (DIGIT_DETECTORS says which):
- every shape's bulk pattern (detectors.py: no word boundaries; for cards and IPv4 a narrower pattern that
  still matches every span their ``confirm`` accepts, the card's with the byte or two before it);
- every user rule with its zero-width assertions removed (``^``, ``$``, ``\\b``, ``\\A``, ``\\z``...): inside a
  serialized batch a value is not at the start of the text and is framed by tag and length bytes, so an
  assertion that holds in the value may fail in the batch; dropping an assertion only widens a pattern;
- one literal of each blocked-key glob, case-insensitive, so the keys to block are found too;
- percent-encodings that could hide part of a match (see ``_ENCODED``): the strict scan checks query
  parameters decoded, and no plain pattern sees through the encoding.

Why some hit overlaps every value holding a strict match: the match's bytes match its pass's union on their
own, so that pass's leftmost-first scan either reports a match starting at that position or one that started
earlier and runs into it; either overlaps the value. For a card the bytes taken along before it are, inside
the value, the value's; before it, the tag and length of the value's own field. No match of the digit pass can
end on those: each ends on a digit or capital letter with a digit, capital letter or one of `` .()-`` before it,
and the tag of every string field the walk reads is none of these, nor is a varint byte before the last (above
0x7F). So a match running into them runs into the value. It follows that a detector can only confirm
something in a value that a hit of its own pass touches.

The same alternatives form RE2 Sets, one per pass, that the per-value scan uses to learn which of them occur in
a value (scan.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from processors.pii.regex import Pattern, PatternSet

# Percent-encoding hides a secret from the plain patterns; the strict scan decodes query parameters. Any
# encoding except %20 is a hit. Encoded spaces (%20, "+") are everywhere in clean URLs ("q=red%20shoes"), so
# they are a hit only where a built-in match can hold a space: between digits, capitals, parentheses, dots or
# dashes (card, phone and IBAN groups, "BEGIN RSA PRIVATE KEY") and after "bearer" or "basic".
_ENCODED = (
    rb"%(?:[013-9A-Fa-f][0-9A-Fa-f]|2[1-9A-Fa-f])"
    rb"|[?&][^&#\s\"'<>]*[0-9A-Z().-](?:%20|\+)[0-9A-Z().-]"
    rb"|(?i:bearer|basic)(?:%20|\+)"
)
# Any encoded space in a query: needed when a user rule or a blocked key could hold a space.
_ENCODED_SPACE = rb"|[?&][^&#\s\"'<>]*(?:%20|\+)"

# What an alternative stands for.
SHAPE = 0  # a built-in detector shape (index into the scanner's shapes)
USER = 1  # a user rule (index into the user rules)
KEY_LITERALS = 2  # blocked-key literals: hits point at keys (or at values that merely contain the words)
ENCODED = 3  # percent-encoded query text: hits point at values to decode

# Assertions RE2 knows, after a backslash.
_ASSERTION_ESCAPES = frozenset("bBAz")


# RE2 builds its DFAs lazily, and a DFA over many patterns at once multiplies their states: over fresh data
# (new digits, new addresses in every batch) it keeps meeting states it has never built. Measured on 530 KB
# requests: one union of every pattern, 7-15 ms per fresh request (2.3 ms once the same bytes were seen; 4.2 ms
# fresh with the card pattern of detectors.py, which follows one candidate per run of digits); a single
# pattern, about 0.7 ms. Two passes, every digit shape in one and everything else (words, credentials, user
# rules, key literals, encodings) in the other, settle at about 1.9-2.1 ms over 1,200 fresh requests, against
# ~2.8 ms for the three passes used before (cards with IBANs, the other digit shapes, the rest; same data,
# alternating). The per-value RE2 Sets ("many match" mode, every pattern tracked at once) follow the same groups:
# one Set of everything cost 7-9 us per fresh value, a Set per group about 3 us.
DIGIT_DETECTORS = frozenset({"credit_card", "iban", "us_ssn", "ipv4", "phone"})
# The digit pass and its Set read bytes, not UTF-8 (RE2's Latin-1 mode): its patterns are ASCII and match the
# same either way, except that the card pattern's "not a digit" must also match the bytes 0x80-0xFF of a varint
# length right before a value (and of a decoded query parameter), which no UTF-8 class matches.
DIGIT_PASS = 0
OTHER_PASS = 1


@dataclass(frozen=True, slots=True)
class Alternative:
    kind: int
    index: int
    source: bytes
    # Which bulk pass finds it, and which RE2 Set it joins (see DIGIT_DETECTORS).
    bulk_pass: int = OTHER_PASS


class AlternativeSets:
    """Which alternatives match somewhere in a value: the union of a few RE2 Sets."""

    def __init__(self, alternatives: Sequence[Alternative]) -> None:
        self.size = len(alternatives)
        self._sets: list[tuple[PatternSet, tuple[int, ...]]] = []
        for group in sorted({a.bulk_pass for a in alternatives}):
            members = tuple(i for i, a in enumerate(alternatives) if a.bulk_pass == group)
            sources = [alternatives[i].source for i in members]
            self._sets.append((PatternSet(sources, latin1=group == DIGIT_PASS), members))

    def match(self, text: bytes) -> list[int]:
        found: list[int] = []
        for patterns, members in self._sets:
            for i in patterns.match(text):
                found.append(members[i])
        return found


class Bulk:
    """The bulk passes over batches and the Sets of their alternatives over values."""

    def __init__(
        self,
        shape_patterns: Sequence[tuple[str, bytes]],
        user_patterns: Sequence[str],
        key_literals: Sequence[bytes],
    ) -> None:
        alternatives = [
            Alternative(SHAPE, i, p, DIGIT_PASS if d in DIGIT_DETECTORS else OTHER_PASS)
            for i, (d, p) in enumerate(shape_patterns)
        ]
        alternatives += [Alternative(USER, i, loosen(p).encode()) for i, p in enumerate(user_patterns)]
        if key_literals:
            literals = b"|".join(_escape_literal(lit) for lit in key_literals)
            alternatives.append(Alternative(KEY_LITERALS, 0, b"(?i:" + literals + b")"))
        if alternatives:
            encoded = _ENCODED
            if user_patterns or any(b" " in lit for lit in key_literals):
                encoded += _ENCODED_SPACE
            alternatives.append(Alternative(ENCODED, 0, encoded))
        self.alternatives: tuple[Alternative, ...] = tuple(alternatives)
        # One pattern per pass that has alternatives; ``passes`` maps a pass number to its index in ``patterns``.
        self.patterns: list[Pattern] = []
        self.passes: dict[int, int] = {}
        for number in sorted({a.bulk_pass for a in alternatives}):
            union = b"|".join(b"(?:" + a.source + b")" for a in alternatives if a.bulk_pass == number)
            self.passes[number] = len(self.patterns)
            self.patterns.append(Pattern(union, never_capture=True, latin1=number == DIGIT_PASS))
        # Kept for callers that want one pattern (benchmarks, the strategy comparison): the union of everything.
        union = b"|".join(b"(?:" + a.source + b")" for a in alternatives)
        self.pattern = Pattern(union, never_capture=True) if alternatives else None
        self.set = AlternativeSets(alternatives) if alternatives else None

    def hits(self, raw: bytes) -> tuple[list[int], list[int], list[int]]:
        """Every pass over ``raw``, merged: hits sorted, overlapping ones joined (what the wire walk needs), and
        for each merged hit the passes that found part of it (bit p for pass p). A detector can only confirm
        something in a value that a hit of its own pass touches, so the bits of the hits touching a value say
        which detectors to run there."""
        per_pass = [pattern.all_spans(raw) for pattern in self.patterns]
        if len(per_pass) == 1:
            starts, ends = per_pass[0]
            return starts, ends, [1] * len(starts)
        all_starts: list[int] = []
        all_ends: list[int] = []
        all_bits: list[int] = []
        for p, (starts, ends) in enumerate(per_pass):
            all_starts += starts
            all_ends += ends
            all_bits += [1 << p] * len(starts)
        out_starts: list[int] = []
        out_ends: list[int] = []
        out_bits: list[int] = []
        for s, e, bit in sorted(zip(all_starts, all_ends, all_bits, strict=True)):
            if out_ends and s < out_ends[-1]:
                if e > out_ends[-1]:
                    out_ends[-1] = e
                out_bits[-1] |= bit
                continue
            out_starts.append(s)
            out_ends.append(e)
            out_bits.append(bit)
        return out_starts, out_ends, out_bits


def loosen(pattern: str, keep: str = "") -> str:
    """``pattern`` without its zero-width assertions (outside character classes); its language only grows.
    Escaped assertions listed in ``keep`` (``"bB"``: word boundaries) stay."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "Q":  # \Q...\E quotes literally; copy it whole
                end = pattern.find("\\E", i + 2)
                stop = n if end < 0 else end + 2
                out.append(pattern[i:stop])
                i = stop
                continue
            if nxt not in _ASSERTION_ESCAPES or nxt in keep:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[":
            end = _class_end(pattern, i)
            out.append(pattern[i:end])
            i = end
            continue
        if c not in "^$":
            out.append(c)
        i += 1
    return "".join(out)


def _class_end(pattern: str, start: int) -> int:
    """Index just after the character class opening at ``start`` (``[]a]``, ``[^]a]``, ``[[:alpha:]]``)."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[" and pattern.startswith("[:", i):
            close = pattern.find(":]", i + 2)
            i = close + 2 if close >= 0 else i + 1
            continue
        if c == "]":
            return i + 1
        i += 1
    return len(pattern)


def _escape_literal(text: bytes) -> bytes:
    """ASCII punctuation as \\x{..}; UTF-8 sequences stay whole (RE2 reads them as one character)."""
    return b"".join(b"\\x{%02x}" % c if c < 0x80 and not bytes([c]).isalnum() else bytes([c]) for c in text)


def passes_touching(bits: Sequence[int], first: int, last: int) -> int:
    """The passes of the merged hits ``first:last`` (those the walk found overlapping a value): every pass
    whose detectors could confirm something in it, perhaps one more (a hit that also covers the key)."""
    if last - first == 1:
        return bits[first]
    found = 0
    for k in range(first, last):
        found |= bits[k]
    return found
