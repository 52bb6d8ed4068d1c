"""Every TOML file shipped under config/ loads with the real registry and builds a graph (nothing started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import load_config
from pipeline import graph
from pipeline.cli import default_config_path
from pipeline.components import default_registry
from pipeline.telemetry.health import HealthRegistry
from pipeline.telemetry.metrics import SelfMetrics

SHIPPED = sorted((Path(__file__).parents[2] / "config").glob("*.toml"))


def test_default_and_full_are_shipped() -> None:
    assert {p.name for p in SHIPPED} >= {"default.toml", "full.toml"}
    assert default_config_path().read_text() == (Path(__file__).parents[2] / "config" / "default.toml").read_text()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_is_valid(path: Path) -> None:
    registry = default_registry()
    config = load_config([path], registry, env={})
    assert config.pipelines
    assert config.warnings == ()
    g = graph.build(config, registry, SelfMetrics(process_metrics=False), HealthRegistry())
    assert g.entries.keys() == config.pipelines.keys()


def test_full_config_uses_every_registered_component_type() -> None:
    registry = default_registry()
    config = load_config([Path(__file__).parents[2] / "config" / "full.toml"], registry, env={})
    used = {(kind, cid.type) for kind, table in config.components.items() for cid in table}
    assert used == {(f.kind, f.type) for f in registry}
