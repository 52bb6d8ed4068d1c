"""Configuration of the ``tail_sampling`` processor: strict, frozen msgspec Structs.

Policies are a tagged union on ``type`` (the collector's policy names). Where the collector nests a policy's
options under a key named after its type (``latency: {threshold_ms: ...}``), TOML here keeps them flat on the
policy table, next to ``name`` and ``type``::

    [[processors.tail_sampling.policies]]
    name = "slow"
    type = "latency"
    threshold_ms = 5000

Composite policies keep the collector's key names (``and_sub_policy``, ``not_sub_policy``, ``drop_sub_policy``,
``composite_sub_policy``, ``rate_allocation``, ``policy_order``). Every check that needs more than one field runs
in ``__post_init__``, whose message starts with the key it is about, so the loader reports the full TOML key.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any, Literal

import msgspec
import re2

Percent = Annotated[float, msgspec.Meta(ge=0.0, le=100.0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
Name = Annotated[str, msgspec.Meta(min_length=1)]
StatusName = Literal["OK", "ERROR", "UNSET"]
SeverityName = Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]

# OTLP severity numbers: each name covers four numbers (TRACE 1-4, DEBUG 5-8, ..., FATAL 21-24).
SEVERITY_RANGES: dict[str, tuple[int, int]] = {
    name: (1 + 4 * i, 4 + 4 * i) for i, name in enumerate(("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"))
}


def compile_regex(pattern: str) -> Any:
    """An RE2 pattern (the collector's Go regexp syntax, linear time whatever the input), compiled quietly: RE2
    would otherwise log every invalid pattern to stderr itself."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 8 << 20
    return re2.compile(pattern, options)


class _Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    # Shown in metrics, logs, the replay report and the optional sampling.policy attribute.
    name: Name


class AlwaysSample(_Policy, tag="always_sample", frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class Probabilistic(_Policy, tag="probabilistic", frozen=True, forbid_unknown_fields=True, kw_only=True):
    sampling_percentage: Percent
    # Empty: decide on the trace id's own randomness (its last 56 bits, W3C trace-context level 2), which is what
    # makes the ``ot=th:`` threshold valid downstream. Set: the collector's salted FNV-1a hash of the trace id.
    hash_salt: str = ""

    @property
    def ratio(self) -> Fraction:
        # Through the decimal text, so 10 means exactly 1/10 and not the nearest binary fraction.
        return Fraction(repr(self.sampling_percentage)) / 100


class Latency(_Policy, tag="latency", frozen=True, forbid_unknown_fields=True, kw_only=True):
    threshold_ms: NonNegative = 0
    upper_threshold_ms: NonNegative = 0  # 0 = no upper bound

    def __post_init__(self) -> None:
        if self.upper_threshold_ms and self.upper_threshold_ms < self.threshold_ms:
            raise ValueError(
                f"upper_threshold_ms: must be >= threshold_ms ({self.threshold_ms}) or 0 for no upper bound"
            )


class StatusCode(_Policy, tag="status_code", frozen=True, forbid_unknown_fields=True, kw_only=True):
    status_codes: Annotated[list[StatusName], msgspec.Meta(min_length=1)]


class StringAttribute(_Policy, tag="string_attribute", frozen=True, forbid_unknown_fields=True, kw_only=True):
    key: Name
    values: Annotated[list[str], msgspec.Meta(min_length=1)]
    # Values are RE2 regular expressions (the collector's Go syntax), searched anywhere in the attribute value.
    enabled_regex_matching: bool = False
    # Regex results are remembered for this many distinct attribute values.
    cache_max_size: Positive = 256
    invert_match: bool = False

    def __post_init__(self) -> None:
        if self.enabled_regex_matching:
            for i, pattern in enumerate(self.values):
                try:
                    compile_regex(pattern)
                except re2.error as exc:
                    detail = exc.args[0] if exc.args else ""
                    if isinstance(detail, bytes):
                        detail = detail.decode("utf-8", "replace")
                    raise ValueError(f"values: item {i} is not a valid regular expression: {detail}") from None


class NumericAttribute(_Policy, tag="numeric_attribute", frozen=True, forbid_unknown_fields=True, kw_only=True):
    key: Name
    min_value: float | None = None
    max_value: float | None = None
    invert_match: bool = False

    def __post_init__(self) -> None:
        if self.min_value is None and self.max_value is None:
            raise ValueError("min_value: set min_value, max_value or both")
        if self.min_value is not None and self.max_value is not None and self.max_value < self.min_value:
            raise ValueError(f"max_value: must be >= min_value ({self.min_value})")


class BooleanAttribute(_Policy, tag="boolean_attribute", frozen=True, forbid_unknown_fields=True, kw_only=True):
    key: Name
    value: bool
    invert_match: bool = False


class SpanCount(_Policy, tag="span_count", frozen=True, forbid_unknown_fields=True, kw_only=True):
    min_spans: NonNegative = 0
    max_spans: NonNegative = 0  # 0 = no upper bound

    def __post_init__(self) -> None:
        if self.max_spans and self.max_spans < self.min_spans:
            raise ValueError(f"max_spans: must be >= min_spans ({self.min_spans}) or 0 for no upper bound")


class TraceState(_Policy, tag="trace_state", frozen=True, forbid_unknown_fields=True, kw_only=True):
    key: Name
    values: Annotated[list[str], msgspec.Meta(min_length=1)]


class TraceFlags(_Policy, tag="trace_flags", frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Matches when any span's W3C sampled flag (Span.flags bit 0) has this value.
    sampled: bool = True


class RateLimiting(_Policy, tag="rate_limiting", frozen=True, forbid_unknown_fields=True, kw_only=True):
    spans_per_second: Positive
    burst_capacity: NonNegative = 0  # 0 = spans_per_second


class BytesLimiting(_Policy, tag="bytes_limiting", frozen=True, forbid_unknown_fields=True, kw_only=True):
    bytes_per_second: Positive
    burst_capacity: NonNegative = 0  # 0 = 2 x bytes_per_second, as in the collector


class And(_Policy, tag="and", frozen=True, forbid_unknown_fields=True, kw_only=True):
    and_sub_policy: Annotated[list[SubPolicy], msgspec.Meta(min_length=1)]

    def __post_init__(self) -> None:
        _unique_names("and_sub_policy", self.and_sub_policy)


class Not(_Policy, tag="not", frozen=True, forbid_unknown_fields=True, kw_only=True):
    not_sub_policy: SubPolicy


class Drop(_Policy, tag="drop", frozen=True, forbid_unknown_fields=True, kw_only=True):
    # All sub-policies match -> the trace is dropped, whatever any other policy says.
    drop_sub_policy: Annotated[list[SubPolicy], msgspec.Meta(min_length=1)]

    def __post_init__(self) -> None:
        _unique_names("drop_sub_policy", self.drop_sub_policy)


class RateAllocation(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    policy: Name
    percent: Annotated[int, msgspec.Meta(ge=0, le=100)]


class Composite(_Policy, tag="composite", frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_total_spans_per_second: Positive
    policy_order: Annotated[list[str], msgspec.Meta(min_length=1)]
    composite_sub_policy: Annotated[list[SubPolicy], msgspec.Meta(min_length=1)]
    rate_allocation: list[RateAllocation] = []

    def __post_init__(self) -> None:
        _unique_names("composite_sub_policy", self.composite_sub_policy)
        names = {p.name for p in self.composite_sub_policy}
        for i, name in enumerate(self.policy_order):
            if name not in names:
                raise ValueError(f"policy_order: item {i} ({name!r}) names no composite_sub_policy")
        if len(set(self.policy_order)) != len(self.policy_order):
            raise ValueError("policy_order: a policy is listed twice")
        missing = names - set(self.policy_order)
        if missing:
            raise ValueError(f"policy_order: must list every composite_sub_policy (missing {sorted(missing)})")
        for i, alloc in enumerate(self.rate_allocation):
            if alloc.policy not in names:
                raise ValueError(f"rate_allocation: item {i} ({alloc.policy!r}) names no composite_sub_policy")
        if sum(a.percent for a in self.rate_allocation) > 100:
            raise ValueError("rate_allocation: the percentages add up to more than 100")


# What may appear inside and / not / drop / composite: every policy except drop and composite themselves.
SubPolicy = (
    AlwaysSample
    | Probabilistic
    | Latency
    | StatusCode
    | StringAttribute
    | NumericAttribute
    | BooleanAttribute
    | SpanCount
    | TraceState
    | TraceFlags
    | RateLimiting
    | BytesLimiting
    | And
    | Not
)
Policy = SubPolicy | Drop | Composite
LEAF_POLICY_TYPES = (
    "always_sample",
    "probabilistic",
    "latency",
    "status_code",
    "string_attribute",
    "numeric_attribute",
    "boolean_attribute",
    "span_count",
    "trace_state",
    "trace_flags",
    "rate_limiting",
    "bytes_limiting",
)


def _unique_names(key: str, policies: list[SubPolicy] | list[Policy]) -> None:
    seen: set[str] = set()
    for i, p in enumerate(policies):
        if p.name in seen:
            raise ValueError(f"{key}: item {i} repeats the policy name {p.name!r}")
        seen.add(p.name)


class LogPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A rule for log records that follow no trace decision; the first rule that matches decides."""

    name: Name
    min_severity: SeverityName | None = None  # inclusive: "WARN" = severity_number >= 13
    max_severity: SeverityName | None = None  # inclusive: "INFO" = severity_number <= 12
    sampling_percentage: Percent = 100.0

    def __post_init__(self) -> None:
        lo, hi = self.min_severity, self.max_severity
        if lo is not None and hi is not None and SEVERITY_RANGES[hi][1] < SEVERITY_RANGES[lo][0]:
            raise ValueError(f"max_severity: {hi} is below min_severity {lo}")

    @property
    def ratio(self) -> Fraction:
        return Fraction(repr(self.sampling_percentage)) / 100


class DecisionCacheConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Trace ids kept, remembered exactly (LRU) so late spans and logs are kept too. 0 turns it off.
    sampled_cache_size: NonNegative = 100_000
    # Trace ids dropped, remembered in a compact filter (under 7 bytes per id) so late spans and logs are dropped.
    # 0 turns it off.
    non_sampled_cache_size: NonNegative = 1_000_000
    # The filter's target false-positive rate: the share of new trace ids it would mistake for dropped ones.
    non_sampled_false_positive_rate: Annotated[float, msgspec.Meta(gt=0.0, le=0.1)] = 0.0001


class AnnotationsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Attribute sampling.policy on kept spans: the name of the policy that kept the trace.
    policy_name: bool = False
    # Attribute sampling.adjusted_count: 1/p when a probabilistic policy alone kept the trace, else 1.
    adjusted_count: bool = False
    # W3C tracestate ot=th:<threshold> when an unsalted probabilistic policy alone kept the trace; an incoming
    # threshold is combined (the larger one wins), never overwritten.
    tracestate_threshold: bool = False

    @property
    def any(self) -> bool:
        return self.policy_name or self.adjusted_count or self.tracestate_threshold


class TailSamplingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    policies: Annotated[list[Policy], msgspec.Meta(min_length=1)]
    # A trace is decided this long after its first span arrived ...
    decision_wait_ms: Annotated[int, msgspec.Meta(ge=1, le=3_600_000)] = 30_000
    # ... or, once its root span has arrived, as soon as no span came for this long (0 = off) ...
    decision_wait_after_root_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)] = 5_000
    # ... but never later than this after its first span (0 = twice decision_wait_ms).
    max_trace_duration_ms: Annotated[int, msgspec.Meta(ge=0, le=7_200_000)] = 0
    # Budgets: traces and bytes held. Reaching one decides the oldest traces now (decide-on-evict).
    num_traces: Positive = 50_000
    max_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 268_435_456
    sample_on_first_match: bool = False
    drop_pending_traces_on_shutdown: bool = False
    decision_cache: DecisionCacheConfig = msgspec.field(default_factory=DecisionCacheConfig)
    annotations: AnnotationsConfig = msgspec.field(default_factory=AnnotationsConfig)
    log_policies: list[LogPolicy] = []

    def __post_init__(self) -> None:
        if self.max_trace_duration_ms and self.max_trace_duration_ms < self.decision_wait_ms:
            raise ValueError(f"max_trace_duration_ms: must be >= decision_wait_ms ({self.decision_wait_ms}) or 0")
        _unique_names("policies", self.policies)

    @property
    def max_trace_duration_s(self) -> float:
        return (self.max_trace_duration_ms or 2 * self.decision_wait_ms) / 1000.0
        seen: set[str] = set()
        for i, lp in enumerate(self.log_policies):
            if lp.name in seen:
                raise ValueError(f"log_policies: item {i} repeats the name {lp.name!r}")
            seen.add(lp.name)
