from __future__ import annotations

import asyncio

import msgspec
import pytest

from config.model import Config, PipelineConfig, PipelineId, ServiceConfig
from pipeline import graph
from pipeline.component import ComponentId, Kind, Registry
from pipeline.model import Batch, Signal
from pipeline.telemetry.health import HealthRegistry
from pipeline.telemetry.metrics import SelfMetrics
from tests.core.fakes import FakeComponent, FakeConfig, fake_factories
from tests.support.data import logs_request, traces_request
from tests.support.settings import sample_value


def cid(s: str) -> ComponentId:
    return ComponentId.parse(s)


def pipeline(name: str, receivers: list[str], processors: list[str], exporters: list[str]) -> PipelineConfig:
    signal, _, rest = name.partition("/")
    return PipelineConfig(
        PipelineId(Signal(signal), rest),
        tuple(map(cid, receivers)),
        tuple(map(cid, processors)),
        tuple(map(cid, exporters)),
    )


def make_config(pipelines: list[PipelineConfig], **components: dict[str, FakeConfig]) -> Config:
    comps: dict[Kind, dict[ComponentId, msgspec.Struct]] = {}
    for kind_name, table in components.items():
        comps[Kind(kind_name)] = {cid(k): v for k, v in table.items()}
    return Config(ServiceConfig(), comps, {p.id: p for p in pipelines})


def build(config: Config) -> tuple[graph.Graph, list[str], list[FakeComponent], SelfMetrics]:
    journal: list[str] = []
    instances: list[FakeComponent] = []
    metrics = SelfMetrics(process_metrics=False)
    g = graph.build(config, Registry(fake_factories(journal, instances)), metrics, HealthRegistry())
    return g, journal, instances, metrics


def find(instances: list[FakeComponent], name: str) -> FakeComponent:
    (match,) = [i for i in instances if i.name == name]
    return match


def test_start_downstream_first_and_stop_upstream_first() -> None:
    cfg = make_config(
        [pipeline("traces", ["rx"], ["proc/a", "proc/b"], ["sink"])],
        receivers={"rx": FakeConfig()},
        processors={"proc/a": FakeConfig(), "proc/b": FakeConfig()},
        exporters={"sink": FakeConfig()},
    )
    g, journal, _, _ = build(cfg)
    asyncio.run(g.start())
    asyncio.run(g.shutdown(0.0))
    asyncio.run(g.shutdown(0.0))  # idempotent: no second round of stops
    assert journal == [
        "start exporter:sink",
        "start processor:proc/b@traces",
        "start processor:proc/a@traces",
        "start receiver:rx",
        "stop receiver:rx",
        "stop processor:proc/a@traces",
        "stop processor:proc/b@traces",
        "stop exporter:sink",
    ]


def test_processor_instance_per_pipeline_and_shared_exporter() -> None:
    cfg = make_config(
        [
            pipeline("traces", ["rx"], ["proc"], ["sink"]),
            pipeline("traces/2", ["rx"], ["proc"], ["sink"]),
        ],
        receivers={"rx": FakeConfig()},
        processors={"proc": FakeConfig()},
        exporters={"sink": FakeConfig()},
    )
    _, _, instances, _ = build(cfg)
    names = sorted(i.name for i in instances)
    assert names == ["exporter:sink", "processor:proc@traces", "processor:proc@traces/2", "receiver:rx"]


def test_shareable_processor_is_one_instance_with_a_downstream_per_signal() -> None:
    cfg = make_config(
        [
            pipeline("traces", ["rx"], ["shared"], ["sink/t"]),
            pipeline("logs", ["rx"], ["shared"], ["sink/l"]),
        ],
        receivers={"rx": FakeConfig()},
        processors={"shared": FakeConfig()},
        exporters={"sink/t": FakeConfig(), "sink/l": FakeConfig()},
    )
    g, _, instances, _ = build(cfg)
    shared = [i for i in instances if i.settings.id == cid("shared")]
    assert len(shared) == 1
    assert set(shared[0].nexts) == {Signal.TRACES, Signal.LOGS}
    assert shared[0].settings.pipelines == ("traces", "logs")  # each signal's metrics name its own pipeline
    rx = find(instances, "receiver:rx")

    async def go() -> None:
        await g.start()
        await rx.nexts[Signal.TRACES].consume(Batch.from_message(Signal.TRACES, traces_request()))
        await rx.nexts[Signal.LOGS].consume(Batch.from_message(Signal.LOGS, logs_request()))
        await g.shutdown(0.0)

    asyncio.run(go())
    assert [b.signal for b in find(instances, "exporter:sink/t").received] == [Signal.TRACES]
    assert [b.signal for b in find(instances, "exporter:sink/l").received] == [Signal.LOGS]


