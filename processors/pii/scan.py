"""Strict detection and masking of one value (UTF-8 bytes). Pure: no I/O, no protobuf.

Finding every match, deterministically:
1. the RE2 Set of the bulk alternatives (bulk.py) says which shapes, user rules, key literals and encodings
   occur somewhere in the value: one pass;
2. each shape or user rule that occurs is then run on its own over the whole value, and every candidate goes
   to its ``confirm``. A combined pattern returns only the leftmost match at each position, so a candidate that
   fails validation (a bad-Luhn digit run) could hide another detector's match inside it; running each shape
   separately leaves nothing to hide behind (bench/results/pii.md compares this with re-scanning
   neighbourhoods);
3. URL query parameters are decoded and scanned as values of their own; a parameter whose name is a blocked
   key is replaced whole;
4. overlapping matches merge into one region that takes the strongest action (drop > redact > hash >
   mask_partial; ties: the rule listed first), so no part of a secret is left between two replacements.

Many values at once (the engine's path): ``mask_many`` runs each pattern over the flagged values of a request
joined, instead of a Set and a re-scan per value (joined.py); it finds exactly what steps 1-2 find per value.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote_from_bytes, unquote_to_bytes

from processors.pii import joined
from processors.pii.actions import STRENGTH, Action, Masker, Rule
from processors.pii.bulk import SHAPE, USER, Bulk
from processors.pii.detectors import Shape
from processors.pii.joined import Detector, position_free
from processors.pii.keys import KeyRules
from processors.pii.regex import Pattern, Span

# Region: (start, end, rule, action, precomputed replacement or None).
Region = tuple[int, int, Rule, Action, bytes | None]
Counts = MutableMapping[tuple[str, str], int]
# The matches one value counted: ((rule name, action), times) pairs.
Counted = tuple[tuple[tuple[str, str], int], ...]
# The bulk hits touching a value, relative to it: those inside it, and the start of one that runs past its end
# into the framing bytes after it (-1 if none).
Hits = tuple[Sequence[Span], int]


class _Drop:
    """Returned instead of new bytes when a match's action removes the whole attribute."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()
# A value's masking result (new bytes, DROP, or None when nothing matched) and the matches it counted.
Masked = tuple[bytes | _Drop | None, Counted]

# Above this size a value skips the Set and runs every alternative: the Set's DFA has a memory budget and,
# unlike a single pattern, reports "no match" rather than slowing down when it runs out.
_SET_LIMIT = 1 << 16
# Keeps the decoded value's replacement readable inside the URL ("[REDACTED:email]", "***@example.com").
_URL_SAFE = b"[]:*@._-~!$'(),;/"
# Single bytes tested as ints: ``int in bytes`` is one memchr, while ``bytes in bytes`` first tries its operand as an
# integer and builds and drops a TypeError every time (~15 against ~100 ns per test, on every flagged value).
_QUESTION_MARK: Final = 0x3F  # "?"
_EQUALS: Final = 0x3D  # "="
_PERCENT: Final = 0x25  # "%"
_PLUS: Final = 0x2B  # "+"
_QUERY = Pattern(rb"\?[^\s#\"'<>]+")
# The result caches: values up to this size, this many entries per cache (then it starts over; about 10 MB each
# at most).
_CACHE_VALUE_LIMIT = 1024
_CACHE_ENTRIES = 4096


class Doorkeeper:
    """Lets a value into a result cache only when it comes by a second time.

    A remembered result pays for itself from the value's next sighting, but remembering costs too (the map
    entry, keeping the bytes alive, freeing them when the cache starts over): with a fresh secret in every
    value that was ~10% of masking time, spent on values never seen again. This remembers that a value came
    by as one bit, indexed by its hash (which the cache lookup has already computed), and says yes on the
    next sighting. Another value landing on the same bit only lets a value in early. After ``window`` new
    bits it starts over, so that the bits stay sparse.
    """

    __slots__ = ("_bits", "_mask", "_new", "_window")

    def __init__(self, bits_log2: int = 20, window: int = 1 << 16) -> None:
        self._bits = bytearray(1 << (bits_log2 - 3))
        self._mask = (1 << bits_log2) - 1
        self._new = 0
        self._window = window

    def again(self, key: bytes) -> bool:
        """Whether ``key`` (probably) came by before; from now on it has."""
        h = hash(key) & self._mask
        i = h >> 3
        bit = 1 << (h & 7)
        bits = self._bits
        if bits[i] & bit:
            return True
        bits[i] |= bit
        self._new += 1
        if self._new >= self._window:
            self._bits = bytearray(len(bits))
            self._new = 0
        return False


