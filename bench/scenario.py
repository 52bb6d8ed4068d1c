"""Scenarios: a daemon configuration (``bench/scenarios/NAME.toml``) and a load profile (``NAME.load.toml``).

The daemon configuration is an ordinary otelpipe config whose addresses are ``${env:BENCH_...}`` references, so
the file validates with ``otelpipe validate`` and the harness fills in free loopback ports through the
environment:

    BENCH_GRPC_ENDPOINT, BENCH_HTTP_ENDPOINT      the daemon's OTLP receiver
    BENCH_TELEMETRY_ENDPOINT                      its /metrics and health endpoints
    BENCH_SINK_GRPC                               OTLP/gRPC sink (host:port)
    BENCH_SINK_HTTP                               HTTP sinks base URL (OTLP/HTTP, Loki push, remote-write)

The load profile is decoded strictly (unknown keys are errors) into ``LoadProfile``. Before anything starts, the
scenario's component types are checked against the registry: a scenario that needs a component that has not
landed yet fails with a message naming every missing one.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from bench.workload import Shape
from pipeline.component import Kind, Registry

SCENARIOS_DIR = Path(__file__).parent / "scenarios"
ENV_KEYS = (
    "BENCH_GRPC_ENDPOINT",
    "BENCH_HTTP_ENDPOINT",
    "BENCH_TELEMETRY_ENDPOINT",
    "BENCH_SINK_GRPC",
    "BENCH_SINK_HTTP",
)

Ratio = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Required = Literal["all", "error_or_slow", "none"]


class ScenarioError(Exception):
    """The scenario cannot run; the message says why (missing components, invalid files)."""


class ShapeProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    spans_per_request: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    trace_size_min: Annotated[int, msgspec.Meta(ge=1)] = 5
    trace_size_max: Annotated[int, msgspec.Meta(ge=1)] = 50
    error_ratio: Ratio = 0.02
    slow_ratio: Ratio = 0.02
    slow_threshold_ms: Annotated[int, msgspec.Meta(ge=1)] = 1000
    pii_ratio: Ratio = 0.05
    logs_per_trace: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] = 1.0
    orphan_log_ratio: Ratio = 0.05
    unsent_trace_log_ratio: Ratio = 0.0

    def __post_init__(self) -> None:
        if self.trace_size_max < self.trace_size_min:
            raise ValueError("trace_size_max: below trace_size_min")


class StreamProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    transport: Literal["grpc", "http", "http_json"]
    signals: tuple[Literal["traces", "logs"], ...] = ("traces",)
    # Share of the scenario's rate this stream sends (open loop); ignored at --max.
    share: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 1.0
    # Requests in flight per process (closed loop: workers; open loop: the cap before slots go unsent).
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    processes: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    # Overrides the scenario's spans_per_request for this stream (OTLP/JSON is slower: smaller requests).
    spans_per_request: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 0


class LoadProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    description: str
    duration_s: Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)] = 20.0
    warmup_s: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 2.0
    mode: Literal["rate", "max"] = "rate"
    rate_spans_per_s: Annotated[float, msgspec.Meta(gt=0.0)] = 100_000.0
    # > 0: measure the daemon's capacity first (closed loop, calibration_s) and offer this multiple of it.
    capacity_factor: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] = 0.0
    calibration_s: Annotated[float, msgspec.Meta(gt=0.0, le=120.0)] = 5.0
    units_per_process: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 32
    timeout_s: Annotated[float, msgspec.Meta(gt=0.0, le=120.0)] = 10.0
    shape: ShapeProfile = msgspec.field(default_factory=ShapeProfile)
    streams: tuple[StreamProfile, ...] = (StreamProfile(transport="grpc"),)
    # Which acknowledged traces must reach a sink: every one, the errors and slow ones (tail sampling), none.
    required_traces: Required = "all"
    required_logs: Required = "all"
    # "full": every accepted item is exported, decided or counted; "discard": the exporter throws data away by
    # design (nop), so whatever is accepted and not exported counts as dropped on purpose.
    accounting: Literal["full", "discard"] = "full"
    # Search exported bytes for the load's PII vocabulary (the pii processor must leave none).
    scan_pii: bool = False
    # Fail the run when the daemon's peak RSS passes this (0 = no bound).
    max_peak_rss_mib: Annotated[int, msgspec.Meta(ge=0)] = 0
    # After the load stops: how long buffers (sampling windows, batches, queues) may take to empty.
    drain_timeout_s: Annotated[float, msgspec.Meta(gt=0.0, le=600.0)] = 30.0
    # Drop reasons that are decisions, added to accounting.ON_PURPOSE_REASONS.
    on_purpose_reasons: tuple[str, ...] = ()
    pin: bool = True

    def signals(self) -> set[str]:
        return {s for stream in self.streams for s in stream.signals}

    def shape_for(self, stream: StreamProfile) -> Shape:
        s = self.shape
        wants = set(stream.signals)
        return Shape(
            spans_per_request=stream.spans_per_request or s.spans_per_request,
            trace_size_min=s.trace_size_min,
            trace_size_max=s.trace_size_max,
            error_ratio=s.error_ratio,
            slow_ratio=s.slow_ratio,
            slow_threshold_ms=s.slow_threshold_ms,
            pii_ratio=s.pii_ratio,
            logs_per_trace=s.logs_per_trace if "logs" in wants else 0.0,
            orphan_log_ratio=s.orphan_log_ratio,
            unsent_trace_log_ratio=s.unsent_trace_log_ratio,
            traces="traces" in wants,
        )


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    config_path: Path
    config_text: str
    load: LoadProfile

    def config_tree(self, env: dict[str, str]) -> dict[str, Any]:
        """The daemon configuration as a TOML tree with the BENCH_* references filled in (for the peer)."""
        text = self.config_text
        for key, value in env.items():
            text = text.replace("${env:" + key + "}", value)
        return tomllib.loads(text)

    def decision_wait_s(self) -> float:
        """The longest ``decision_wait_ms`` of the scenario's processors: how long data may legitimately wait."""
        tree = tomllib.loads(self.config_text)
        waits = [
            float(table.get("decision_wait_ms", 0)) / 1000.0
            for table in tree.get("processors", {}).values()
            if isinstance(table, dict)
        ]
        return max(waits, default=0.0)


