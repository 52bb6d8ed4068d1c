"""The debug exporter: what each verbosity logs, and the per-second sampling."""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import pytest

from pipeline.exporters.debug import FACTORY, DebugConfig, DebugExporter
from pipeline.model import Batch, Signal
from tests.exporters.support import async_test, exporter_settings, sent
from tests.support.clock import FakeClock
from tests.support.data import logs_request, traces_request


def debug(clock: FakeClock, **cfg: Any) -> tuple[DebugExporter, Any]:
    settings = exporter_settings("debug", clock=clock)
    exp = FACTORY.create(settings, msgspec.convert(cfg, DebugConfig), {})
    assert isinstance(exp, DebugExporter)
    return exp, settings


def two_resources() -> Batch:
    req = traces_request(1, 2, service="checkout")
    req.resource_spans.extend(traces_request(1, 3, service="cart").resource_spans)
    return Batch.from_message(Signal.TRACES, req)


def fields(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records]  # type: ignore[attr-defined]


@async_test
async def test_basic_logs_one_line_with_counts(caplog: pytest.LogCaptureFixture) -> None:
    exp, settings = debug(FakeClock())
    await exp.start()
    with caplog.at_level(logging.INFO):
        await exp.consumer(Signal.TRACES).consume(two_resources())
    assert [r.getMessage() for r in caplog.records] == ["traces: 2 resources, 5 spans"]
    assert fields(caplog)[0] == {"exporter": "debug", "signal": "traces", "resources": 2, "spans": 5}
    assert sent(settings) == 5
    await exp.shutdown(time.monotonic() + 1)


@async_test
async def test_normal_adds_a_line_per_resource(caplog: pytest.LogCaptureFixture) -> None:
    exp, _ = debug(FakeClock(), verbosity="normal")
    with caplog.at_level(logging.INFO):
        await exp.consumer(Signal.TRACES).consume(two_resources())
    per_resource = [(f["service_name"], f["spans"]) for f in fields(caplog)[1:]]
    assert per_resource == [("checkout", 2), ("cart", 3)]


@async_test
async def test_detailed_adds_the_otlp_json(caplog: pytest.LogCaptureFixture) -> None:
    exp, _ = debug(FakeClock(), verbosity="detailed")
    batch = Batch.from_message(Signal.LOGS, logs_request(2))
    with caplog.at_level(logging.INFO):
        await exp.consumer(Signal.LOGS).consume(batch)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3  # counts, one resource, the JSON
    assert messages[2].startswith('{"resourceLogs":')
    assert batch.message.resource_logs[0].scope_logs[0].log_records[0].trace_id.hex() in messages[2]


@async_test
async def test_sampling_logs_the_first_n_per_second_then_every_mth(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(start_s=100.0)
    exp, settings = debug(clock, sampling_initial=2, sampling_thereafter=3)
    batch = Batch.from_message(Signal.LOGS, logs_request(1))
    with caplog.at_level(logging.INFO):
        for _ in range(9):  # logged: 1, 2, then 5, 8
            await exp.consumer(Signal.LOGS).consume(batch)
        assert len(caplog.records) == 4
        clock.advance(1.0)  # a new second starts over
        await exp.consumer(Signal.LOGS).consume(batch)
        assert len(caplog.records) == 5
        await exp.consumer(Signal.TRACES).consume(two_resources())  # each signal has its own budget
        assert len(caplog.records) == 6
    assert sent(settings, Signal.LOGS) == 10  # every batch counted, logged or not


def test_config() -> None:
    cfg = FACTORY.default_config()
    assert cfg == DebugConfig(verbosity="basic", sampling_initial=2, sampling_thereafter=500)
    with pytest.raises(msgspec.ValidationError, match="verbosity"):
        msgspec.convert({"verbosity": "loud"}, DebugConfig)
    with pytest.raises(msgspec.ValidationError, match="sampling_thereafter"):
        msgspec.convert({"sampling_thereafter": 0}, DebugConfig)
