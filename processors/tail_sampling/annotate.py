"""Optional annotations on kept spans, each switched on in ``[processors.<id>.annotations]``.

- ``sampling.policy`` (string): the policy that kept the trace.
- ``sampling.adjusted_count`` (double): how many traces this one stands for. 1/p when a probabilistic policy
  (or an ``and`` around one) was the only policy that voted to keep it; 1 otherwise, because the trace would have
  been kept anyway. Spans of a late trace carry the count of the original decision.
- W3C ``tracestate`` ``ot=th:<hex>``: the OpenTelemetry rejection threshold, only when an unsalted probabilistic
  policy alone kept the trace (so the decision used the trace id's randomness, which is what ``th`` describes).
  An incoming ``th`` is combined (the larger threshold, i.e. the smaller probability, wins) and other ``ot``
  sub-keys are kept. A span whose tracestate carries its own randomness (``ot=...;rv:``) is left alone: the
  decision was not made on that value.

This runs on the parsed output request (only kept spans), so its cost is per kept span and only when enabled.
"""

from __future__ import annotations

from typing import Any

from processors.tail_sampling.config import AnnotationsConfig
from processors.tail_sampling.policies import Decision, threshold_hex

POLICY_ATTRIBUTE = "sampling.policy"
ADJUSTED_COUNT_ATTRIBUTE = "sampling.adjusted_count"
_MAX_TRACESTATE_MEMBERS = 32  # W3C trace-context


def annotate_spans(message: Any, decisions: dict[bytes, Decision], cfg: AnnotationsConfig) -> int:
    """Annotate the spans of an ExportTraceServiceRequest in place; returns the number of spans changed."""
    changed = 0
    for rs in message.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                d = decisions.get(span.trace_id)
                if d is None:
                    continue
                if cfg.policy_name and d.policy:
                    _set_attribute(span, POLICY_ATTRIBUTE).string_value = d.policy
                if cfg.adjusted_count:
                    _set_attribute(span, ADJUSTED_COUNT_ATTRIBUTE).double_value = d.adjusted_count
                if cfg.tracestate_threshold and d.threshold is not None:
                    span.trace_state = combine_threshold(span.trace_state, d.threshold)
                changed += 1
    return changed


def _set_attribute(span: Any, key: str) -> Any:
    """The AnyValue of attribute ``key``, replacing an earlier one (an upstream sampler may have set it)."""
    for i, kv in enumerate(span.attributes):
        if kv.key == key:
            del span.attributes[i]
            break
    kv = span.attributes.add()
    kv.key = key
    return kv.value


def _parse_threshold(value: str) -> int | None:
    if not 1 <= len(value) <= 14:
        return None
    try:
        return int(value.ljust(14, "0"), 16)
    except ValueError:
        return None


def combine_threshold(tracestate: str, threshold: int) -> str:
    """``tracestate`` with ``ot=th:`` set to the larger of its threshold and ``threshold``; ``ot`` moves to the
    front, as W3C asks of an updated entry."""
    members = [m.strip() for m in tracestate.split(",") if m.strip()] if tracestate else []
    ot_value = ""
    others = []
    for m in members:
        key, sep, value = m.partition("=")
        if sep and key == "ot":
            ot_value = value
        else:
            others.append(m)
    subkeys = [s for s in ot_value.split(";") if s] if ot_value else []
    kept_subkeys = []
    incoming: int | None = None
    for sub in subkeys:
        name, _, value = sub.partition(":")
        if name == "rv":
            return tracestate  # explicit randomness: our decision did not use it
        if name == "th":
            incoming = _parse_threshold(value)
            continue
        kept_subkeys.append(sub)
    combined = threshold if incoming is None else max(incoming, threshold)
    ot = "ot=" + ";".join([f"th:{threshold_hex(combined)}", *kept_subkeys])
    return ",".join([ot, *others][:_MAX_TRACESTATE_MEMBERS])
