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

Fast path (most values with PII): when the Set finds exactly one alternative in the value and it is a shape,
and no hit of that shape's bulk pass runs into the value from before it, that pass's hits inside the value
*are* the shape's candidates there (the pass's leftmost-first scan and the shape's own scan agree where
nothing else matches),
so step 2 confirms them directly instead of scanning again. A hit that runs past the value's end (into the
framing bytes after it) is replaced by the shape's own scan from where it starts: no candidate can start
earlier, or the union would have found it first. A shape with capturing groups re-matches at each hit to get
its groups; a shape whose bulk pattern is narrower than its candidate pattern (cards) takes the fast path only
while every hit confirms.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote_from_bytes, unquote_to_bytes

from processors.pii.actions import STRENGTH, Action, Masker, Rule
from processors.pii.bulk import SHAPE, USER, Bulk, HitContext, pass_hits
from processors.pii.detectors import Shape
from processors.pii.keys import KeyRules
from processors.pii.regex import Pattern, Span

# Region: (start, end, rule, action, precomputed replacement or None).
Region = tuple[int, int, Rule, Action, bytes | None]
Counts = MutableMapping[tuple[str, str], int]
# The bulk hits touching a value, relative to it: those inside it, and the start of one that runs past its end
# into the framing bytes after it (-1 if none).
Hits = tuple[Sequence[Span], int]