@dataclass(frozen=True, slots=True)
class UserRule:
    rule: Rule
    pattern: Pattern


class ValueScanner:
    def __init__(
        self,
        shapes: Sequence[tuple[Shape, Rule]],
        user_rules: Sequence[UserRule],
        key_rules: KeyRules,
        blocked_rule: Rule,
        masker: Masker,
    ) -> None:
        # (candidate pattern, confirm, rule) per shape.
        self._shapes = [(Pattern(shape.pattern), shape.confirm, rule) for shape, rule in shapes]
        self._user = list(user_rules)
        self._keys = key_rules
        literals = key_rules.literals() or []
        self.bulk = Bulk(
            [(shape.detector, shape.bulk_pattern) for shape, _ in shapes],
            [u.pattern.source.decode() for u in user_rules],
            literals,
        )
        self._alternatives = self.bulk.alternatives
        self._set = self.bulk.set
        # The joined path (joined.py): per bulk pass position, the detectors that pass finds; user rules with
        # position assertions run value by value instead.
        by_pass: dict[int, list[Detector]] = {}
        for a in self._alternatives:
            position = self.bulk.passes[a.bulk_pass]
            if a.kind == SHAPE:
                pattern, confirm, rule = self._shapes[a.index]
                by_pass.setdefault(position, []).append((pattern, confirm, rule))
            elif a.kind == USER and position_free(self._user[a.index].pattern.source.decode()):
                user = self._user[a.index]
                by_pass.setdefault(position, []).append((user.pattern, None, user.rule))
        self._joined = sorted(by_pass.items())
        self._positional = [
            (self.bulk.passes[a.bulk_pass], self._user[a.index])
            for a in self._alternatives
            if a.kind == USER and not position_free(self._user[a.index].pattern.source.decode())
        ]
        self._blocked = blocked_rule
        self.masker = masker
        # One map per ``removable`` (attribute values may be dropped, log bodies may not), keyed by the value's
        # bytes alone: no key tuple to build and hash per lookup.
        self._cache: tuple[dict[bytes, Masked], dict[bytes, Masked]] = ({}, {})
        self._admit = Doorkeeper()

    def clear_cache(self) -> None:
        for cache in self._cache:
            cache.clear()

    # --- detection ---

    def regions(self, value: bytes) -> list[Region]:
        """Confirmed matches in ``value`` (not merged)."""
        sets = self._set
        if sets is None:
            return []
        found: Sequence[int] = range(sets.size) if len(value) > _SET_LIMIT else sets.match(value)
        regions: list[Region] = []
        for i in found:
            alternative = self._alternatives[i]
            if alternative.kind == SHAPE:
                pattern, confirm, rule = self._shapes[alternative.index]
                action = rule.action
                for spans in pattern.match_list(value):
                    for s, e in confirm(value, spans):
                        regions.append((s, e, rule, action, None))
            elif alternative.kind == USER:
                regions += self._user_regions(self._user[alternative.index], value)
        # Decoding changes what surrounds a match too ("q=%20sk_live_..." hides the key behind "0"), so query
        # parameters are checked on every path.
        if _QUESTION_MARK in value and _EQUALS in value:
            regions += self._query_regions(value)
        return regions

    def _query_regions(self, value: bytes) -> list[Region]:
        """Query parameters, decoded: a blocked name replaces the value whole; an encoded value is scanned
        after decoding (plain values were already scanned where they stand)."""
        out: list[Region] = []
        for qs, qe in _QUERY.spans(value):
            pos = qs + 1
            while pos < qe:
                amp = value.find(b"&", pos, qe)
                pe = qe if amp < 0 else amp
                eq = value.find(b"=", pos, pe)
                if eq > pos and eq + 1 < pe:
                    region = self._param_region(value, value[pos:eq], eq + 1, pe)
                    if region is not None:
                        out.append(region)
                pos = pe + 1
        return out

    def _param_region(self, value: bytes, name: bytes, vs: int, ve: int) -> Region | None:
        raw = value[vs:ve]
        if self._keys.is_blocked(_unquote(name)):
            rule = self._blocked
            if rule.action == "drop":
                return (vs, ve, rule, "drop", None)
            return (vs, ve, rule, rule.action, _quote(self.masker.replacement(rule, rule.action, _unquote(raw))))
        if _PERCENT not in raw and _PLUS not in raw:
            return None
        decoded = _unquote(raw)
        inner = merge(self.regions(decoded))
        if not inner:
            return None
        rule, action = _strongest(inner)
        if action == "drop":
            return (vs, ve, rule, "drop", None)
        masked = self.apply(decoded, inner)
        assert isinstance(masked, bytes)  # no drop among the regions
        return (vs, ve, rule, action, _quote(masked))

    # --- masking ---

    def apply(self, value: bytes, merged: Sequence[Region]) -> bytes | _Drop:
        """``value`` with every merged region replaced; DROP if a region's action is drop."""
        pieces: list[bytes] = []
        last = 0
        for s, e, rule, action, replacement in merged:
            if action == "drop":
                return DROP
            pieces.append(value[last:s])
            pieces.append(replacement if replacement is not None else self.masker.replacement(rule, action, value[s:e]))
            last = e
        pieces.append(value[last:])
        return b"".join(pieces)

    def mask(self, value: bytes, counts: Counts, removable: bool = True) -> bytes | _Drop | None:
        """The masked value, DROP (only when ``removable``), or None when nothing matched.

        Masking is a pure function of the value (and of the configuration, fixed per scanner), and telemetry
        repeats values (a user's address on every span of a trace, one client IP per connection), so results
        are remembered from a value's second sighting (Doorkeeper): a bounded map from value to (result,
        matches counted)."""
        hit = self.cached(value, removable, counts)
        if hit is None:
            hit = self._settle(value, self.regions(value), removable, counts)
        return hit[0]

    def mask_many(
        self, values: Sequence[bytes], touched: Sequence[int], removable: Sequence[bool], counts: Counts
    ) -> list[Masked]:
        """``mask`` for many values at once (detection joined: see joined.py). ``touched[k]`` has bit p set
        when bulk pass p hit value k: only that pass's detectors can confirm something there. Results are
        cached and counted like ``mask``'s; the values are expected to have missed the cache. Each result comes
        with the matches it counted."""
        found = self.regions_many(values, touched)
        return [
            self._settle(value, regions, can_drop, counts)
            for value, regions, can_drop in zip(values, found, removable, strict=True)
        ]

    def cached(self, value: bytes, removable: bool, counts: Counts) -> Masked | None:
        """``(result, matches)`` when ``mask`` has seen this value (its matches are counted again), else None."""
        hit = self._cache[removable].get(value)
        if hit is None:
            return None
        for name_action, n in hit[1]:
            counts[name_action] = counts.get(name_action, 0) + n
        return hit

    def _settle(self, value: bytes, regions: list[Region], removable: bool, counts: Counts) -> Masked:
        """``value`` masked by its confirmed regions, its matches counted, the outcome remembered."""
        counted: Counted
        if len(regions) == 1:  # the common case, without a tally
            result, key = self._finish_one(value, regions[0], removable)
            counted = ((key, 1),)
            counts[key] = counts.get(key, 0) + 1
        elif regions:
            tally: dict[tuple[str, str], int] = {}
            result = self._finish(value, regions, tally, removable)
            counted = tuple(tally.items())
            for key, times in counted:
                counts[key] = counts.get(key, 0) + times
        else:
            result, counted = None, ()
        if len(value) <= _CACHE_VALUE_LIMIT and self._admit.again(value):
            cache = self._cache[removable]
            if len(cache) >= _CACHE_ENTRIES:
                cache.clear()
            cache[value] = (result, counted)
        return (result, counted)

    def regions_many(self, values: Sequence[bytes], touched: Sequence[int]) -> list[list[Region]]:
        """``regions`` for many values, each pattern run once over the values its pass touched, joined."""
        out: list[list[Region]] = [[] for _ in values]
        for position, detectors in self._joined:
            bit = 1 << position
            chosen = [k for k, t in enumerate(touched) if t & bit]
            if not chosen:
                continue
            joined.scan_joined([values[k] for k in chosen], detectors, out, chosen)  # type: ignore[arg-type]
        for position, user in self._positional:
            bit = 1 << position
            for k, t in enumerate(touched):
                if t & bit:
                    out[k] += self._user_regions(user, values[k])
        for k, value in enumerate(values):
            if _QUESTION_MARK in value and _EQUALS in value:
                out[k] += self._query_regions(value)
        return out

    @staticmethod
    def _user_regions(user: UserRule, value: bytes) -> list[Region]:
        regions: list[Region] = []
        for spans in user.pattern.matches(value):
            # With a capturing group, only the first group is the secret ("customer=(\d+)").
            s, e = spans[1] if len(spans) > 1 and spans[1][0] >= 0 else spans[0]
            if e > s:
                regions.append((s, e, user.rule, user.rule.action, None))
        return regions

    def _finish_one(self, value: bytes, region: Region, removable: bool) -> tuple[bytes | _Drop, tuple[str, str]]:
        """``value`` masked by its only region, and the (rule name, action) to count once."""
        s, e, rule, action, replacement = region
        if action == "drop":
            if removable:
                return DROP, (rule.name, action)
            action = "redact"
            replacement = None
        if replacement is None:
            replacement = self.masker.replacement(rule, action, value[s:e])
        return value[:s] + replacement + value[e:], (rule.name, action)

    def _finish(self, value: bytes, regions: list[Region], counts: Counts, removable: bool) -> bytes | _Drop:
        """``value`` masked by its (unmerged, two or more) regions; matches counted."""
        merged = merge(regions)
        if not removable:
            merged = [(s, e, r, "redact" if a == "drop" else a, p) for s, e, r, a, p in merged]
        for _, _, rule, action, _ in merged:
            counts[(rule.name, action)] = counts.get((rule.name, action), 0) + 1
        return self.apply(value, merged)

    def mask_whole(self, value: bytes, rule: Rule, counts: Counts, removable: bool = True) -> bytes | _Drop:
        """Replace a whole value by ``rule`` (a blocked key), whatever it holds."""
        action: Action = rule.action if removable or rule.action != "drop" else "redact"
        key = (rule.name, action)
        counts[key] = counts.get(key, 0) + 1
        if action == "drop":
            return DROP
        return self.masker.replacement(rule, action, value)


