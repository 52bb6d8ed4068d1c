"""Component ids, kinds, factories and the registry.

Every component is a factory (type name, strict config Struct, supported signals, create function) plus the
instance it creates. Downstream consumers are injected into ``create``; a component never looks one up.

Lifecycle contract (checked for every registered component by tests/test_lifecycle.py):
- ``start()`` is called downstream-first, after the whole graph is built;
- ``shutdown(deadline)`` is called upstream-first; it flushes what the component holds, finishes by
  ``deadline`` (a ``time.monotonic()`` value), is idempotent and is safe when ``start()`` never ran.
"""

from __future__ import annotations

import builtins
import enum
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from pipeline.clock import SYSTEM_CLOCK, Clock
from pipeline.consumer import Consumer
from pipeline.model import Signal
from pipeline.telemetry.health import HealthChecks
from pipeline.telemetry.metrics import SelfMetrics


class Kind(enum.Enum):
    RECEIVER = "receivers"
    PROCESSOR = "processors"
    EXPORTER = "exporters"
    CONNECTOR = "connectors"

    @property
    def singular(self) -> str:
        return self.value[:-1]


_ID_PART = re.compile(r"^[a-zA-Z][a-zA-Z0-9_\-]*$")
_NAME_PART = re.compile(r"^[^/\s]+$")


@dataclass(frozen=True, slots=True, order=True)
class ComponentId:
    """``type`` or ``type/name``, as in the collector."""

    type: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> ComponentId:
        type_, sep, name = text.partition("/")
        if not _ID_PART.match(type_):
            raise ValueError(f"invalid component id {text!r}: the type must match [a-zA-Z][a-zA-Z0-9_-]*")
        if sep and not _NAME_PART.match(name):
            raise ValueError(f"invalid component id {text!r}: the name after '/' must be non-empty, no spaces")
        return cls(type_, name)

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type


class Component(Protocol):
    async def start(self) -> None: ...

    async def shutdown(self, deadline: float) -> None: ...


class Pipe(Component, Protocol):
    """A component that takes data: processor, exporter, or the exporter side of a connector."""

    def consumer(self, signal: Signal) -> Consumer: ...


@dataclass(frozen=True, slots=True)
class CreateSettings:
    id: ComponentId
    kind: Kind
    # The signals this instance serves: for processors and exporters what flows in, for receivers and
    # connectors what they emit downstream.
    signals: frozenset[Signal]
    metrics: SelfMetrics
    health: HealthChecks
    logger: logging.Logger
    clock: Clock = SYSTEM_CLOCK
    # Pipelines this instance belongs to (a per-pipeline processor has one).
    pipelines: tuple[str, ...] = ()


# create(settings, config, nexts). ``nexts`` maps a signal to the downstream consumer: for receivers and
# connectors the pipelines they feed, for processors the next stage; exporters get an empty mapping. For a
# shareable processor the graph may fill ``nexts`` after create() returns: read it no earlier than start().
CreateFn = Callable[[CreateSettings, Any, Mapping[Signal, Consumer]], Any]


@dataclass(frozen=True, slots=True)
class Factory:
    kind: Kind
    type: str
    config_type: builtins.type[msgspec.Struct]
    create: CreateFn
    # Receivers: signals produced. Processors, exporters: signals accepted. Connectors: signals accepted.
    signals: frozenset[Signal]
    # Connectors only: for each accepted signal, the signals it can emit.
    connector_outputs: Mapping[Signal, frozenset[Signal]] = field(default_factory=dict)
    # A processor declared shareable is one instance when its id appears in pipelines of different signals.
    shareable: bool = False

    def default_config(self) -> msgspec.Struct:
        return msgspec.convert({}, self.config_type)


class Registry:
    def __init__(self, factories: Iterable[Factory] = ()) -> None:
        self._factories: dict[tuple[Kind, str], Factory] = {}
        for f in factories:
            self.register(f)

    def register(self, factory: Factory) -> None:
        key = (factory.kind, factory.type)
        if key in self._factories:
            raise ValueError(f"duplicate {factory.kind.singular} factory {factory.type!r}")
        self._factories[key] = factory

    def get(self, kind: Kind, type_: str) -> Factory | None:
        return self._factories.get((kind, type_))

    def types(self, kind: Kind) -> list[str]:
        return sorted(t for k, t in self._factories if k is kind)

    def __iter__(self) -> Any:
        return iter(self._factories.values())
