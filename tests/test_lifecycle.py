"""One lifecycle test over every registered component: create, start, shutdown twice; shutdown without start.

A component added to the registry is covered automatically; if its default config is not usable here, add a
sample to SAMPLES (the test fails until then)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.component import Factory, Kind
from pipeline.components import default_registry
from pipeline.consumer import Consumer
from pipeline.model import Signal
from tests.support.settings import make_settings
from tests.support.sinks import SinkConsumer

SAMPLES: dict[tuple[Kind, str], dict[str, Any]] = {
    (Kind.RECEIVER, "otlp"): {"grpc_endpoint": "127.0.0.1:0", "http_endpoint": "127.0.0.1:0"},
    (Kind.EXPORTER, "otlp"): {"endpoint": "127.0.0.1:1", "insecure": True},
    (Kind.EXPORTER, "otlphttp"): {"endpoint": "http://127.0.0.1:1"},
    (Kind.EXPORTER, "file"): {"path": "{tmp}/{{signal}}.jsonl"},
    (Kind.PROCESSOR, "tail_sampling"): {"policies": [{"name": "all", "type": "always_sample"}]},
}

FACTORIES = sorted(default_registry(), key=lambda f: (f.kind.value, f.type))


def _config(factory: Factory, tmp_path: Path) -> msgspec.Struct:
    sample = SAMPLES.get((factory.kind, factory.type))
    if sample is None:
        return factory.default_config()
    values = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in sample.items()}
    return msgspec.convert(values, factory.config_type)


def _create(factory: Factory, tmp_path: Path) -> Any:
    signals = frozenset(factory.signals)
    settings = make_settings(factory.kind, factory.type, signals=signals)
    nexts: dict[Signal, Consumer] = {}
    if factory.kind is not Kind.EXPORTER:
        outs = set(signals)
        for o in factory.connector_outputs.values():
            outs |= o
        nexts = {s: SinkConsumer() for s in outs}
    return factory.create(settings, _config(factory, tmp_path), nexts)


def test_registry_is_not_empty() -> None:
    kinds = {f.kind for f in FACTORIES}
    assert {Kind.RECEIVER, Kind.EXPORTER, Kind.CONNECTOR} <= kinds


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f"{f.kind.singular}-{f.type}")
def test_lifecycle(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        started = _create(factory, tmp_path)
        await started.start()
        if factory.kind is not Kind.RECEIVER:
            for s in factory.signals:
                assert started.consumer(s) is not None
        deadline = time.monotonic() + 5
        await started.shutdown(deadline)
        await started.shutdown(deadline)  # idempotent
        never_started = _create(factory, tmp_path)
        await never_started.shutdown(deadline)  # safe without start
        await never_started.shutdown(deadline)

    asyncio.run(go())
