"""Sampling policies: pure evaluators built from the config, and how their votes combine.

Each evaluator answers one question about a trace (``evaluate(view, now) -> bool``: does it match?). Time comes
in as ``now`` (processor clock, seconds); nothing here reads a clock or does I/O.

Combination (``PolicySet.decide``):
1. ``drop`` policies run first, in order; the first one whose sub-policies all match drops the trace, and no
   other policy sees it (so rate limits are not spent on it).
2. Otherwise every other policy votes, in order; the trace is kept if any votes to sample. With
   ``sample_on_first_match`` the vote stops at the first policy that samples (except that, when the adjusted count
   is written, later policies that spend no budget still vote, to learn whether the sampler was alone).
3. ``invert_match`` simply negates a policy's match (the collector's "inverted" decisions, deprecated there, are
   not reproduced: use ``drop`` to veto).

A decision is returned as a ``Decision`` shared between traces (no object per trace): keep or not, the policy
that decided, and what the annotations need (adjusted count, W3C threshold).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from processors.tail_sampling import config as c
from processors.tail_sampling.trace import STATUS_ERROR, STATUS_OK, TraceView

# W3C trace-context level 2 / OpenTelemetry consistent probability sampling: the randomness of a trace id is its
# last 56 bits, and a threshold T in [0, 2^56] keeps a trace when randomness >= T (probability 1 - T/2^56).
RANDOMNESS_BITS = 56
MAX_THRESHOLD = 1 << RANDOMNESS_BITS
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def randomness(tid: bytes) -> int:
    """The trace id's 56 random bits (0 for an empty or short id)."""
    return int.from_bytes(tid[9:16], "big") if len(tid) == 16 else 0


def threshold_for(ratio: Fraction) -> int:
    """The rejection threshold T for sampling probability ``ratio``, rounded to the nearest integer."""
    return round((1 - ratio) * MAX_THRESHOLD)


def threshold_hex(threshold: int) -> str:
    """T as written in ``ot=th:``: 14 hex digits with trailing zeros removed ("0" keeps everything)."""
    if threshold <= 0:
        return "0"
    return f"{threshold:014x}".rstrip("0")


