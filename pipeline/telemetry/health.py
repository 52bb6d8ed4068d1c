"""Component health for /health/ready.

Components register named checks; a check is a cheap function returning the component's current status.
The service adds its own state: a draining daemon is not ready, so load balancers stop sending to it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass


class Status(enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


_RANK = {Status.HEALTHY: 0, Status.DEGRADED: 1, Status.UNHEALTHY: 2}


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: Status
    message: str = ""


@dataclass(frozen=True, slots=True)
class CheckReport:
    name: str
    status: Status
    latency_ms: float
    message: str


Check = Callable[[], CheckResult]


class HealthRegistry:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def register(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def unregister(self, name: str) -> None:
        self._checks.pop(name, None)

    def run(self) -> tuple[Status, list[CheckReport]]:
        reports: list[CheckReport] = []
        worst = Status.HEALTHY
        for name, check in sorted(self._checks.items()):
            t0 = time.perf_counter()
            try:
                result = check()
            except Exception as exc:  # a broken check reports itself, it never breaks the endpoint
                result = CheckResult(Status.UNHEALTHY, f"check failed: {type(exc).__name__}")
            latency_ms = (time.perf_counter() - t0) * 1000.0
            reports.append(CheckReport(name, result.status, round(latency_ms, 3), result.message))
            if _RANK[result.status] > _RANK[worst]:
                worst = result.status
        return worst, reports
