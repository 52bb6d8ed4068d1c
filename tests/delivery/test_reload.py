"""Graph replacement on reload, with fake components: adoption, relays, in-flight requests, failures, health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import msgspec
import pytest

from config.model import Config, PipelineConfig, PipelineId, ServiceConfig
from pipeline import graph
from pipeline.component import ComponentId, CreateSettings, Factory, Kind, Registry
from pipeline.consumer import Consumer
from pipeline.errors import StartError
from pipeline.model import Batch, Signal
from pipeline.telemetry.health import CheckResult, HealthRegistry, Status
from pipeline.telemetry.metrics import SelfMetrics
from tests.support.data import traces_request


class Cfg(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    tag: str = ""
    fail_start: bool = False


class Part:
    """A fake component: records lifecycle in a journal, forwards data, registers a health check."""

    def __init__(self, settings: CreateSettings, cfg: Cfg, nexts: Mapping[Signal, Consumer], world: World) -> None:
        self.settings = settings
        self.cfg = cfg
        self.nexts = nexts
        self.world = world
        self.name = f"{settings.kind.singular}:{settings.id}:{cfg.tag}"
        self.received: list[Batch] = []
        self.hold: asyncio.Event | None = None
        self.holding = asyncio.Event()
        world.parts.append(self)

    @property
    def mutates_data(self) -> bool:
        return False

    def consumer(self, signal: Signal) -> Consumer:
        return self

    async def consume(self, batch: Batch) -> None:
        if self.hold is not None:
            self.holding.set()
            await self.hold.wait()
        self.received.append(batch)
        nxt = self.nexts.get(batch.signal)
        if nxt is not None:
            await nxt.consume(batch)

    async def start(self) -> None:
        if self.cfg.fail_start:
            raise StartError(f"{self.name} cannot start")
        self.world.journal.append(f"start {self.name}")
        self.settings.health.register(f"check:{self.settings.id}", lambda: CheckResult(Status.HEALTHY, self.name))

    async def shutdown(self, deadline: float) -> None:
        self.world.journal.append(f"stop {self.name}")
        self.settings.health.unregister(f"check:{self.settings.id}")


class World:
    def __init__(self) -> None:
        self.journal: list[str] = []
        self.parts: list[Part] = []
        self.metrics = SelfMetrics(process_metrics=False)
        self.health = HealthRegistry()

        def create(settings: CreateSettings, cfg: Cfg, nexts: Mapping[Signal, Consumer]) -> Part:
            return Part(settings, cfg, nexts, self)

        every = frozenset(Signal)
        self.registry = Registry(
            [
                Factory(Kind.RECEIVER, "rx", Cfg, create, every),
                Factory(Kind.PROCESSOR, "proc", Cfg, create, every),
                Factory(Kind.EXPORTER, "sink", Cfg, create, every),
            ]
        )

    def config(self, *, rx: str = "", proc: str | None = None, sink: str = "", fail: bool = False) -> Config:
        processors = (ComponentId("proc"),) if proc is not None else ()
        comps: dict[Kind, dict[ComponentId, msgspec.Struct]] = {
            Kind.RECEIVER: {ComponentId("rx"): Cfg(tag=rx)},
            Kind.EXPORTER: {ComponentId("sink"): Cfg(tag=sink, fail_start=fail)},
        }
        if proc is not None:
            comps[Kind.PROCESSOR] = {ComponentId("proc"): Cfg(tag=proc)}
        p = PipelineConfig(PipelineId(Signal.TRACES), (ComponentId("rx"),), processors, (ComponentId("sink"),))
        return Config(ServiceConfig(), comps, {p.id: p})

    def build(self, config: Config, previous: graph.Graph | None = None) -> graph.Graph:
        return graph.build(config, self.registry, self.metrics, self.health, previous=previous)

    def part(self, name: str) -> Part:
        (found,) = [p for p in self.parts if p.name == name]
        return found

    def check_message(self, name: str) -> str:
        _, reports = self.health.run()
        return next(r.message for r in reports if r.name == name)


def spans() -> Batch:
    return Batch.from_message(Signal.TRACES, traces_request(1, 2))


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_unchanged_receiver_is_adopted_and_repointed_changed_exporter_replaced() -> None:
    async def go() -> None:
        w = World()
        old = w.build(w.config(sink="v1"))
        await old.start()
        rx = w.part("receiver:rx:")
        await rx.nexts[Signal.TRACES].consume(spans())
        new = w.build(w.config(sink="v2", proc="p"), previous=old)
        assert {str(k) for k in new.adopted} == {"receiver rx"}
        assert await graph.replace(old, new, time.monotonic() + 5) is None
        await rx.nexts[Signal.TRACES].consume(spans())  # the same receiver instance now feeds the new graph
        assert len(w.part("exporter:sink:v1").received) == 1
        assert len(w.part("exporter:sink:v2").received) == 1
        assert len(w.part("processor:proc:p").received) == 1
        assert "stop receiver:rx:" not in w.journal  # its port kept serving
        assert w.journal.index("start exporter:sink:v2") < w.journal.index("stop exporter:sink:v1")
        assert w.check_message("check:sink") == "exporter:sink:v2"  # the old unregister did not remove it
        await new.shutdown(time.monotonic() + 5)
        assert "stop receiver:rx:" in w.journal
        assert "check:sink" not in [r.name for r in w.health.run()[1]]

    run(go())


def test_unchanged_exporter_keeps_running_and_receives_the_old_processors_flush() -> None:
    async def go() -> None:
        w = World()
        old = w.build(w.config(proc="a"))
        await old.start()
        new = w.build(w.config(proc="b"), previous=old)
        assert {str(k) for k in new.adopted} == {"receiver rx", "exporter sink"}
        await graph.replace(old, new, time.monotonic() + 5)
        assert "stop processor:proc:a" in w.journal
        assert "stop exporter:sink:" not in w.journal
        assert "stop receiver:rx:" not in w.journal
        assert w.journal.count("start exporter:sink:") == 1

    run(go())


def test_requests_on_their_way_into_the_old_graph_finish_before_it_stops() -> None:
    async def go() -> None:
        w = World()
        old = w.build(w.config(proc="slow"))
        await old.start()
        slow = w.part("processor:proc:slow")
        slow.hold = asyncio.Event()
        rx = w.part("receiver:rx:")
        inflight = asyncio.ensure_future(rx.nexts[Signal.TRACES].consume(spans()))
        await slow.holding.wait()
        new = w.build(w.config(proc="fast", sink="v2"), previous=old)
        switching = asyncio.ensure_future(graph.replace(old, new, time.monotonic() + 5))
        for _ in range(20):
            await asyncio.sleep(0)
        assert "stop processor:proc:slow" not in w.journal  # waiting for the request in flight
        slow.hold.set()
        await inflight
        await switching
        assert len(w.part("exporter:sink:").received) == 1  # delivered by the old graph, once
        assert w.journal.index("stop processor:proc:slow") < w.journal.index("stop exporter:sink:")

    run(go())


def test_a_new_graph_that_cannot_start_leaves_the_old_one_running() -> None:
    async def go() -> None:
        w = World()
        old = w.build(w.config(sink="v1"))
        await old.start()
        new = w.build(w.config(sink="v2", fail=True), previous=old)
        with pytest.raises(StartError, match="cannot start"):
            await graph.replace(old, new, time.monotonic() + 5)
        rx = w.part("receiver:rx:")
        await rx.nexts[Signal.TRACES].consume(spans())
        assert len(w.part("exporter:sink:v1").received) == 1
        assert "stop exporter:sink:v1" not in w.journal
        assert w.check_message("check:sink") == "exporter:sink:v1"
        await old.shutdown(time.monotonic() + 5)

    run(go())


def test_changed_receiver_restarts_after_the_old_one_stopped() -> None:
    async def go() -> None:
        w = World()
        old = w.build(w.config(rx="a"))
        await old.start()
        new = w.build(w.config(rx="b"), previous=old)
        assert {str(k) for k in new.adopted} == {"exporter sink"}
        await graph.replace(old, new, time.monotonic() + 5)
        assert w.journal.index("stop receiver:rx:a") < w.journal.index("start receiver:rx:b")

    run(go())