class Evaluator(Protocol):
    name: str
    # Probability that this policy keeps a trace it sees, when that does not depend on the trace's content
    # beyond its id (probabilistic) or is certain (1); None when it depends on traffic (rate based).
    probability: Fraction | None
    # Spends a budget when it votes to sample (rate_limiting, bytes_limiting, composite).
    rate_based: bool

    def evaluate(self, view: TraceView, now: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class Decision:
    keep: bool
    policy: str  # the policy that decided ("" when no policy sampled)
    adjusted_count: float = 1.0
    threshold: int | None = None  # W3C rejection threshold to write, when valid for this decision
    cached: bool = False  # a late span following an earlier decision


NOT_SAMPLED = Decision(False, "")


class _Base:
    probability: Fraction | None = Fraction(1)
    rate_based = False

    def __init__(self, name: str) -> None:
        self.name = name


class AlwaysSample(_Base):
    def evaluate(self, view: TraceView, now: float) -> bool:
        return True


class Probabilistic(_Base):
    def __init__(self, cfg: c.Probabilistic) -> None:
        super().__init__(cfg.name)
        self.salted = bool(cfg.hash_salt)
        ratio = cfg.ratio
        if self.salted:
            # The collector's hash: FNV-1a 64 over salt + trace id, kept when hash <= ratio * (2^64 - 1).
            h = _FNV_OFFSET
            for b in cfg.hash_salt.encode():
                h = ((h ^ b) * _FNV_PRIME) & _MASK64
            self._salt_state = h
            self._limit = int(ratio * _MASK64)
            self.probability = ratio
            self.threshold: int | None = None
        else:
            self.threshold = threshold_for(ratio)
            self.probability = Fraction(MAX_THRESHOLD - self.threshold, MAX_THRESHOLD)

    def evaluate(self, view: TraceView, now: float) -> bool:
        if self.threshold is not None:
            return randomness(view.trace.tid) >= self.threshold
        h = self._salt_state
        for b in view.trace.tid:
            h = ((h ^ b) * _FNV_PRIME) & _MASK64
        return h <= self._limit


class Latency(_Base):
    def __init__(self, cfg: c.Latency) -> None:
        super().__init__(cfg.name)
        self._lo = cfg.threshold_ms * 1_000_000
        self._hi = cfg.upper_threshold_ms * 1_000_000 if cfg.upper_threshold_ms else None

    def evaluate(self, view: TraceView, now: float) -> bool:
        t = view.trace
        if not t.hi:  # no span yet (logs only)
            return False
        d = t.hi - t.lo
        return d >= self._lo and (self._hi is None or d <= self._hi)


class StatusCode(_Base):
    def __init__(self, cfg: c.StatusCode) -> None:
        super().__init__(cfg.name)
        codes = set(cfg.status_codes)
        self._mask = (STATUS_OK if "OK" in codes else 0) | (STATUS_ERROR if "ERROR" in codes else 0)
        self._unset = "UNSET" in codes

    def evaluate(self, view: TraceView, now: float) -> bool:
        t = view.trace
        return bool(t.status & self._mask) or (self._unset and t.coded < t.span_count)


class _Attribute(_Base):
    def __init__(self, name: str, key: str, invert: bool) -> None:
        super().__init__(name)
        self.key = key
        self._invert = invert

    def evaluate(self, view: TraceView, now: float) -> bool:
        return self._any(view.values(self.key)) != self._invert

    def _any(self, values: list[Any]) -> bool:
        raise NotImplementedError


class StringAttribute(_Attribute):
    def __init__(self, cfg: c.StringAttribute) -> None:
        super().__init__(cfg.name, cfg.key, cfg.invert_match)
        self._exact = frozenset(cfg.values) if not cfg.enabled_regex_matching else None
        self._patterns = [c.compile_regex(p) for p in cfg.values] if cfg.enabled_regex_matching else []
        self._cache: dict[str, bool] = {}
        self._cache_max = cfg.cache_max_size

    def _any(self, values: list[Any]) -> bool:
        return any(isinstance(v, str) and self._match(v) for v in values)

    def _match(self, value: str) -> bool:
        if self._exact is not None:
            return value in self._exact
        hit = self._cache.get(value)
        if hit is None:
            hit = any(p.search(value) for p in self._patterns)
            if len(self._cache) >= self._cache_max:
                self._cache.clear()
            self._cache[value] = hit
        return hit


class NumericAttribute(_Attribute):
    def __init__(self, cfg: c.NumericAttribute) -> None:
        super().__init__(cfg.name, cfg.key, cfg.invert_match)
        self._min = cfg.min_value
        self._max = cfg.max_value

    def _any(self, values: list[Any]) -> bool:
        lo, hi = self._min, self._max
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if (lo is None or v >= lo) and (hi is None or v <= hi):
                return True
        return False


class BooleanAttribute(_Attribute):
    def __init__(self, cfg: c.BooleanAttribute) -> None:
        super().__init__(cfg.name, cfg.key, cfg.invert_match)
        self._value = cfg.value

    def _any(self, values: list[Any]) -> bool:
        return any(v is self._value for v in values)


class SpanCount(_Base):
    def __init__(self, cfg: c.SpanCount) -> None:
        super().__init__(cfg.name)
        self._min = cfg.min_spans
        self._max = cfg.max_spans or None

    def evaluate(self, view: TraceView, now: float) -> bool:
        n = view.trace.span_count
        return n >= self._min and (self._max is None or n <= self._max)


class TraceState(_Base):
    def __init__(self, cfg: c.TraceState) -> None:
        super().__init__(cfg.name)
        self._key = cfg.key
        self._values = frozenset(cfg.values)

    def evaluate(self, view: TraceView, now: float) -> bool:
        for state in view.trace_states():
            for member in state.split(","):
                key, sep, value = member.strip().partition("=")
                if sep and key == self._key and value in self._values:
                    return True
        return False


class TraceFlags(_Base):
    def __init__(self, cfg: c.TraceFlags) -> None:
        super().__init__(cfg.name)
        self._sampled = cfg.sampled

    def evaluate(self, view: TraceView, now: float) -> bool:
        return any(bool(f & 1) == self._sampled for f in view.flags())


class TokenBucket:
    """Continuous refill at ``rate`` per second up to ``burst``; starts full."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last: float | None = None

    def take(self, n: float, now: float) -> bool:
        if self._last is not None and now > self._last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        if self._last is None or now > self._last:
            self._last = now
        if n <= self._tokens:
            self._tokens -= n
            return True
        return False


class RateLimiting(_Base):
    probability: Fraction | None = None
    rate_based = True

    def __init__(self, cfg: c.RateLimiting) -> None:
        super().__init__(cfg.name)
        self._bucket = TokenBucket(cfg.spans_per_second, cfg.burst_capacity or cfg.spans_per_second)

    def evaluate(self, view: TraceView, now: float) -> bool:
        return self._bucket.take(view.trace.span_count, now)


class BytesLimiting(_Base):
    probability: Fraction | None = None
    rate_based = True

    def __init__(self, cfg: c.BytesLimiting) -> None:
        super().__init__(cfg.name)
        self._bucket = TokenBucket(cfg.bytes_per_second, cfg.burst_capacity or 2 * cfg.bytes_per_second)

    def evaluate(self, view: TraceView, now: float) -> bool:
        # Bytes of the span bodies held: the sizes known from the wire, no re-encoding.
        return self._bucket.take(view.nbytes, now)


class And(_Base):
    def __init__(self, name: str, subs: Sequence[Evaluator]) -> None:
        super().__init__(name)
        self.subs = list(subs)
        probability: Fraction | None = Fraction(1)
        for s in self.subs:
            probability = None if probability is None or s.probability is None else probability * s.probability
        self.probability = probability
        self.rate_based = any(s.rate_based for s in self.subs)

    def evaluate(self, view: TraceView, now: float) -> bool:
        return all(s.evaluate(view, now) for s in self.subs)


class Not(_Base):
    def __init__(self, name: str, sub: Evaluator) -> None:
        super().__init__(name)
        self.sub = sub
        self.probability = Fraction(1) if sub.probability == 1 else None
        self.rate_based = sub.rate_based

    def evaluate(self, view: TraceView, now: float) -> bool:
        return not self.sub.evaluate(view, now)


class Composite(_Base):
    """The collector's composite: sub-policies in ``policy_order``; the first that votes to sample decides, kept
    only while it stays within its share (``rate_allocation`` percent of ``max_total_spans_per_second``; a
    sub-policy without a share is limited by the total only) and the total stays within the maximum, counted in
    spans per wall second of the processor clock."""

    probability: Fraction | None = None
    rate_based = True

    def __init__(self, cfg: c.Composite, subs: dict[str, Evaluator]) -> None:
        super().__init__(cfg.name)
        shares = {a.policy: a.percent for a in cfg.rate_allocation}
        self._max = cfg.max_total_spans_per_second
        self._subs = [(subs[n], self._max * shares[n] // 100 if n in shares else self._max) for n in cfg.policy_order]
        self._counts = [0] * len(self._subs)
        self._total = 0
        self._second: int | None = None

    def evaluate(self, view: TraceView, now: float) -> bool:
        second = int(now)
        if second != self._second:
            self._second = second
            self._counts = [0] * len(self._subs)
            self._total = 0
        n = view.trace.span_count
        for i, (sub, allocated) in enumerate(self._subs):
            if sub.evaluate(view, now):
                if self._counts[i] + n <= allocated and self._total + n <= self._max:
                    self._counts[i] += n
                    self._total += n
                    return True
                return False
        return False


class DropPolicy(_Base):
    def __init__(self, name: str, subs: Sequence[Evaluator]) -> None:
        super().__init__(name)
        self.subs = list(subs)

    def evaluate(self, view: TraceView, now: float) -> bool:
        return all(s.evaluate(view, now) for s in self.subs)


_LEAVES: dict[type[Any], Callable[[Any], Evaluator]] = {
    c.AlwaysSample: lambda p: AlwaysSample(p.name),
    c.Probabilistic: Probabilistic,
    c.Latency: Latency,
    c.StatusCode: StatusCode,
    c.StringAttribute: StringAttribute,
    c.NumericAttribute: NumericAttribute,
    c.BooleanAttribute: BooleanAttribute,
    c.SpanCount: SpanCount,
    c.TraceState: TraceState,
    c.TraceFlags: TraceFlags,
    c.RateLimiting: RateLimiting,
    c.BytesLimiting: BytesLimiting,
}


def build(policy: c.Policy) -> Evaluator:
    """The evaluator for one configured policy (sub-policies included)."""
    leaf = _LEAVES.get(type(policy))
    if leaf is not None:
        return leaf(policy)
    if isinstance(policy, c.And):
        return And(policy.name, [build(p) for p in policy.and_sub_policy])
    if isinstance(policy, c.Not):
        return Not(policy.name, build(policy.not_sub_policy))
    if isinstance(policy, c.Drop):
        return DropPolicy(policy.name, [build(p) for p in policy.drop_sub_policy])
    if isinstance(policy, c.Composite):
        return Composite(policy, {p.name: build(p) for p in policy.composite_sub_policy})
    raise TypeError(f"unknown policy type {type(policy).__name__}")


def _subs(policy: Any) -> list[Any]:
    if isinstance(policy, c.And):
        return list(policy.and_sub_policy)
    if isinstance(policy, c.Not):
        return [policy.not_sub_policy]
    if isinstance(policy, c.Drop):
        return list(policy.drop_sub_policy)
    if isinstance(policy, c.Composite):
        return list(policy.composite_sub_policy)
    return []


def uses(policies: Sequence[Any], kind: type[Any]) -> bool:
    """Whether any policy, at any depth, is of type ``kind`` (so the fields it reads must be read)."""
    return any(isinstance(p, kind) or uses(_subs(p), kind) for p in policies)


def attribute_keys(policy: c.Policy) -> set[str]:
    """Attribute keys a policy reads, so decoding collects only those."""
    if isinstance(policy, c.StringAttribute | c.NumericAttribute | c.BooleanAttribute):
        return {policy.key}
    keys: set[str] = set()
    for s in _subs(policy):
        keys |= attribute_keys(s)
    return keys


class PolicySet:
    """The configured policies and the combination rule. ``votes[i]`` counts, per policy in config order,
    [matched, not matched] since the last ``take_votes`` (plain ints: metrics are updated once per tick)."""

    def __init__(self, policies: Sequence[c.Policy], sample_on_first_match: bool, need_alone: bool) -> None:
        self.names = [p.name for p in policies]
        built = [build(p) for p in policies]
        self._drops = [(i, e) for i, e in enumerate(built) if isinstance(e, DropPolicy)]
        self._samplers = [(i, e) for i, e in enumerate(built) if not isinstance(e, DropPolicy)]
        self.kinds = ["drop" if isinstance(e, DropPolicy) else "sample" for e in built]
        self._first_match = sample_on_first_match
        self._need_alone = need_alone
        self.keys = frozenset(k for p in policies for k in attribute_keys(p))
        self.votes = [[0, 0] for _ in built]
        # One Decision object per outcome, shared by every trace that ends that way.
        self._dropped_by = {i: Decision(False, e.name) for i, e in self._drops}
        self._kept_alone: dict[int, Decision] = {}
        self._kept_shared: dict[int, Decision] = {}
        for i, e in self._samplers:
            p = e.probability
            adjusted = float(1 / p) if p else 1.0
            threshold = e.threshold if isinstance(e, Probabilistic) else None
            self._kept_alone[i] = Decision(True, e.name, adjusted, threshold)
            self._kept_shared[i] = Decision(True, e.name)

    def decide(self, view: TraceView, now: float) -> Decision:
        votes = self.votes
        for i, d in self._drops:
            if d.evaluate(view, now):
                votes[i][0] += 1
                return self._dropped_by[i]
            votes[i][1] += 1
        first = -1
        matched = 0
        for i, e in self._samplers:
            if first >= 0 and self._first_match and (not self._need_alone or e.rate_based):
                continue
            if e.evaluate(view, now):
                votes[i][0] += 1
                matched += 1
                if first < 0:
                    first = i
            else:
                votes[i][1] += 1
        if first < 0:
            return NOT_SAMPLED
        return self._kept_alone[first] if matched == 1 else self._kept_shared[first]

    def take_votes(self) -> list[tuple[str, str, int]]:
        """(policy, outcome, count) since the last call; outcome is sampled / not_sampled or dropped /
        not_dropped."""
        out = []
        for name, kind, v in zip(self.names, self.kinds, self.votes, strict=True):
            yes, no = ("dropped", "not_dropped") if kind == "drop" else ("sampled", "not_sampled")
            if v[0]:
                out.append((name, yes, v[0]))
            if v[1]:
                out.append((name, no, v[1]))
            v[0] = v[1] = 0
        return out


def stable_hash(data: bytes) -> int:
    """A 64-bit hash that is the same in every process (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