def merge(regions: list[Region]) -> list[Region]:
    """Sort by position and merge overlapping regions; a merged region takes the strongest action, and loses
    any precomputed or partial replacement (it covers more than one match)."""
    if len(regions) <= 1:
        return regions
    regions.sort(key=lambda r: (r[0], -r[1]))
    out: list[Region] = [regions[0]]
    for region in regions[1:]:
        s, e, rule, action, _ = region
        ls, le, lrule, laction, lrep = out[-1]
        if s >= le:
            out.append(region)
            continue
        if (STRENGTH[action], -rule.rank) > (STRENGTH[laction], -lrule.rank):
            lrule, laction = rule, action
        if laction == "mask_partial" and rule is not out[-1][2]:
            laction = "redact"  # two different secrets cannot share one partial mask
        out[-1] = (ls, max(le, e), lrule, laction, lrep if (s, e) == (ls, le) and rule is lrule else None)
    return out


def _strongest(regions: Sequence[Region]) -> tuple[Rule, Action]:
    best = max(regions, key=lambda r: (STRENGTH[r[3]], -r[2].rank))
    return best[2], best[3]


def _unquote(text: bytes) -> bytes:
    return unquote_to_bytes(text.replace(b"+", b" ")) if _PERCENT in text or _PLUS in text else text


def _quote(text: bytes) -> bytes:
    return quote_from_bytes(text, safe=_URL_SAFE).encode("ascii")
