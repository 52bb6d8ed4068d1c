"""The decoded configuration handed to the graph builder."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Annotated

import msgspec

from pipeline.component import ComponentId, Kind
from pipeline.model import Signal


class LogLevel(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(enum.Enum):
    JSON = "json"
    CONSOLE = "console"


class ServiceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # /metrics, /health/live, /health/ready; "" turns the endpoint off.
    telemetry_endpoint: str = "127.0.0.1:8888"
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.JSON
    # How long SIGTERM may take to drain every buffer before what is left is counted as dropped.
    shutdown_timeout_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)] = 30_000
    # glibc malloc thresholds (DESIGN.md section 4: +70% gRPC receive); RSS then stays high after a spike.
    tune_malloc: bool = True
    # Freeze start-up objects out of the cyclic GC, so its full collections skip them
    # (pipeline/telemetry/process.py).
    tune_gc: bool = True


@dataclass(frozen=True, slots=True)
class PipelineId:
    signal: Signal
    name: str = ""

    def __str__(self) -> str:
        return f"{self.signal.value}/{self.name}" if self.name else self.signal.value


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    id: PipelineId
    receivers: tuple[ComponentId, ...]
    processors: tuple[ComponentId, ...]
    exporters: tuple[ComponentId, ...]


@dataclass(frozen=True, slots=True)
class Config:
    service: ServiceConfig
    # kind -> id -> decoded config Struct of that component's factory, in file order.
    components: dict[Kind, dict[ComponentId, msgspec.Struct]]
    pipelines: dict[PipelineId, PipelineConfig]
    warnings: tuple[str, ...] = field(default=())

    def of(self, kind: Kind) -> dict[ComponentId, msgspec.Struct]:
        return self.components.get(kind, {})
