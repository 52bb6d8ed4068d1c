"""``otelpipe pii-check -c CONFIG``: run the built-in corpus of PII samples and near misses through every
``pii`` processor the configuration defines, print what would leak and what would be masked wrongly.

Each sample is placed where telemetry carries strings: a span attribute, a span event attribute, a log body, a
map nested in a log body, and a metric data point attribute; it leaks if its secret survives in any of them.
Exit status: 0 clean; 1 when a built-in detector's sample leaks (including through a detector the configuration
turned off) or no pii processor is configured; 2 when the configuration itself is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import cast

import msgspec
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from config.loader import format_errors, load_config
from pipeline.component import ComponentId, CreateSettings, Kind, Registry
from pipeline.errors import ConfigError
from pipeline.model import Batch, Signal
from pipeline.telemetry.health import HealthRegistry
from pipeline.telemetry.metrics import SelfMetrics
from processors.pii.corpus import NEAR_MISSES, POSITIVES
from processors.pii.processor import FACTORY

NAME = "pii-check"
HELP = "check the configured pii processors against built-in PII samples and near misses"

# Where each sample is put, and how to read it back from the masked request (None = the attribute was removed).
Reader = Callable[[Batch, int], str | None]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", action="append", type=Path, required=True, metavar="FILE", help="TOML config file"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also list what was masked correctly")


class _Capture:
    mutates_data = False

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def consume(self, batch: Batch) -> None:
        self.batches.append(batch)


def _attr(attributes: Iterable[KeyValue], key: str) -> str | None:
    for kv in attributes:
        if kv.key == key:
            return str(kv.value.string_value)
    return None


def _requests(texts: Sequence[str]) -> dict[Signal, Batch]:
    traces = ExportTraceServiceRequest()
    scope = traces.resource_spans.add().scope_spans.add()
    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add()
    metrics = ExportMetricsServiceRequest()
    gauge = metrics.resource_metrics.add().scope_metrics.add().metrics.add()
    gauge.name = "pii_check"
    for i, text in enumerate(texts):
        span = scope.spans.add()
        span.name = f"sample-{i}"
        kv = span.attributes.add()
        kv.key, kv.value.string_value = "app.note", text
        ev = span.events.add()
        ev.name = "note"
        kv = ev.attributes.add()
        kv.key, kv.value.string_value = "app.note", text
        records.log_records.add().body.string_value = text
        nested = records.log_records.add().body.kvlist_value.values.add()
        nested.key = "payload"
        nested.value.kvlist_value.values.add(key="note").value.string_value = text
        point = gauge.gauge.data_points.add()
        point.as_int = i
        kv = point.attributes.add()
        kv.key, kv.value.string_value = "app.note", text
    return {
        Signal.TRACES: Batch.from_message(Signal.TRACES, traces),
        Signal.LOGS: Batch.from_message(Signal.LOGS, logs),
        Signal.METRICS: Batch.from_message(Signal.METRICS, metrics),
    }


def _span(b: Batch, i: int) -> Span:
    message = cast(ExportTraceServiceRequest, b.message)
    return message.resource_spans[0].scope_spans[0].spans[i]


def _record(b: Batch, i: int) -> LogRecord:
    message = cast(ExportLogsServiceRequest, b.message)
    return message.resource_logs[0].scope_logs[0].log_records[i]


def _span_attribute(b: Batch, i: int) -> str | None:
    return _attr(_span(b, i).attributes, "app.note")


def _event_attribute(b: Batch, i: int) -> str | None:
    return _attr(_span(b, i).events[0].attributes, "app.note")


def _log_body(b: Batch, i: int) -> str | None:
    return str(_record(b, 2 * i).body.string_value)


def _nested_body(b: Batch, i: int) -> str | None:
    for kv in _record(b, 2 * i + 1).body.kvlist_value.values:
        if kv.key == "payload":
            return _attr(kv.value.kvlist_value.values, "note")
    return None


def _point_attribute(b: Batch, i: int) -> str | None:
    message = cast(ExportMetricsServiceRequest, b.message)
    points = message.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points
    return _attr(points[i].attributes, "app.note")


PLACES: tuple[tuple[str, Signal, Reader], ...] = (
    ("span attribute", Signal.TRACES, _span_attribute),
    ("event attribute", Signal.TRACES, _event_attribute),
    ("log body", Signal.LOGS, _log_body),
    ("map in a log body", Signal.LOGS, _nested_body),
    ("data point attribute", Signal.METRICS, _point_attribute),
)


def _mask(cid: ComponentId, config: msgspec.Struct, texts: Sequence[str]) -> dict[Signal, Batch]:
    capture = _Capture()
    settings = CreateSettings(
        id=cid,
        kind=Kind.PROCESSOR,
        signals=frozenset(Signal),
        metrics=SelfMetrics(process_metrics=False),
        health=HealthRegistry(),
        logger=logging.getLogger(f"otelpipe.pii-check.{cid}"),
    )
    processor = FACTORY.create(settings, config, {s: capture for s in Signal})
    batches = _requests(texts)

    async def run() -> None:
        for signal, batch in batches.items():
            await processor.consumer(signal).consume(batch)

    asyncio.run(run())
    return {b.signal: b for b in capture.batches}


def check(cid: ComponentId, config: msgspec.Struct, verbose: bool = False) -> tuple[list[str], list[str], list[str]]:
    """(leaks, wrongly masked, masked correctly) as printable lines."""
    texts = [s.text for s in POSITIVES] + [n.text for n in NEAR_MISSES]
    out = _mask(cid, config, texts)
    leaks: list[str] = []
    wrong: list[str] = []
    fine: list[str] = []
    enabled = set(getattr(config, "detectors", ()))
    for i, sample in enumerate(POSITIVES):
        leaked = []
        for place, signal, read in PLACES:
            value = read(out[signal], i)
            if value is not None and sample.secret in value:
                leaked.append(place)
        if leaked:
            why = "" if sample.detector in enabled else " (detector not enabled)"
            leaks.append(f"{sample.detector:12s} {sample.text!r}{why}: survives in {', '.join(leaked)}")
        elif verbose:
            fine.append(f"{sample.detector:12s} {sample.text!r} -> {_span_attribute(out[Signal.TRACES], i)!r}")
    for j, miss in enumerate(NEAR_MISSES):
        i = len(POSITIVES) + j
        changed = []
        for place, signal, read in PLACES:
            value = read(out[signal], i)
            if value != miss.text:
                changed.append(f"{place}: {value!r}" if value is not None else f"{place}: removed")
        if changed:
            wrong.append(f"{miss.why}: {miss.text!r} -> {changed[0]}")
    return leaks, wrong, fine


def run(args: argparse.Namespace, registry: Registry) -> int:
    try:
        config = load_config(args.config, registry)
    except ConfigError as exc:
        print(format_errors(exc))
        return 2
    processors = {cid: cfg for cid, cfg in config.components.get(Kind.PROCESSOR, {}).items() if cid.type == "pii"}
    if not processors:
        print("pii-check: no pii processor in the configuration: every sample would reach the backends unmasked")
        return 1
    unmasked = [str(p.id) for p in config.pipelines.values() if not any(c.type == "pii" for c in p.processors)]
    if unmasked:
        print(f"warning: pipelines without a pii processor: {', '.join(unmasked)}")
    status = 0
    for cid, cfg in processors.items():
        leaks, wrong, fine = check(cid, cfg, args.verbose)
        print(
            f"processors.{cid}: {len(POSITIVES)} PII samples, {len(NEAR_MISSES)} near misses, {len(PLACES)} places each"
        )
        print(f"  leaks: {len(leaks) or 'none'}")
        for line in leaks:
            print(f"    {line}")
        print(f"  masked wrongly: {len(wrong) or 'none'}")
        for line in wrong:
            print(f"    {line}")
        if fine:
            print("  masked:")
            for line in fine:
                print(f"    {line}")
        if leaks:
            status = 1
    return status
