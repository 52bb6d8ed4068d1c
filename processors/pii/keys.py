"""Key rules: blocked, ignored and allowed attribute keys as case-insensitive glob patterns.

Globs use ``*`` (any run of characters), ``?`` (one character) and ``[...]`` / ``[!...]`` (a class), matched
against the whole key without regard to case, like the collector's key patterns. Decisions are cached per key
bytes: a batch repeats a handful of keys thousands of times.

For the bulk pass, ``literals()`` gives one literal that every blocked key must contain (the longest literal run
of each glob), so one RE2 pass over the serialized batch finds every key that could be blocked. A glob without
any literal (``*``, ``?*``) cannot be prefiltered; the engine then visits every attribute.
"""

from __future__ import annotations

from collections.abc import Sequence

from processors.pii.regex import Pattern

NORMAL = 0
BLOCKED = 1
IGNORED = 2
NOT_ALLOWED = 4

_SPECIAL = frozenset("\\.^$|?*+()[]{}")
# Distinct keys remembered; past this the cache starts over (keys are bounded in practice, attackers are not).
_CACHE_LIMIT = 8192


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def glob_parts(glob: str) -> tuple[str, list[str]]:
    """The RE2 source of ``glob`` (not anchored) and its literal runs."""
    out: list[str] = []
    literals: list[str] = []
    run = ""
    i = 0
    while i < len(glob):
        c = glob[i]
        if c in "*?[":
            if c == "[":
                close = glob.find("]", i + 2)
                if close < 0:  # an unclosed bracket is a literal "[", as in fnmatch
                    run += c
                    out.append(_escape(c))
                    i += 1
                    continue
                body = glob[i + 1 : close]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
                i = close + 1
            else:
                out.append(".*" if c == "*" else ".")
                i += 1
            if run:
                literals.append(run)
                run = ""
            continue
        run += c
        out.append(_escape(c))
        i += 1
    if run:
        literals.append(run)
    return "".join(out), literals


def validate_glob(glob: str) -> str | None:
    """Why ``glob`` is unusable, or None."""
    if not glob:
        return "empty pattern"
    try:
        Pattern(glob_parts(glob)[0].encode(), case_insensitive=True)
    except ValueError as exc:
        return f"invalid pattern {glob!r}: {exc}"
    return None


def _union(globs: Sequence[str]) -> Pattern | None:
    if not globs:
        return None
    source = "|".join(f"(?:{glob_parts(g)[0]})" for g in globs)
    return Pattern(f"(?s:{source})".encode(), case_insensitive=True)


class KeyRules:
    """What to do with an attribute, by its key."""

    def __init__(self, blocked: Sequence[str], ignored: Sequence[str], allowed: Sequence[str]) -> None:
        self.blocked_globs = tuple(blocked)
        self.has_allowlist = bool(allowed)
        self._blocked = _union(blocked)
        self._ignored = _union(ignored)
        self._allowed = _union(allowed)
        self._cache: dict[bytes, int] = {}

    def decide(self, key: bytes) -> int:
        """Bit flags: BLOCKED, IGNORED, NOT_ALLOWED (NOT_ALLOWED only when an allow list is configured)."""
        found = self._cache.get(key)
        if found is not None:
            return found
        flags = NORMAL
        if self._blocked is not None and self._blocked.fullmatch(key):
            flags |= BLOCKED
        if self._ignored is not None and self._ignored.fullmatch(key):
            flags |= IGNORED
        # Ignored keys are implicitly allowed, as in the collector's redaction processor.
        if self._allowed is not None and not flags & IGNORED and not self._allowed.fullmatch(key):
            flags |= NOT_ALLOWED
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = flags
        return flags

    def is_blocked(self, key: bytes) -> bool:
        return bool(self.decide(key) & BLOCKED)

    def literals(self) -> list[bytes] | None:
        """One literal per blocked glob that every key it matches contains; None if some glob has none."""
        out: list[bytes] = []
        for glob in self.blocked_globs:
            runs = glob_parts(glob)[1]
            if not runs:
                return None
            out.append(max(runs, key=len).encode())
        return out

    def needs_every_key(self) -> bool:
        """True when no bulk prefilter can find the keys to act on (an allow list, or a literal-free glob)."""
        return self.has_allowlist or self.literals() is None
