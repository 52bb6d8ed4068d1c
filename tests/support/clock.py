"""A clock tests move by hand: no sleeps, no timing assertions."""

from __future__ import annotations


class FakeClock:
    def __init__(self, start_s: float = 1000.0, wall_ns: int = 1_700_000_000_000_000_000) -> None:
        self._mono = start_s
        self._wall_ns = wall_ns

    def monotonic(self) -> float:
        return self._mono

    def time_ns(self) -> int:
        return self._wall_ns

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall_ns += int(seconds * 1e9)
