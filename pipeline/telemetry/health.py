"""Component health for /health/ready.

Components register named checks; a check is a cheap function returning the component's current status.
The service adds its own state: a draining daemon is not ready, so load balancers stop sending to it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


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


class HealthChecks(Protocol):
    """What a component may do with health: register its checks and take them back."""

    def register(self, name: str, check: Check) -> None: ...

    def unregister(self, name: str) -> None: ...


class HealthRegistry:
    """The daemon's checks by name.

    During a reload the old and the new instance of a component coexist under one check name, so each name holds
    a stack of (owner, check); the newest registration is the one /health/ready runs, and an owner's unregister
    removes only its own entry, bringing back the previous instance's check where there is one.
    """

    def __init__(self) -> None:
        self._checks: dict[str, list[tuple[object, Check]]] = {}

    def register(self, name: str, check: Check, owner: object = None) -> None:
        stack = self._checks.setdefault(name, [])
        stack[:] = [entry for entry in stack if entry[0] is not owner]
        stack.append((owner, check))

    def unregister(self, name: str, owner: object = None) -> None:
        stack = self._checks.get(name)
        if stack is None:
            return
        stack[:] = [entry for entry in stack if entry[0] is not owner]
        if not stack:
            del self._checks[name]

    def withdraw(self, owner: object) -> None:
        """Remove every check ``owner`` registered."""
        for name in list(self._checks):
            self.unregister(name, owner)

    def scope(self) -> HealthScope:
        return HealthScope(self)

    def run(self) -> tuple[Status, list[CheckReport]]:
        reports: list[CheckReport] = []
        worst = Status.HEALTHY
        for name, stack in sorted(self._checks.items()):
            check = stack[-1][1]
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


class HealthScope:
    """One component instance's registrations in the daemon's registry (what CreateSettings.health holds when the
    graph builds a component), so a discarded or replaced instance can take back exactly its own checks."""

    def __init__(self, registry: HealthRegistry) -> None:
        self._registry = registry

    def register(self, name: str, check: Check) -> None:
        self._registry.register(name, check, owner=self)

    def unregister(self, name: str) -> None:
        self._registry.unregister(name, owner=self)

    def withdraw(self) -> None:
        self._registry.withdraw(self)