def test_fan_out_clones_only_for_mutating_consumers_and_counts_processor_items() -> None:
    cfg = make_config(
        [
            pipeline("traces", ["rx"], [], ["sink/ro"]),
            pipeline("traces/mut", ["rx"], ["proc/m"], ["sink/after"]),
        ],
        receivers={"rx": FakeConfig()},
        processors={"proc/m": FakeConfig(mutates=True)},
        exporters={"sink/ro": FakeConfig(), "sink/after": FakeConfig()},
    )
    g, _, instances, metrics = build(cfg)
    rx = find(instances, "receiver:rx")
    original = Batch.from_message(Signal.TRACES, traces_request(n_traces=2, spans_per_trace=3))

    async def go() -> None:
        await g.start()
        await rx.nexts[Signal.TRACES].consume(original)
        await g.shutdown(0.0)

    asyncio.run(go())
    ro = find(instances, "exporter:sink/ro").received
    after = find(instances, "exporter:sink/after").received
    assert ro == [original]  # the read-only branch shares the original
    assert after[0] is not original  # the mutating branch got a clone ...
    keys = [kv.key for kv in after[0].message.resource_spans[0].resource.attributes]  # type: ignore[union-attr]
    assert "touched_by" in keys
    # ... and the original is untouched
    assert "touched_by" not in [kv.key for kv in original.message.resource_spans[0].resource.attributes]  # type: ignore[union-attr]
    labels = {"processor": "proc/m", "pipeline": "traces/mut", "otel_signal": "traces"}
    assert sample_value(metrics, "otelpipe_processor_incoming_items_total", labels) == 6
    assert sample_value(metrics, "otelpipe_processor_outgoing_items_total", labels) == 6


def test_connector_joins_pipelines_and_starts_before_its_upstream() -> None:
    cfg = make_config(
        [
            pipeline("traces", ["rx"], [], ["conn"]),
            pipeline("metrics", ["conn"], ["proc"], ["sink"]),
        ],
        receivers={"rx": FakeConfig()},
        processors={"proc": FakeConfig()},
        exporters={"sink": FakeConfig()},
        connectors={"conn": FakeConfig()},
    )
    g, journal, instances, _ = build(cfg)
    conn = find(instances, "connector:conn")
    assert set(conn.nexts) == {Signal.METRICS}
    asyncio.run(g.start())
    starts = [e for e in journal if e.startswith("start")]
    assert starts.index("start processor:proc@metrics") < starts.index("start connector:conn")
    assert starts.index("start connector:conn") < starts.index("start receiver:rx")


def test_factory_value_error_becomes_config_error_naming_the_component() -> None:
    def boom(*_: object) -> object:
        raise ValueError("path must contain {signal}")

    from pipeline.component import Factory
    from pipeline.errors import ConfigError

    journal: list[str] = []
    instances: list[FakeComponent] = []
    factories = [f for f in fake_factories(journal, instances) if f.kind is not Kind.EXPORTER]
    factories.append(Factory(Kind.EXPORTER, "sink", FakeConfig, boom, frozenset(Signal)))
    cfg = make_config(
        [pipeline("traces", ["rx"], [], ["sink/x"])], receivers={"rx": FakeConfig()}, exporters={"sink/x": FakeConfig()}
    )
    with pytest.raises(ConfigError) as info:
        graph.build(cfg, Registry(factories), SelfMetrics(process_metrics=False), HealthRegistry())
    assert info.value.errors == ('exporters."sink/x": path must contain {signal}',)
