"""Loss accounting (DESIGN.md section 1), pure: what was offered, acknowledged, exported, dropped, and lost.

Per signal, in items (spans, log records):

    offered   sent by the load generator (``unsent`` slots of an open-loop schedule are reported apart)
    accepted  acknowledged to the generator (success, or the accepted part of a partial success)
    refused   answered with a retryable error; ``failed`` with a non-retryable one; ``timeout`` not answered
    exported  seen at the sinks
    dropped on purpose   decisions, from the daemon's drop counters whose reason is a decision (sampling, filter)
    counted drops        every other drop counter of the daemon (processor and exporter), by reason
    lost = accepted - exported - dropped on purpose - counted drops, which must be 0.

The count formula is the issue's definition. Two checks by trace id back it up, computed from the trace ids the
generator knows it had acknowledged (its stamps) and the ids the sinks saw:
- ``missing_required_traces``: acknowledged traces that a deterministic rule had to keep (error and slow traces
  under tail sampling; every trace when nothing samples) and that never reached a sink;
- ``unacknowledged_exported_traces``: traces exported although never acknowledged (a timed-out send the daemon
  had in fact accepted); they make ``exported`` exceed what the count formula expects, so a timeout is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Drop reasons that are decisions, not failures. Processors name their reasons; these cover the usual words.
ON_PURPOSE_REASONS = frozenset(
    {
        "not_sampled",
        "sampled_out",
        "sampling",
        "sampling_decision",
        "policy",
        "dropped_by_policy",
        "filtered",
        "filter",
        "decided_drop",
        "dropped_trace",
        "late_span_dropped",
        "late_not_sampled",
        "pii_drop",
        "drop_action",
    }
)


@dataclass(frozen=True, slots=True)
class LoadCounts:
    """What the generators recorded for one signal (items)."""

    offered: int = 0
    acked: int = 0
    refused: int = 0
    failed: int = 0
    timeout: int = 0
    rejected: int = 0
    unsent: int = 0


@dataclass(frozen=True, slots=True)
class TraceFacts:
    """One acknowledged trace: its full id and whether a deterministic policy must keep it."""

    trace_id: bytes
    spans: int
    required: bool


@dataclass(slots=True)
class Account:
    signal: str
    offered: int
    accepted: int
    refused: int
    failed: int
    timeout: int
    rejected: int
    unsent: int
    exported: int
    dropped_on_purpose: int
    counted_drops: dict[str, int]
    lost: int
    daemon_accepted: int | None
    acked_traces: int = 0
    exported_acked_traces: int = 0
    missing_required_traces: int = 0
    unacknowledged_exported_traces: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def counted_drops_total(self) -> int:
        return sum(self.counted_drops.values())


def split_drops(drops: Mapping[str, int], on_purpose: Iterable[str] = ON_PURPOSE_REASONS) -> tuple[int, dict[str, int]]:
    """(dropped on purpose, the other drops by reason) from drop counters keyed by reason."""
    purposeful = set(on_purpose)
    decided = sum(n for reason, n in drops.items() if reason in purposeful)
    counted = {reason: n for reason, n in sorted(drops.items()) if reason not in purposeful and n}
    return decided, counted


def account(
    signal: str,
    load: LoadCounts,
    exported: int,
    drops: Mapping[str, int] | None,
    daemon_accepted: int | None = None,
    acked_traces: Iterable[TraceFacts] = (),
    exported_ids: set[bytes] | None = None,
    on_purpose: Iterable[str] = ON_PURPOSE_REASONS,
    discard: bool = False,
) -> Account:
    """The account of one signal. ``drops`` None means the target's drop counters are unknown (the peer): lost
    is still computed but not reported as a problem. ``discard``: the scenario's exporter throws data away by
    design (nop), so everything accepted and not exported is dropped on purpose."""
    decided, counted = split_drops(drops or {}, on_purpose)
    if discard:
        # The exporter discards by design (nop): what was not exported was dropped on purpose.
        decided = max(0, load.acked - exported - sum(counted.values()))
    lost = load.acked - exported - decided - sum(counted.values())
    acc = Account(
        signal=signal,
        offered=load.offered,
        accepted=load.acked,
        refused=load.refused,
        failed=load.failed,
        timeout=load.timeout,
        rejected=load.rejected,
        unsent=load.unsent,
        exported=exported,
        dropped_on_purpose=decided,
        counted_drops=counted,
        lost=lost,
        daemon_accepted=daemon_accepted,
    )
    if exported_ids is not None:
        acked_ids: set[bytes] = set()
        for facts in acked_traces:
            acked_ids.add(facts.trace_id)
            acc.acked_traces += 1
            if facts.trace_id in exported_ids:
                acc.exported_acked_traces += 1
            elif facts.required:
                acc.missing_required_traces += 1
        acc.unacknowledged_exported_traces = len(exported_ids - acked_ids)
    _problems(acc, drops is not None)
    return acc


def _problems(acc: Account, drops_known: bool) -> None:
    if acc.lost > 0 and drops_known:
        acc.problems.append(f"{acc.signal}: {acc.lost} items acknowledged but neither exported nor counted (lost)")
    if acc.lost < 0 and acc.timeout == 0 and drops_known:
        acc.problems.append(
            f"{acc.signal}: {-acc.lost} more items exported or counted than acknowledged (duplicates, or a drop "
            "counted for data that was also exported)"
        )
    if acc.missing_required_traces:
        acc.problems.append(
            f"{acc.signal}: {acc.missing_required_traces} acknowledged traces that had to be kept never reached a sink"
        )
    if acc.failed:
        acc.problems.append(f"{acc.signal}: {acc.failed} items got a non-retryable error")
    if acc.daemon_accepted is not None and acc.timeout == 0 and acc.daemon_accepted != acc.accepted:
        acc.problems.append(
            f"{acc.signal}: the daemon counted {acc.daemon_accepted} accepted, "
            f"the generators {acc.accepted} acknowledged"
        )


def acked_trace_facts(
    unit_infos: list[list[tuple[bytes, int, int, bool, bool, bool]]],
    acked_units: Iterable[tuple[int, int, int]],
    required: str,
    bit: int = 1,
) -> list[TraceFacts]:
    """The traces of every unit whose request of the given signal bit was acknowledged, with their stamped ids.

    ``required``: ``"all"`` (nothing samples: every trace must arrive), ``"error_or_slow"`` (tail sampling keeps
    errors and slow traces deterministically) or ``"none"``.
    """
    out: list[TraceFacts] = []
    for index, stamp, mask in acked_units:
        if not mask & bit:
            continue
        prefix = stamp.to_bytes(8, "big")
        for suffix, spans, logs, error, slow, has_spans in unit_infos[index]:
            if bit == 1 and not has_spans:
                continue
            if bit == 2 and not logs:
                continue
            must = required == "all" or (required == "error_or_slow" and (error or slow))
            out.append(TraceFacts(prefix + suffix, spans if bit == 1 else logs, must))
    return out
