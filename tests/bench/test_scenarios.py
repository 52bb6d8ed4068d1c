"""The shipped scenarios decode, and fail clearly while their components are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scenario
from pipeline.components import default_registry

ENV = {
    "BENCH_GRPC_ENDPOINT": "127.0.0.1:14317",
    "BENCH_HTTP_ENDPOINT": "127.0.0.1:14318",
    "BENCH_TELEMETRY_ENDPOINT": "127.0.0.1:18888",
    "BENCH_SINK_GRPC": "127.0.0.1:24317",
    "BENCH_SINK_HTTP": "http://127.0.0.1:24318",
}
REQUIRED = {"receive", "standard", "pii_heavy", "logs", "overload", "http"}


def test_every_scenario_of_the_issue_is_shipped() -> None:
    assert set(scenario.available()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_shipped_scenario_validates_once_its_components_exist(name: str) -> None:
    sc = scenario.load(name)
    assert sc.load.description
    missing = scenario.missing_components(sc, default_registry())
    if missing:
        with pytest.raises(scenario.ScenarioError, match="not registered") as info:
            scenario.check(sc, default_registry(), ENV)
        assert all(m in str(info.value) for m in missing)
        pytest.skip(f"{name} waits for: {', '.join(missing)}")
    scenario.check(sc, default_registry(), ENV)


def test_missing_components_are_named(tmp_path: Path) -> None:
    (tmp_path / "x.toml").write_text(
        '[receivers.otlp]\n[processors."nothing/here"]\n[exporters.nop]\n'
        '[pipelines.traces]\nreceivers = ["otlp"]\nprocessors = ["nothing/here"]\nexporters = ["nop"]\n'
    )
    (tmp_path / "x.load.toml").write_text('description = "x"\n')
    sc = scenario.load("x", tmp_path)
    with pytest.raises(scenario.ScenarioError, match="processors nothing"):
        scenario.check(sc, default_registry(), ENV)


def test_load_profiles_are_strict(tmp_path: Path) -> None:
    (tmp_path / "y.toml").write_text("")
    (tmp_path / "y.load.toml").write_text('description = "y"\nduration = 3\n')
    with pytest.raises(scenario.ScenarioError, match="duration"):
        scenario.load("y", tmp_path)
    with pytest.raises(scenario.ScenarioError, match="unknown scenario"):
        scenario.load("nope", tmp_path)