class _Drop:
    """Returned instead of new bytes when a match's action removes the whole attribute."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()

# Above this size a value skips the Set and runs every alternative: the Set's DFA has a memory budget and,
# unlike a single pattern, reports "no match" rather than slowing down when it runs out.
_SET_LIMIT = 1 << 16
# Keeps the decoded value's replacement readable inside the URL ("[REDACTED:email]", "***@example.com").
_URL_SAFE = b"[]:*@._-~!$'(),;/"
_QUERY = Pattern(rb"\?[^\s#\"'<>]+")
# The result cache: values up to this size, this many entries (then it starts over; about 10 MB at most).
_CACHE_VALUE_LIMIT = 1024
_CACHE_ENTRIES = 4096


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
        # (candidate pattern, confirm, rule, fast-path kind): 0 = capturing groups (match again at each hit),
        # 1 = every hit is final, 2 = hits are final only when they confirm (the bulk pattern is narrower).
        self._shapes = [(Pattern(shape.pattern), shape.confirm, rule, _fast_kind(shape)) for shape, rule in shapes]
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
        self._matchers = self._set.matchers if self._set is not None else ()
        # Per alternative: (position of its bulk pass in the per-pass hits, shape index) for shapes, else None.
        self._fast_info: tuple[tuple[int, int] | None, ...] = tuple(
            (self.bulk.passes[a.bulk_pass], a.index) if a.kind == SHAPE else None for a in self._alternatives
        )
        self._blocked = blocked_rule
        self.masker = masker
        self._cache: dict[tuple[bytes, bool], tuple[bytes | _Drop | None, tuple[tuple[tuple[str, str], int], ...]]] = {}

    def clear_cache(self) -> None:
        self._cache.clear()

    # --- detection ---

    def regions(self, value: bytes, context: HitContext | None = None) -> list[Region]:
        """Confirmed matches in ``value`` (not merged). ``context``: the bulk passes' hits and where the value
        starts in the request, when the caller has them (enables the fast path)."""
        sets = self._set
        if sets is None:
            return []
        n = len(value)
        found: Sequence[int]
        if n > _SET_LIMIT:
            found = range(sets.size)
        elif context is None:
            found = sets.match(value)
        else:
            # A detector can only confirm a match where its own bulk pass hit (each pass finds a superset of what
            # its detectors confirm), so only the Sets of the passes that touched the value are asked.
            per_pass, vs = context
            ve = vs + n
            hit_found: list[int] = []
            for (starts, ends), (match, members) in zip(per_pass, self._matchers, strict=True):
                i = bisect_right(ends, vs)
                if i < len(starts) and starts[i] < ve:
                    for j in match(value):
                        hit_found.append(members[j])
            found = hit_found
        if not found:
            return []
        regions: list[Region] | None = None
        if context is not None and len(found) == 1:
            fast = self._fast_info[found[0]]
            if fast is not None:
                per_pass, vs = context
                ve = vs + n
                position, shape = fast
                starts, ends = per_pass[position]
                pattern, confirm, rule, kind = self._shapes[shape]
                if kind == 1:  # the commonest case, inline: every hit inside the value is a final candidate
                    regions = []
                    action = rule.action
                    i = bisect_right(ends, vs)  # a pass's hits do not overlap, so ends are sorted like starts
                    m = len(starts)
                    while i < m:
                        s = starts[i]
                        if s >= ve:
                            break
                        e = ends[i]
                        if s < vs or e > ve:  # runs in from before the value or out past its end
                            regions = None
                            break
                        for cs, ce in confirm(value, ((s - vs, e - vs),)):
                            regions.append((cs, ce, rule, action, None))
                        i += 1
                if regions is None:
                    hits = pass_hits(starts, ends, vs, ve)
                    if hits is not None:
                        regions = self._fast(value, hits, shape)
        if regions is None:
            regions = []
            for i in found:
                alternative = self._alternatives[i]
                if alternative.kind == SHAPE:
                    pattern, confirm, rule, _ = self._shapes[alternative.index]
                    action = rule.action
                    for spans in pattern.match_list(value):
                        for s, e in confirm(value, spans):
                            regions.append((s, e, rule, action, None))
                elif alternative.kind == USER:
                    user = self._user[alternative.index]
                    for spans in user.pattern.matches(value):
                        # With a capturing group, only the first group is the secret ("customer=(\d+)").
                        s, e = spans[1] if len(spans) > 1 and spans[1][0] >= 0 else spans[0]
                        if e > s:
                            regions.append((s, e, user.rule, user.rule.action, None))
        # Decoding changes what surrounds a match too ("q=%20sk_live_..." hides the key behind "0"), so query
        # parameters are checked on every path.
        if b"?" in value and b"=" in value:
            regions += self._query_regions(value)
        return regions

    def _fast(self, value: bytes, hits: Hits, shape: int) -> list[Region] | None:
        pattern, confirm, rule, kind = self._shapes[shape]
        inside, tail = hits
        regions: list[Region] = []
        for hit in inside:
            if kind == 0:  # capturing groups: match again at the hit for them (it starts exactly there)
                spans = next(iter(pattern.matches(value, hit[0])), None)
                if spans is None or spans[0] != hit:
                    return None
                confirmed = confirm(value, spans)
            else:
                confirmed = confirm(value, (hit,))
            if not confirmed and kind == 2:
                return None
            for s, e in confirmed:
                regions.append((s, e, rule, rule.action, None))
        if tail >= 0:
            for spans in pattern.matches(value, tail):
                confirmed = confirm(value, spans)
                if not confirmed and kind == 2:
                    return None
                for s, e in confirmed:
                    regions.append((s, e, rule, rule.action, None))
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
        if b"%" not in raw and b"+" not in raw:
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

    def mask(
        self, value: bytes, counts: Counts, removable: bool = True, context: HitContext | None = None
    ) -> bytes | _Drop | None:
        """The masked value, DROP (only when ``removable``), or None when nothing matched.

        Masking is a pure function of the value (and of the configuration, fixed per scanner), and telemetry
        repeats values (a user's address on every span of a trace, one client IP per connection), so results
        are remembered: a bounded map from value to (result, matches counted)."""
        key = (value, removable)
        cache = self._cache
        cached = cache.get(key)
        if cached is None:
            found: dict[tuple[str, str], int] = {}
            result = self._mask(value, found, removable, context)
            if len(value) <= _CACHE_VALUE_LIMIT:
                if len(cache) >= _CACHE_ENTRIES:
                    cache.clear()
                cache[key] = (result, tuple(found.items()) if found else ())
            for name_action, n in found.items():
                counts[name_action] = counts.get(name_action, 0) + n
            return result
        for name_action, n in cached[1]:
            counts[name_action] = counts.get(name_action, 0) + n
        return cached[0]

    def _mask(self, value: bytes, counts: Counts, removable: bool, context: HitContext | None) -> bytes | _Drop | None:
        regions = self.regions(value, context)
        if not regions:
            return None
        if len(regions) == 1:  # the common case, without the merge machinery
            s, e, rule, action, replacement = regions[0]
            if action == "drop":
                if removable:
                    counts[(rule.name, action)] = counts.get((rule.name, action), 0) + 1
                    return DROP
                action = "redact"
                replacement = None
            counted = (rule.name, action)
            counts[counted] = counts.get(counted, 0) + 1
            if replacement is None:
                replacement = self.masker.replacement(rule, action, value[s:e])
            return value[:s] + replacement + value[e:]
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


def _fast_kind(shape: Shape) -> int:
    if Pattern(shape.pattern).groups:
        return 0
    return 1 if shape.loose is None else 2


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
    return unquote_to_bytes(text.replace(b"+", b" ")) if b"%" in text or b"+" in text else text


def _quote(text: bytes) -> bytes:
    return quote_from_bytes(text, safe=_URL_SAFE).encode("ascii")
