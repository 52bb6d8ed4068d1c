"""Time, injected. Processors and encoders never read the system clock themselves, so tests drive them with a
fake clock (tests/support/clock.py) and never sleep."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for timeouts, windows and rates."""
        ...

    def time_ns(self) -> int:
        """Wall-clock nanoseconds since the epoch: for timestamps written on telemetry."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()


SYSTEM_CLOCK = SystemClock()
