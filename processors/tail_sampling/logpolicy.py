"""Log records that follow no trace decision: records without a trace id, and records whose trace showed no
span by decision time (the sender head-sampled it away).

The record's own W3C sampled flag is honoured first: a record of a trace its sender sampled is kept (its spans
exist, they only did not come here). Every other record goes through ``log_policies``, in order; the first rule
whose severity range contains the record decides, keeping ``sampling_percentage`` of what it sees; a record no
rule matches is kept (nothing disappears because a list forgot a case). Without rules, every record is kept.

Sampling is deterministic: on the trace id's randomness when the record has one (so all records of a trace go
the same way), otherwise on a stable hash of the record's bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from processors.tail_sampling.config import SEVERITY_RANGES, LogPolicy
from processors.tail_sampling.policies import RANDOMNESS_BITS, randomness, stable_hash, threshold_for

SAMPLED_FLAG = 0x01  # LogRecord.flags bits 0-7: W3C trace flags


class LogPolicies:
    def __init__(self, rules: Sequence[LogPolicy]) -> None:
        self.names = [r.name for r in rules]
        self._rules: list[tuple[int, int, int]] = []  # (lowest severity, highest severity, threshold)
        for r in rules:
            lo = SEVERITY_RANGES[r.min_severity][0] if r.min_severity else 0
            hi = SEVERITY_RANGES[r.max_severity][1] if r.max_severity else 1 << 30
            self._rules.append((lo, hi, threshold_for(r.ratio)))
        self._bounded = [r.min_severity is not None or r.max_severity is not None for r in rules]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def keep(self, severity: int, flags: int, tid: bytes, body: bytes) -> bool:
        if flags & SAMPLED_FLAG and tid:
            return True
        for (lo, hi, threshold), bounded in zip(self._rules, self._bounded, strict=True):
            # Severity 0 means "unspecified": only a rule without bounds speaks for it.
            if (severity == 0 and not bounded) or (severity and lo <= severity <= hi):
                if threshold == 0:
                    return True
                r = randomness(tid) if len(tid) == 16 else stable_hash(body) >> (64 - RANDOMNESS_BITS)
                return r >= threshold
        return True
