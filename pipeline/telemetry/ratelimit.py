"""Rate-limited logging: data-path problems are logged at most a few times per interval, never per item."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.clock import SYSTEM_CLOCK, Clock


class RateLimitedLog:
    """Logs at most ``burst`` records per ``interval_s`` per key; the next record that passes reports how many
    were suppressed in between (``suppressed`` field)."""

    def __init__(
        self, logger: logging.Logger, interval_s: float = 10.0, burst: int = 1, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._logger = logger
        self._interval = interval_s
        self._burst = burst
        self._clock = clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (window start, logged, suppressed)

    def log(self, level: int, key: str, msg: str, **fields: Any) -> bool:
        now = self._clock.monotonic()
        start, logged, suppressed = self._windows.get(key, (now, 0, 0))
        if now - start >= self._interval:
            start, logged = now, 0
        if logged >= self._burst:
            self._windows[key] = (start, logged, suppressed + 1)
            return False
        if suppressed:
            fields["suppressed"] = suppressed
        self._windows[key] = (start, logged + 1, 0)
        self._logger.log(level, msg, extra={"fields": fields} if fields else None)
        return True
