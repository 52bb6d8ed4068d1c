"""A small registry of fake factories whose config Structs exercise every shape the loader must walk.

The loader is tested against these, not the real components, so its tests say what the loader does whatever
the real components' options are.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from pipeline.component import CreateSettings, Factory, Kind, Registry
from pipeline.consumer import Consumer
from pipeline.model import Signal

ALL = frozenset(Signal)
TRACES = frozenset({Signal.TRACES})
LOGS = frozenset({Signal.LOGS})
METRICS = frozenset({Signal.METRICS})

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]


class _Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The conventions every real component config follows."""


# -- receivers ---------------------------------------------------------------------------------------------


class OtlpConfig(_Config, frozen=True):
    grpc_endpoint: str = "127.0.0.1:4317"
    http_endpoint: str = "127.0.0.1:4318"
    max_recv_bytes: Annotated[int, msgspec.Meta(ge=1)] = 64 * 1024 * 1024


class ZipkinConfig(_Config, frozen=True):
    endpoint: str = "127.0.0.1:9411"


# -- processors --------------------------------------------------------------------------------------------


class BatchConfig(_Config, frozen=True):
    send_batch_size: Annotated[int, msgspec.Meta(ge=1)] = 8192
    send_batch_max_size: NonNegative = 0
    timeout_ms: NonNegative = 200

    def __post_init__(self) -> None:
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            raise ValueError(
                f"send_batch_max_size ({self.send_batch_max_size}) must be 0 or >= "
                f"send_batch_size ({self.send_batch_size})"
            )


class MemoryLimiterConfig(_Config, frozen=True):
    limit_mib: Annotated[int, msgspec.Meta(ge=1)] = 1024
    spike_limit_percent: Percent = 20.0
    enabled: bool = True


class StatusCode(enum.Enum):
    UNSET = "UNSET"
    OK = "OK"
    ERROR = "ERROR"


class ProbabilisticPolicy(_Config, frozen=True, tag_field="type", tag="probabilistic"):
    name: str
    sampling_percentage: Percent


class StatusCodePolicy(_Config, frozen=True, tag_field="type", tag="status_code"):
    name: str
    status_codes: Annotated[list[StatusCode], msgspec.Meta(min_length=1)]


class LatencyPolicy(_Config, frozen=True, tag_field="type", tag="latency"):
    name: str
    threshold_ms: NonNegative


Policy = ProbabilisticPolicy | StatusCodePolicy | LatencyPolicy


class TailSamplingConfig(_Config, frozen=True):
    decision_wait_ms: NonNegative = 10_000
    num_traces: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    policies: list[Policy] = []


class PiiAction(enum.Enum):
    REDACT = "redact"
    MASK_PARTIAL = "mask_partial"
    HASH = "hash"
    DROP = "drop"


class PiiConfig(_Config, frozen=True):
    action: PiiAction = PiiAction.REDACT
    hash_key: str = ""
    blocked_keys: tuple[str, ...] = ("*password*", "*secret*")

    def __post_init__(self) -> None:
        if self.action is PiiAction.HASH and not self.hash_key:
            raise ValueError("hash_key: required when action is 'hash'")


# -- exporters ---------------------------------------------------------------------------------------------


class Protocol(enum.Enum):
    OTLP_GRPC = "otlp_grpc"
    OTLP_HTTP = "otlp_http"


class TlsConfig(_Config, frozen=True):
    insecure: bool = True
    min_version: Literal["1.2", "1.3"] = "1.2"


class RemoteConfig(_Config, frozen=True):
    endpoint: str = "localhost:14317"
    protocol: Protocol = Protocol.OTLP_GRPC
    timeout_ms: NonNegative = 5_000
    tls: TlsConfig = TlsConfig()
    headers: dict[str, str] = {}


class FileConfig(_Config, frozen=True):
    path: str  # required: there is no sensible default file
    rotate_mib: NonNegative = 0


# -- connectors --------------------------------------------------------------------------------------------


class Dimension(_Config, frozen=True):
    default: str = ""
    max_values: Annotated[int, msgspec.Meta(ge=1)] = 100


class SpanMetricsConfig(_Config, frozen=True):
    dimensions: dict[str, Dimension] = {}
    buckets_ms: Annotated[tuple[float, ...], msgspec.Meta(min_length=1)] = (2.0, 8.0, 50.0, 250.0, 1000.0)


class ForwardConfig(_Config, frozen=True):
    pass


def create(settings: CreateSettings, config: Any, nexts: Mapping[Signal, Consumer]) -> Any:
    raise NotImplementedError("the loader tests never build components")


def registry() -> Registry:
    r, p, e, c = Kind.RECEIVER, Kind.PROCESSOR, Kind.EXPORTER, Kind.CONNECTOR
    return Registry(
        [
            Factory(r, "otlp", OtlpConfig, create, ALL),
            Factory(r, "zipkin", ZipkinConfig, create, TRACES),
            Factory(p, "batch", BatchConfig, create, ALL),
            Factory(p, "memory_limiter", MemoryLimiterConfig, create, ALL),
            Factory(p, "tail_sampling", TailSamplingConfig, create, TRACES | LOGS, shareable=True),
            Factory(p, "pii", PiiConfig, create, TRACES | LOGS),
            Factory(e, "jaeger", RemoteConfig, create, TRACES),
            Factory(e, "loki", RemoteConfig, create, LOGS),
            Factory(e, "prometheus_remote_write", RemoteConfig, create, METRICS),
            Factory(e, "file", FileConfig, create, ALL),
            Factory(c, "span_metrics", SpanMetricsConfig, create, TRACES, {Signal.TRACES: METRICS}),
            Factory(c, "forward", ForwardConfig, create, ALL, {s: frozenset({s}) for s in Signal}),
        ]
    )
