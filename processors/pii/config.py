"""Configuration of the ``pii`` processor: ``[processors.pii]``. An empty table is the safe default: every
built-in detector on, action ``redact``, and the default blocked keys. docs/pii.md is the reference."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from processors.pii.actions import ACTIONS, Action
from processors.pii.detectors import DETECTOR_NAMES, DetectorName
from processors.pii.keys import validate_glob
from processors.pii.regex import Pattern, RegexError

DEFAULT_BLOCKED_KEYS: tuple[str, ...] = (
    "*password*",
    "*secret*",
    "*token*",
    "*api_key*",
    "*apikey*",
    "authorization",
    "cookie",
    "set-cookie",
)
# The name blocked-key matches carry in tokens ("[REDACTED:blocked_key]") and in self-metrics.
BLOCKED_KEY = "blocked_key"
# The name attributes removed by ``allowed_keys`` carry in self-metrics.
NOT_ALLOWED = "allowed_keys"
MIN_HASH_KEY_CHARS = 16
# What ``actions`` may override: a built-in detector, or the blocked-key rule.
ActionTarget = Literal[
    "email", "credit_card", "us_ssn", "ipv4", "ipv6", "phone", "jwt", "credentials", "iban", "blocked_key"
]

RuleName = Annotated[str, msgspec.Meta(pattern="^[a-z][a-z0-9_]{0,62}$")]


class PiiRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A user rule: values matching ``pattern`` (RE2 syntax) are masked by ``action``."""

    name: RuleName
    pattern: Annotated[str, msgspec.Meta(min_length=1)]
    # Defaults to the processor's ``action``.
    action: Action | None = None

    def __post_init__(self) -> None:
        try:
            compiled = Pattern(self.pattern.encode())
        except RegexError as exc:
            raise ValueError(f"pattern: not a valid RE2 regular expression: {exc}") from None
        if compiled.matches_empty():
            raise ValueError("pattern: matches the empty string, so it would match every value")


class PiiConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Built-in detectors to run (all by default); [] runs none (key rules and user rules only).
    detectors: tuple[DetectorName, ...] = DETECTOR_NAMES
    # Default action for detectors, user rules and blocked keys.
    action: Action = "redact"
    # Per-detector (or "blocked_key") overrides of ``action``.
    actions: dict[ActionTarget, Action] = msgspec.field(default_factory=dict)
    # What ``redact`` writes; "{name}" becomes the detector or rule name.
    redaction: Annotated[str, msgspec.Meta(min_length=1)] = "[REDACTED:{name}]"
    # HMAC-SHA256 key for the ``hash`` action, usually "${env:OTELPIPE_PII_KEY}"; required when hash is used.
    hash_key: str = ""
    rules: tuple[PiiRule, ...] = ()
    # Case-insensitive globs; a matching attribute's whole value is replaced whatever it holds.
    blocked_keys: tuple[str, ...] = DEFAULT_BLOCKED_KEYS
    # When set, only these attributes are kept (the collector's redaction processor semantics).
    allowed_keys: tuple[str, ...] = ()
    # Never scanned (blocked keys still win).
    ignored_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(set(self.detectors)) != len(self.detectors):
            raise ValueError("detectors: a detector is listed twice")
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in DETECTOR_NAMES or rule.name in (BLOCKED_KEY, NOT_ALLOWED) or rule.name in seen:
                raise ValueError(f"rules: rule [{i}] name {rule.name!r} is already taken; names must be unique")
            seen.add(rule.name)
        for key in ("blocked_keys", "allowed_keys", "ignored_keys"):
            for i, glob in enumerate(getattr(self, key)):
                problem = validate_glob(glob)
                if problem is not None:
                    raise ValueError(f"{key}: [{i}] {problem}")
        if "hash" in self.used_actions():
            if not self.hash_key:
                raise ValueError(
                    'hash_key: required when an action is "hash" (for example "${env:OTELPIPE_PII_KEY}"); '
                    "unkeyed hashes are not offered because small value spaces reverse them"
                )
            if len(self.hash_key) < MIN_HASH_KEY_CHARS:
                raise ValueError(f"hash_key: must be at least {MIN_HASH_KEY_CHARS} characters")

    def action_for(self, name: str) -> Action:
        for target, action in self.actions.items():
            if target == name:
                return action
        return self.action

    def used_actions(self) -> set[str]:
        used: set[str] = {self.action_for(d) for d in self.detectors} | {self.action_for(BLOCKED_KEY)}
        used |= {rule.action or self.action for rule in self.rules}
        return used


__all__ = ["ACTIONS", "BLOCKED_KEY", "DEFAULT_BLOCKED_KEYS", "PiiConfig", "PiiRule"]