def available() -> list[str]:
    return sorted(p.name[: -len(".load.toml")] for p in SCENARIOS_DIR.glob("*.load.toml"))


def load(name: str, directory: Path = SCENARIOS_DIR) -> Scenario:
    config_path = directory / f"{name}.toml"
    load_path = directory / f"{name}.load.toml"
    if not config_path.is_file() or not load_path.is_file():
        known = ", ".join(available()) or "none"
        raise ScenarioError(f"unknown scenario {name!r} (known: {known}); expected {config_path} and {load_path}")
    try:
        profile = msgspec.toml.decode(load_path.read_bytes(), type=LoadProfile)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ScenarioError(f"{load_path}: {exc}") from exc
    return Scenario(name, config_path, config_path.read_text(), profile)


def missing_components(scenario: Scenario, registry: Registry) -> list[str]:
    """``"processors tail_sampling"``-style names of every component type the registry does not have."""
    tree = tomllib.loads(scenario.config_text)
    missing: list[str] = []
    for kind in Kind:
        for key in tree.get(kind.value, {}):
            type_ = key.split("/", 1)[0]
            if registry.get(kind, type_) is None and f"{kind.value} {type_}" not in missing:
                missing.append(f"{kind.value} {type_}")
    return missing


def check(scenario: Scenario, registry: Registry, env: dict[str, str]) -> None:
    """Raise ScenarioError unless every component is registered and the configuration validates."""
    from config.loader import load_config_text
    from pipeline.errors import ConfigError

    missing = missing_components(scenario, registry)
    if missing:
        raise ScenarioError(
            f"scenario {scenario.name!r} needs components that are not registered in pipeline/components.py yet: "
            + ", ".join(missing)
        )
    try:
        load_config_text([(str(scenario.config_path), scenario.config_text)], registry, env)
    except ConfigError as exc:
        raise ScenarioError(
            f"scenario {scenario.name!r}: invalid daemon configuration:\n  " + "\n  ".join(exc.errors)
        ) from exc
