"""Builds the running pipeline graph from a validated Config.

    receiver --(fan-out per signal)--> pipeline entry -> processor -> ... -> fan-out -> exporter | connector
    connector --(fan-out per emitted signal)--> entries of the pipelines that list it as a receiver

Receivers, exporters and connectors are one instance per id, shared by the pipelines that list them.
Processors are one instance per pipeline, except a processor whose factory is ``shareable``: one instance per
id with one downstream per signal (tail sampling, so logs can follow their trace).

Start runs downstream-first and shutdown upstream-first, in a topological order of the instance graph, so no
component ever sends into one that is not running.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config.model import Config, PipelineConfig, PipelineId
from pipeline.clock import SYSTEM_CLOCK, Clock
from pipeline.component import ComponentId, CreateSettings, Factory, Kind, Registry
from pipeline.consumer import Consumer
from pipeline.errors import ConfigError
from pipeline.fanout import fan_out
from pipeline.model import Batch, Signal
from pipeline.telemetry.health import HealthRegistry
from pipeline.telemetry.metrics import ProcessorMetrics, SelfMetrics

log = logging.getLogger("otelpipe.graph")


@dataclass(frozen=True, slots=True)
class NodeKey:
    kind: Kind
    id: ComponentId
    pipeline: PipelineId | None = None  # set for per-pipeline processor instances

    def __str__(self) -> str:
        where = f" in pipeline {self.pipeline}" if self.pipeline else ""
        return f"{self.kind.singular} {self.id}{where}"


@dataclass(slots=True)
class _Node:
    key: NodeKey
    instance: Any
    downstream: set[NodeKey] = field(default_factory=set)


class _Counting:
    """Counts items flowing through one edge into (incoming) or out of (outgoing) a processor."""

    __slots__ = ("_count", "_inner", "mutates_data")

    def __init__(self, inner: Consumer, count: Any) -> None:
        self._inner = inner
        self._count = count
        self.mutates_data = inner.mutates_data

    async def consume(self, batch: Batch) -> None:
        n = batch.items
        await self._inner.consume(batch)
        self._count(n)


class Graph:
    def __init__(self, nodes: dict[NodeKey, _Node], entries: dict[PipelineId, Consumer]) -> None:
        self._nodes = nodes
        self.entries = entries
        self._order = _topological(nodes)  # upstream first
        self._started: list[NodeKey] = []
        self._stopped = False

    def instances(self, kind: Kind | None = None) -> list[tuple[NodeKey, Any]]:
        return [(k, self._nodes[k].instance) for k in self._order if kind is None or k.kind is kind]

    async def start(self) -> None:
        for key in reversed(self._order):
            log.debug("starting %s", key)
            await self._nodes[key].instance.start()
            self._started.append(key)

    async def shutdown(self, deadline: float) -> None:
        """Upstream-first; every component gets its turn even if an earlier one fails. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for key in self._order:
            try:
                await self._nodes[key].instance.shutdown(deadline)
            except Exception:
                log.exception("shutdown of %s failed", key)


def build(
    config: Config,
    registry: Registry,
    metrics: SelfMetrics,
    health: HealthRegistry,
    clock: Clock = SYSTEM_CLOCK,
) -> Graph:
    """Create every component; nothing is started and no port is bound. Raises ConfigError for problems only
    a factory can see (collected across all components)."""
    return _Builder(config, registry, metrics, health, clock).build()


