"""The file exporter: both formats round-trip through read_records; the {signal} rule; flush and close."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.errors import ConfigError, Refused, StartError
from pipeline.exporters.file import FACTORY, FileConfig, FileExporter, read_records
from pipeline.model import Batch, Signal
from tests.exporters.support import async_test, dropped, exporter_settings, sent, wait_for
from tests.support.data import metrics_request


def rich_traces() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "checkout"
    ss = rs.scope_spans.add()
    ss.scope.name = "tests"
    span = ss.spans.add()
    span.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    span.span_id = bytes.fromhex("eee19b7ec3c1b174")
    span.parent_span_id = bytes.fromhex("eee19b7ec3c1b173")
    span.name, span.kind = "GET /cart", 2
    span.start_time_unix_nano, span.end_time_unix_nano = 1_544_712_660_000_000_000, 1_544_712_661_000_000_000
    span.status.code, span.status.message = 2, "boom"
    for key, setter in [
        ("s", lambda v: setattr(v, "string_value", "x")),
        ("i", lambda v: setattr(v, "int_value", -(2**40))),
        ("d", lambda v: setattr(v, "double_value", 0.25)),
        ("b", lambda v: setattr(v, "bool_value", True)),
        ("raw", lambda v: setattr(v, "bytes_value", b"\x00\xff")),
    ]:
        a = span.attributes.add()
        a.key = key
        setter(a.value)
    arr = span.attributes.add()
    arr.key = "arr"
    arr.value.array_value.values.add().string_value = "a"
    arr.value.array_value.values.add().int_value = 2
    ev = span.events.add()
    ev.name, ev.time_unix_nano = "exception", 1_544_712_660_500_000_000
    ea = ev.attributes.add()
    ea.key, ea.value.string_value = "exception.message", "oops"
    link = span.links.add()
    link.trace_id = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    link.span_id = bytes.fromhex("b7ad6b7169203331")
    la = link.attributes.add()
    la.key, la.value.int_value = "hop", 1
    return req


def rich_logs() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    sl = req.resource_logs.add().scope_logs.add()
    r1 = sl.log_records.add()
    r1.time_unix_nano, r1.severity_number, r1.body.string_value = 1_700_000_000_000_000_001, 17, "card declined"
    r1.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    r1.span_id = bytes.fromhex("eee19b7ec3c1b174")
    r2 = sl.log_records.add()
    kv = r2.body.kvlist_value.values.add()
    kv.key, kv.value.string_value = "user", "u-1"
    r3 = sl.log_records.add()
    r3.body.bytes_value = b"\x01\x02"
    return req


def rich_metrics() -> ExportMetricsServiceRequest:
    req = metrics_request(3)
    m = req.resource_metrics[0].scope_metrics[0].metrics.add()
    m.name = "latency"
    dp = m.histogram.data_points.add()
    dp.count, dp.sum = 3, 7.5
    dp.bucket_counts.extend([1, 2])
    dp.explicit_bounds.append(5.0)
    return req


REQUESTS: dict[Signal, Any] = {Signal.TRACES: rich_traces, Signal.LOGS: rich_logs, Signal.METRICS: rich_metrics}


def file_size(path: Path) -> int:
    return os.path.getsize(path)


def exporter(path: str, **cfg: Any) -> tuple[FileExporter, Any]:
    settings = exporter_settings("file")
    config = msgspec.convert({"path": path, **cfg}, FileConfig)
    return FACTORY.create(settings, config, {}), settings


@pytest.mark.parametrize(("fmt", "suffix"), [("json", "jsonl"), ("proto", "pb")])
@async_test
async def test_round_trip_keeps_ids_attributes_events_links_and_bodies(fmt: str, suffix: str, tmp_path: Path) -> None:
    exp, settings = exporter(f"{tmp_path}/out/{{signal}}.{suffix}", format=fmt)
    await exp.start()
    for signal, build in REQUESTS.items():
        await exp.consumer(signal).consume(Batch.from_message(signal, build()))
        await exp.consumer(signal).consume(Batch.from_message(signal, build()))
    await exp.shutdown(time.monotonic() + 10)
    for signal, build in REQUESTS.items():
        records = list(read_records(tmp_path / "out" / f"{signal.value}.{suffix}"))
        assert [s for s, _ in records] == [signal, signal]
        assert all(message == build() for _, message in records)
    assert sent(settings, Signal.TRACES) == 2
    assert sent(settings, Signal.LOGS) == 6
    if fmt == "json":  # OTLP/JSON: hex ids, not proto3 JSON's base64
        assert '"traceId":"5b8efff798038103d269b633813fc60c"' in (tmp_path / "out" / "traces.jsonl").read_text()


@async_test
async def test_json_file_shared_by_all_signals_says_which_is_which(tmp_path: Path) -> None:
    exp, _ = exporter(f"{tmp_path}/all.json")
    await exp.start()
    for signal in Signal:
        await exp.consumer(signal).consume(Batch.from_message(signal, signal.request_type()))  # empty ones too
    await exp.shutdown(time.monotonic() + 10)
    lines = (tmp_path / "all.json").read_text().splitlines()
    assert lines == ['{"resourceSpans":[]}', '{"resourceLogs":[]}', '{"resourceMetrics":[]}']
    assert [s for s, _ in read_records(tmp_path / "all.json")] == list(Signal)


def test_proto_for_several_signals_needs_the_signal_placeholder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        exporter(f"{tmp_path}/all.pb", format="proto")
    assert err.value.errors[0].startswith("exporters.file.path: ")
    settings = exporter_settings("file", signals=frozenset({Signal.LOGS}))
    one = FACTORY.create(settings, msgspec.convert({"path": "x.pb", "format": "proto"}, FileConfig), {})
    assert one is not None  # one signal: no ambiguity


@async_test
async def test_proto_signal_comes_from_the_name_or_the_argument(tmp_path: Path) -> None:
    settings = exporter_settings("file", signals=frozenset({Signal.LOGS}))
    exp = FACTORY.create(settings, msgspec.convert({"path": f"{tmp_path}/dump.bin", "format": "proto"}, FileConfig), {})
    await exp.start()
    await exp.consumer(Signal.LOGS).consume(Batch.from_message(Signal.LOGS, rich_logs()))
    await exp.shutdown(time.monotonic() + 10)
    with pytest.raises(ValueError, match="signal="):
        list(read_records(tmp_path / "dump.bin"))
    assert [m for _, m in read_records(tmp_path / "dump.bin", signal=Signal.LOGS)] == [rich_logs()]


@async_test
async def test_background_flush_writes_without_shutdown(tmp_path: Path) -> None:
    exp, settings = exporter(f"{tmp_path}/{{signal}}.jsonl", flush_interval_ms=1)
    await exp.start()
    await exp.consumer(Signal.TRACES).consume(Batch.from_message(Signal.TRACES, rich_traces()))
    await wait_for(lambda: sent(settings) == 1)
    assert [m for _, m in read_records(tmp_path / "traces.jsonl")] == [rich_traces()]
    await exp.shutdown(time.monotonic() + 10)


@async_test
async def test_shutdown_flushes_what_the_timer_has_not(tmp_path: Path) -> None:
    exp, settings = exporter(f"{tmp_path}/{{signal}}.jsonl", flush_interval_ms=3_600_000)
    await exp.start()
    await exp.consumer(Signal.LOGS).consume(Batch.from_message(Signal.LOGS, rich_logs()))
    assert file_size(tmp_path / "logs.jsonl") == 0  # only in the process buffer so far
    await exp.shutdown(time.monotonic() + 10)
    await exp.shutdown(time.monotonic() + 10)  # idempotent
    assert len(list(read_records(tmp_path / "logs.jsonl"))) == 1
    assert sent(settings, Signal.LOGS) == 3
    with pytest.raises(Refused):
        await exp.consumer(Signal.LOGS).consume(Batch.from_message(Signal.LOGS, rich_logs()))


@pytest.mark.parametrize(("append", "expected"), [(True, 2), (False, 1)])
@async_test
async def test_append_keeps_what_an_earlier_run_wrote(append: bool, expected: int, tmp_path: Path) -> None:
    for _ in range(2):
        exp, _ = exporter(f"{tmp_path}/{{signal}}.jsonl", append=append)
        await exp.start()
        await exp.consumer(Signal.LOGS).consume(Batch.from_message(Signal.LOGS, rich_logs()))
        await exp.shutdown(time.monotonic() + 10)
    assert len(list(read_records(tmp_path / "logs.jsonl"))) == expected


@async_test
async def test_unwritable_path_fails_start(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    exp, _ = exporter(f"{tmp_path}/a-file/{{signal}}.jsonl")  # a directory under a regular file
    with pytest.raises(StartError, match="cannot open"):
        await exp.start()
    await exp.shutdown(time.monotonic() + 1)


@async_test
async def test_consume_before_start_is_refused(tmp_path: Path) -> None:
    exp, _ = exporter(f"{tmp_path}/{{signal}}.jsonl")
    with pytest.raises(Refused):
        await exp.consumer(Signal.TRACES).consume(Batch.from_message(Signal.TRACES, rich_traces()))


def test_truncated_proto_file_is_reported(tmp_path: Path) -> None:
    raw = rich_logs().SerializeToString()
    path = tmp_path / "logs.pb"
    path.write_bytes(len(raw).to_bytes(4, "big") + raw[:-3])
    with pytest.raises(ValueError, match="truncated"):
        list(read_records(path))


def test_config_validation() -> None:
    with pytest.raises(msgspec.ValidationError, match="format"):
        msgspec.convert({"path": "x", "format": "csv"}, FileConfig)
    with pytest.raises(msgspec.ValidationError, match="path"):
        msgspec.convert({}, FileConfig)
    cfg = msgspec.convert({"path": "x"}, FileConfig)
    assert (cfg.format, cfg.flush_interval_ms, cfg.append) == ("json", 1000, True)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux /dev/full")
@async_test
async def test_failed_write_is_counted_and_reported() -> None:
    exp, settings = exporter("/dev/full", flush_interval_ms=3_600_000)  # every write fails with ENOSPC
    await exp.start()
    await exp.consumer(Signal.LOGS).consume(Batch.from_message(Signal.LOGS, rich_logs()))
    await exp.shutdown(time.monotonic() + 10)
    assert dropped(settings, "write_error", Signal.LOGS) == 3
    assert sent(settings, Signal.LOGS) == 0
