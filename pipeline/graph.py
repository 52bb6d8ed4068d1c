"""Builds the running pipeline graph from a validated Config, and replaces it by another one (SIGHUP).

    receiver --relay--(fan-out per signal)--> pipeline entry -> processor -> ... -> fan-out -> exporter | connector
    connector --(fan-out per emitted signal)--> entries of the pipelines that list it as a receiver

Receivers, exporters and connectors are one instance per id, shared by the pipelines that list them.
Processors are one instance per pipeline, except a processor whose factory is ``shareable``: one instance per
id with one downstream per signal (tail sampling, so logs can follow their trace).

Start runs downstream-first and shutdown upstream-first, in a topological order of the instance graph, so no
component ever sends into one that is not running.

Reload (``replace``): the new graph is built with the old one as ``previous``. A receiver or exporter whose
configuration and signals did not change is adopted: the running instance joins the new graph, so its ports
keep serving and its queue keeps its data. Every receiver feeds its pipelines through a ``Relay``; an adopted
receiver's relays are re-pointed at the new graph's pipelines, and requests already on their way through the old
ones finish there. Then the old graph shuts down everything it did not hand over: its processors flush into the
exporters (adopted ones, or its own, which drain into their backends), so nothing accepted is lost, and nothing
is delivered twice because each request went through exactly one graph.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from config.model import Config, PipelineConfig, PipelineId
from pipeline.clock import SYSTEM_CLOCK, Clock
from pipeline.component import ComponentId, CreateSettings, Factory, Kind, Registry
from pipeline.consumer import Consumer
from pipeline.errors import ConfigError, StartError
from pipeline.fanout import fan_out
from pipeline.model import Batch, Signal
from pipeline.relay import Relay
from pipeline.telemetry.health import HealthRegistry, HealthScope
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
    config: msgspec.Struct | None = None
    signals: frozenset[Signal] = frozenset()
    downstream: set[NodeKey] = field(default_factory=set)


class _Counting:
    """Counts items flowing through one edge into (incoming) or out of (outgoing) a processor."""

    __slots__ = ("_count", "_inner", "mutates_data")

    def __init__(self, inner: Consumer, count: Any, mutates_data: bool | None = None) -> None:
        self._inner = inner
        self._count = count
        self.mutates_data = inner.mutates_data if mutates_data is None else mutates_data

    async def consume(self, batch: Batch) -> None:
        n = batch.items
        await self._inner.consume(batch)
        self._count(n)


class Graph:
    def __init__(
        self,
        nodes: dict[NodeKey, _Node],
        entries: dict[PipelineId, Consumer],
        relays: dict[ComponentId, dict[Signal, Relay]] | None = None,
        borrowed: set[NodeKey] | None = None,
        feeds: dict[ComponentId, dict[Signal, Consumer]] | None = None,
        views: dict[NodeKey, HealthScope] | None = None,
    ) -> None:
        self._nodes = nodes
        self.entries = entries
        self._order = _topological(nodes)  # upstream first
        self._relays = relays or {}
        # Nodes adopted from the previous graph: running already (never started here), and the previous
        # graph's to stop until the switch is made (borrowed).
        self._adopted = frozenset(borrowed or ())
        self._borrowed = set(self._adopted)
        # Adopted receivers: the feeds their relays are pointed at when the switch is made.
        self._feeds = feeds or {}
        # Nodes handed over to a successor graph: no longer this graph's to stop.
        self._released: set[NodeKey] = set()
        # The health view of each component this graph created.
        self._views = views or {}
        self._stopped = False

    def instances(self, kind: Kind | None = None) -> list[tuple[NodeKey, Any]]:
        return [(k, self._nodes[k].instance) for k in self._order if kind is None or k.kind is kind]

    def node(self, key: NodeKey) -> _Node | None:
        return self._nodes.get(key)

    @property
    def adopted(self) -> frozenset[NodeKey]:
        return self._adopted

    async def start(self) -> None:
        """Start every component this graph created, downstream-first (adopted ones are running already)."""
        await self.start_pipelines()
        await self.start_receivers()

    async def start_pipelines(self) -> None:
        for key in reversed(self._order):
            if key.kind is not Kind.RECEIVER and key not in self._adopted:
                log.debug("starting %s", key)
                await self._nodes[key].instance.start()

    async def start_receivers(self) -> None:
        for key in reversed(self._order):
            if key.kind is Kind.RECEIVER and key not in self._adopted:
                log.debug("starting %s", key)
                await self._nodes[key].instance.start()

    async def shutdown(self, deadline: float) -> None:
        """Upstream-first; every component gets its turn even if an earlier one fails. Idempotent. The health
        checks of the components it stopped are withdrawn (a predecessor's come back if there is one)."""
        if self._stopped:
            return
        self._stopped = True
        for key in self._order:
            if key in self._released or key in self._borrowed:
                continue
            try:
                await self._nodes[key].instance.shutdown(deadline)
            except Exception:
                log.exception("shutdown of %s failed", key)
        self.withdraw_health()

    def withdraw_health(self) -> None:
        """Remove the health checks of the components this graph still owns (discarded or stopped graph)."""
        for key, view in self._views.items():
            if key not in self._released:
                view.withdraw()


async def replace(old: Graph, new: Graph, deadline: float) -> StartError | None:
    """Switch from ``old`` to ``new`` (built with ``previous=old``) without losing or duplicating data.

    1. start the new graph's exporters, connectors and processors (adopted ones already run);
    2. point adopted receivers at the new pipelines;
    3. stop the old receivers that were not adopted (they drain into the old graph), then start the new ones
       (a changed receiver's port is free again only now);
    4. wait until no request is still on its way into the old pipelines, then shut the old graph down: its
       processors flush, its exporters drain into their backends, until ``deadline``.

    Raises StartError if step 1 fails: the old graph is untouched and keeps running. Returns the StartError of a
    receiver that could not start in step 3 (the switch is complete otherwise; the caller decides how to
    recover), None when everything runs.
    """
    try:
        await new.start_pipelines()
    except StartError:
        await new.shutdown(min(deadline, time.monotonic() + 5.0))
        raise
    waits: list[tuple[Relay, int]] = []
    for cid, feeds in new._feeds.items():
        for signal, relay in new._relays[cid].items():
            waits.append((relay, relay.retarget(feeds[signal])))
    handed = set(new._borrowed)
    new._borrowed.clear()  # the new graph owns them from here on
    old._released |= handed
    for key in old._order:
        if key.kind is Kind.RECEIVER and key not in handed:
            try:
                await old._nodes[key].instance.shutdown(deadline)
            except Exception:
                log.exception("shutdown of %s failed", key)
    failed: StartError | None = None
    try:
        await new.start_receivers()
    except StartError as exc:
        failed = exc
    remaining = max(0.0, deadline - time.monotonic())
    if waits:
        drained = asyncio.gather(*(relay.drained(gen) for relay, gen in waits))
        try:
            await asyncio.wait_for(drained, remaining)
        except TimeoutError:
            log.error("reload: requests still in flight into the old pipelines at the deadline")
    await old.shutdown(deadline)
    return failed


def build(
    config: Config,
    registry: Registry,
    metrics: SelfMetrics,
    health: HealthRegistry,
    clock: Clock = SYSTEM_CLOCK,
    previous: Graph | None = None,
) -> Graph:
    """Create every component; nothing is started and no port is bound. Raises ConfigError for problems only
    a factory can see (collected across all components). With ``previous``, unchanged receivers and exporters
    are adopted from it instead of created (see ``replace``)."""
    return _Builder(config, registry, metrics, health, clock, previous).build()


class _Builder:
    def __init__(
        self,
        config: Config,
        registry: Registry,
        metrics: SelfMetrics,
        health: HealthRegistry,
        clock: Clock,
        previous: Graph | None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.previous = previous
        self.nodes: dict[NodeKey, _Node] = {}
        self.errors: list[str] = []
        self.pipelines = list(config.pipelines.values())
        # Connector emit sides are filled after their downstream pipelines exist.
        self.connector_nexts: dict[ComponentId, dict[Signal, Consumer]] = {}
        self.shared_nexts: dict[ComponentId, dict[Signal, Consumer]] = {}
        self.relays: dict[ComponentId, dict[Signal, Relay]] = {}
        self.borrowed: set[NodeKey] = set()
        self.feeds: dict[ComponentId, dict[Signal, Consumer]] = {}
        self.views: dict[NodeKey, HealthScope] = {}

    def build(self) -> Graph:
        try:
            return self._build()
        except ConfigError:
            # Components created before the error may have registered health checks: take them back.
            for view in self.views.values():
                view.withdraw()
            raise

    def _build(self) -> Graph:
        for cid in self._used(Kind.EXPORTER):
            signals = self._signals_in(cid, "exporters")
            if not self._adopt(Kind.EXPORTER, cid, signals):
                self._create(Kind.EXPORTER, cid, signals, {})
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
                    self._receiver(cid, feeds)
                else:
                    self.connector_nexts[cid].update(feeds)
                node = self.nodes.get(NodeKey(kind, cid))
                if node is not None:
                    for p in fed:
                        node.downstream |= self._first_nodes(p)
        if self.errors:
            raise ConfigError(self.errors)
        return Graph(self.nodes, entries, self.relays, self.borrowed, self.feeds, self.views)

    def _receiver(self, cid: ComponentId, feeds: dict[Signal, Consumer]) -> None:
        signals = frozenset(feeds)
        if self._adopt(Kind.RECEIVER, cid, signals):
            assert self.previous is not None
            self.relays[cid] = self.previous._relays[cid]
            self.feeds[cid] = feeds
            return
        relays = {s: Relay(c) for s, c in feeds.items()}
        self.relays[cid] = relays
        self._create(Kind.RECEIVER, cid, signals, relays)

    def _adopt(self, kind: Kind, cid: ComponentId, signals: frozenset[Signal]) -> bool:
        """Take the previous graph's running instance when its configuration and signals are the same."""
        prev = self.previous
        if prev is None or prev._stopped:
            return False
        key = NodeKey(kind, cid)
        node = prev._nodes.get(key)
        if node is None or key in prev._released or key in prev._borrowed:
            return False
        if node.signals != signals or node.config != self.config.of(kind).get(cid):
            return False
        if kind is Kind.RECEIVER and cid not in prev._relays:
            return False
        self.nodes[key] = _Node(key, node.instance, node.config, signals)
        self.borrowed.add(key)
        return True

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
        # A pipeline changes the data if any of its processors does: its entry must then get a private copy
        # from the receiver's fan-out, even when the first processor only reads.
        mutates = False
        for cid in reversed(p.processors):
            factory = self._factory(Kind.PROCESSOR, cid)
            key = NodeKey(Kind.PROCESSOR, cid, self._pipeline_of(cid, p))
            pm = self.metrics.processor(str(cid), str(p.id), signal)
            out = _Counting(tail, pm.outgoing)
            if factory.shareable:
                nexts = self.shared_nexts.setdefault(cid, {})
                nexts[signal] = out
                if key not in self.nodes:
                    # One pipeline per signal at most (the loader checks): metrics label each signal with its own.
                    users = tuple(str(q.id) for q in self.pipelines if cid in q.processors)
                    self._create(Kind.PROCESSOR, cid, self._signals_in(cid, "processors"), nexts, key, users)
            else:
                self._create(Kind.PROCESSOR, cid, frozenset({signal}), {signal: out}, key, (str(p.id),))
            created = self.nodes.get(key)
            if created is None:  # create failed; the error is recorded and the build will stop
                continue
            created.downstream |= downstream
            downstream = {key}
            inner = created.instance.consumer(signal)
            mutates = mutates or inner.mutates_data
            tail = _Counting(inner, _incoming(pm), mutates)
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
        config = self.config.of(kind)[cid]
        view = self.health.scope()
        settings = CreateSettings(
            id=cid,
            kind=kind,
            signals=signals,
            metrics=self.metrics,
            health=view,
            logger=logging.getLogger(f"otelpipe.{kind.singular}.{cid}"),
            clock=self.clock,
            pipelines=pipelines,
        )
        try:
            instance = factory.create(settings, config, nexts)
        except ConfigError as exc:
            view.withdraw()
            self.errors.extend(exc.errors)
            return
        except ValueError as exc:
            view.withdraw()
            self.errors.append(f"{kind.value}.{_quote(str(cid))}: {exc}")
            return
        self.views[key] = view
        self.nodes[key] = _Node(key, instance, config, signals)


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