class _Builder:
    def __init__(
        self, config: Config, registry: Registry, metrics: SelfMetrics, health: HealthRegistry, clock: Clock
    ) -> None:
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.nodes: dict[NodeKey, _Node] = {}
        self.errors: list[str] = []
        self.pipelines = list(config.pipelines.values())
        # Connector emit sides are filled after their downstream pipelines exist.
        self.connector_nexts: dict[ComponentId, dict[Signal, Consumer]] = {}
        self.shared_nexts: dict[ComponentId, dict[Signal, Consumer]] = {}

    def build(self) -> Graph:
        for cid in self._used(Kind.EXPORTER):
            self._create(Kind.EXPORTER, cid, self._signals_in(cid, "exporters"), {})
        for cid in self._used(Kind.CONNECTOR):
            nexts: dict[Signal, Consumer] = {}
            self.connector_nexts[cid] = nexts
            self._create(Kind.CONNECTOR, cid, self._signals_in(cid, "receivers"), nexts)
        if self.errors:
            raise ConfigError(self.errors)
        entries = {p.id: self._build_pipeline(p) for p in self.pipelines}
        for kind in (Kind.RECEIVER, Kind.CONNECTOR):
            for cid in self._used(kind) if kind is Kind.RECEIVER else list(self.connector_nexts):
                fed = [p for p in self.pipelines if cid in p.receivers]
                feeds = {
                    s: fan_out([entries[p.id] for p in fed if p.id.signal is s]) for s in {p.id.signal for p in fed}
                }
                if kind is Kind.RECEIVER:
                    self._create(Kind.RECEIVER, cid, frozenset(feeds), feeds)
                else:
                    self.connector_nexts[cid].update(feeds)
                node = self.nodes.get(NodeKey(kind, cid))
                if node is not None:
                    for p in fed:
                        node.downstream |= self._first_nodes(p)
        if self.errors:
            raise ConfigError(self.errors)
        return Graph(self.nodes, entries)

    def _build_pipeline(self, p: PipelineConfig) -> Consumer:
        signal = p.id.signal
        targets: list[Consumer] = []
        downstream: set[NodeKey] = set()
        for cid in p.exporters:
            kind = Kind.EXPORTER if cid in self.config.of(Kind.EXPORTER) else Kind.CONNECTOR
            node = self.nodes[NodeKey(kind, cid)]
            targets.append(node.instance.consumer(signal))
            downstream.add(node.key)
        tail = fan_out(targets)
        for cid in reversed(p.processors):
            factory = self._factory(Kind.PROCESSOR, cid)
            key = NodeKey(Kind.PROCESSOR, cid, self._pipeline_of(cid, p))
            pm = self.metrics.processor(str(cid), str(p.id), signal)
            out = _Counting(tail, pm.outgoing)
            if factory.shareable:
                nexts = self.shared_nexts.setdefault(cid, {})
                nexts[signal] = out
                if key not in self.nodes:
                    self._create(Kind.PROCESSOR, cid, self._signals_in(cid, "processors"), nexts, key)
            else:
                self._create(Kind.PROCESSOR, cid, frozenset({signal}), {signal: out}, key, (str(p.id),))
            node = self.nodes[key]
            node.downstream |= downstream
            downstream = {key}
            tail = _Counting(node.instance.consumer(signal), _incoming(pm))
        return tail

    def _first_nodes(self, p: PipelineConfig) -> set[NodeKey]:
        if p.processors:
            cid = p.processors[0]
            return {NodeKey(Kind.PROCESSOR, cid, self._pipeline_of(cid, p))}
        out = set()
        for cid in p.exporters:
            kind = Kind.EXPORTER if cid in self.config.of(Kind.EXPORTER) else Kind.CONNECTOR
            out.add(NodeKey(kind, cid))
        return out

    def _pipeline_of(self, cid: ComponentId, p: PipelineConfig) -> PipelineId | None:
        return None if self._factory(Kind.PROCESSOR, cid).shareable else p.id

    def _used(self, kind: Kind) -> list[ComponentId]:
        attr = "receivers" if kind is Kind.RECEIVER else "exporters"
        seen: dict[ComponentId, None] = {}
        for p in self.pipelines:
            for cid in getattr(p, attr):
                if cid in self.config.of(kind):
                    seen[cid] = None
        return list(seen)

    def _signals_in(self, cid: ComponentId, attr: str) -> frozenset[Signal]:
        return frozenset(p.id.signal for p in self.pipelines if cid in getattr(p, attr))

    def _factory(self, kind: Kind, cid: ComponentId) -> Factory:
        factory = self.registry.get(kind, cid.type)
        if factory is None:  # the loader checked this; a hand-built Config may not have
            raise ConfigError([f"{kind.value}.{cid}: unknown {kind.singular} type {cid.type!r}"])
        return factory

    def _create(
        self,
        kind: Kind,
        cid: ComponentId,
        signals: frozenset[Signal],
        nexts: Mapping[Signal, Consumer],
        key: NodeKey | None = None,
        pipelines: tuple[str, ...] = (),
    ) -> None:
        key = key or NodeKey(kind, cid)
        factory = self._factory(kind, cid)
        settings = CreateSettings(
            id=cid,
            kind=kind,
            signals=signals,
            metrics=self.metrics,
            health=self.health,
            logger=logging.getLogger(f"otelpipe.{kind.singular}.{cid}"),
            clock=self.clock,
            pipelines=pipelines,
        )
        try:
            instance = factory.create(settings, self.config.of(kind)[cid], nexts)
        except ConfigError as exc:
            self.errors.extend(exc.errors)
            return
        except ValueError as exc:
            self.errors.append(f"{kind.value}.{_quote(str(cid))}: {exc}")
            return
        self.nodes[key] = _Node(key, instance)


def _incoming(pm: ProcessorMetrics) -> Any:
    return pm.incoming


def _quote(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'


def _topological(nodes: dict[NodeKey, _Node]) -> list[NodeKey]:
    """Upstream-first order (Kahn); the loader rejects cycles, so every node is placed."""
    indegree = dict.fromkeys(nodes, 0)
    for node in nodes.values():
        for d in node.downstream:
            if d in indegree:
                indegree[d] += 1
    ready = [k for k, n in indegree.items() if n == 0]
    order: list[NodeKey] = []
    while ready:
        k = ready.pop(0)
        order.append(k)
        for d in sorted(nodes[k].downstream, key=str):
            if d in indegree:
                indegree[d] -= 1
                if indegree[d] == 0:
                    ready.append(d)
    if len(order) != len(nodes):
        raise ConfigError(["pipelines: the graph of pipelines and connectors has a cycle"])
    return order
