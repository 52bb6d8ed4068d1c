"""Strict detection over many values at once: each pattern runs over the values joined, not value by value.

Per value, the strict scan pays a Python call and an RE2 call for every pattern it asks, and a request holds
hundreds of flagged values: that per-call cost, not RE2's scanning, was most of the masking time
(bench/results/pii.md). Joined with a separator byte, the values of a request are scanned by each pattern in
one loop whose calls are per *match*, and every match is mapped back to its value by a cursor over the values'
start offsets (matches come in order, so it only moves forward).

Exactly what each pattern finds in each value on its own:
- the patterns carry no ``^``, ``$``, ``\\A`` or ``\\z`` (user rules that do are left to the per-value path), and
  ``\\b`` sees the separator as a non-word byte, as it sees the start and end of a lone value;
- a match confined to one value is a match there, at the same start: a leftmost-first scan resumes where the
  previous match ended, and as long as no match runs into the separator that is the position the per-value
  scan resumes from;
- a match that runs into the separator (a pattern whose class admits it, or a greedy one that could have
  stopped earlier) would not exist per value and may have consumed matches of the next value: every value it
  touches is scanned again on its own with that pattern, and its joined results are discarded.
That holds for any separator byte, values that contain it included; the choice only decides how often the
redo happens. The separator is a newline: every built-in pattern's open-ended class stops at whitespace, and
RE2's ``.`` does not match it. A NUL, which the open-ended classes admit, had sent ~25 matches of the secret
assignments per 1000-span request into the redo (its unquoted value ran on into the next value).
``confirm`` always sees the value itself with spans relative to it, so context checks (a digit before a card,
a word after an address) read the value's own edges.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from processors.pii.bulk import loosen
from processors.pii.regex import Pattern, Span

if TYPE_CHECKING:
    from processors.pii.actions import Rule

SEPARATOR = b"\n"

# A strict pattern, its confirm (None for a user rule: its first capturing group, else the match, is the
# secret) and its rule.
Confirm = Callable[[bytes, Sequence[Span]], list[Span]]
Detector = tuple[Pattern, Confirm | None, "Rule"]
# (start, end, rule, its action, None) relative to the value: scan.py's Region with no precomputed replacement.
Found = tuple[int, int, "Rule", str, None]


def scan_joined(
    values: Sequence[bytes], detectors: Sequence[Detector], out: list[list[Found]], slots: Sequence[int]
) -> None:
    """Every confirmed match of every detector in every value, appended to ``out[slots[k]]`` for value k (not
    merged, not sorted)."""
    if not values or not detectors:
        return
    joined = SEPARATOR.join(values)
    bases: list[int] = []
    position = 0
    for value in values:
        bases.append(position)
        position += len(value) + 1
    for detector in detectors:
        for k, region in _scan_one(joined, values, bases, detector):
            out[slots[k]].append(region)


def _scan_one(joined: bytes, values: Sequence[bytes], bases: list[int], detector: Detector) -> list[tuple[int, Found]]:
    """(value index, region) for every confirmed match of one detector."""
    pattern, confirm, rule = detector
    action = rule.action
    found: list[tuple[int, Found]] = []
    redo: set[int] | None = None
    end = len(joined)
    j = 0
    n = len(bases)
    for spans in pattern.match_list(joined):
        s, e = spans[0]
        if e == s:
            continue  # an empty match is no secret
        while j + 1 < n and bases[j + 1] <= s:  # the value the match starts in (or the separator after it)
            j += 1
        base = bases[j]
        value = values[j]
        if e > base + len(value):  # runs into the separator: per value, this match does not exist
            if redo is None:
                redo = set()
            redo.update(range(j, bisect_right(bases, min(e, end) - 1)))
            continue
        if redo is not None and j in redo:
            continue
        if len(spans) == 1:
            local: Sequence[Span] = ((s - base, e - base),)
        else:
            local = [(a - base, b - base) if a >= 0 else (a, b) for a, b in spans]
        for a, b in confirm(value, local) if confirm is not None else _user_secret(local):
            found.append((j, (a, b, rule, action, None)))
    if redo is not None:
        found = [item for item in found if item[0] not in redo]
        for j in sorted(redo):
            value = values[j]
            for spans in pattern.match_list(value):
                for a, b in confirm(value, spans) if confirm is not None else _user_secret(spans):
                    found.append((j, (a, b, rule, action, None)))
    return found


def _user_secret(spans: Sequence[Span]) -> list[Span]:
    """A user rule's secret: with a capturing group, only the first group ("customer=(\\d+)"), else the match."""
    s, e = spans[1] if len(spans) > 1 and spans[1][0] >= 0 else spans[0]
    return [(s, e)] if e > s else []


def position_free(source: str) -> bool:
    """Whether a user pattern can run joined: no ``^``, ``$``, ``\\A`` or ``\\z`` outside a character class
    (word boundaries are fine: the separator is not a word byte). Flags such as ``(?m)`` only matter with those
    assertions present."""
    return loosen(source, keep="bB") == source
