"""Health checks by owner: during a reload two instances share a check name; each takes back only its own."""

from __future__ import annotations

from pipeline.telemetry.health import CheckResult, HealthRegistry, Status


def _check(status: Status) -> CheckResult:
    return CheckResult(status)


def test_newest_registration_runs_and_unregister_restores_the_previous_owners_check() -> None:
    registry = HealthRegistry()
    old, new = registry.scope(), registry.scope()
    old.register("exporter/otlp", lambda: _check(Status.DEGRADED))
    new.register("exporter/otlp", lambda: _check(Status.HEALTHY))
    assert registry.run()[0] is Status.HEALTHY
    new.unregister("exporter/otlp")
    assert registry.run()[0] is Status.DEGRADED
    old.unregister("exporter/otlp")
    assert registry.run() == (Status.HEALTHY, [])


def test_an_old_owner_leaving_does_not_remove_the_successors_check() -> None:
    registry = HealthRegistry()
    old, new = registry.scope(), registry.scope()
    old.register("receiver:otlp", lambda: _check(Status.UNHEALTHY))
    new.register("receiver:otlp", lambda: _check(Status.HEALTHY))
    old.withdraw()
    status, reports = registry.run()
    assert status is Status.HEALTHY
    assert [r.name for r in reports] == ["receiver:otlp"]


def test_registering_again_replaces_the_same_owners_check() -> None:
    registry = HealthRegistry()
    registry.register("a", lambda: _check(Status.UNHEALTHY))
    registry.register("a", lambda: _check(Status.HEALTHY))
    assert registry.run()[0] is Status.HEALTHY
    registry.unregister("a")
    assert registry.run() == (Status.HEALTHY, [])
