"""CreateSettings for a component under test, with its own metrics registry."""

from __future__ import annotations

import logging

from pipeline.clock import SYSTEM_CLOCK, Clock
from pipeline.component import ComponentId, CreateSettings, Kind
from pipeline.model import Signal
from pipeline.telemetry.health import HealthRegistry
from pipeline.telemetry.metrics import SelfMetrics


def make_settings(
    kind: Kind,
    component_id: str,
    signals: frozenset[Signal] = frozenset(Signal),
    clock: Clock = SYSTEM_CLOCK,
    metrics: SelfMetrics | None = None,
) -> CreateSettings:
    cid = ComponentId.parse(component_id)
    return CreateSettings(
        id=cid,
        kind=kind,
        signals=signals,
        metrics=metrics if metrics is not None else SelfMetrics(process_metrics=False),
        health=HealthRegistry(),
        logger=logging.getLogger(f"otelpipe.{kind.singular}.{cid}"),
        clock=clock,
        pipelines=("test",),
    )


def sample_value(metrics: SelfMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    v = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if v is None else v
