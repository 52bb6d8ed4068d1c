"""RateLimitedLog with a fake clock: once per interval per key, and the next line reports what it held back."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import msgspec
import pytest

from pipeline.telemetry.logging import configure_logging
from pipeline.telemetry.ratelimit import RateLimitedLog
from tests.support.clock import FakeClock


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[tuple[logging.Logger, Collect]]:
    logger = logging.getLogger("otelpipe.test.ratelimit")
    handler = Collect()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield logger, handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_once_per_interval_then_reports_suppressed(collected: tuple[logging.Logger, Collect]) -> None:
    logger, handler = collected
    clock = FakeClock()
    rl = RateLimitedLog(logger, interval_s=10.0, clock=clock)

    assert rl.log(logging.WARNING, "loki", "send failed", status=503) is True
    assert rl.log(logging.WARNING, "loki", "send failed", status=503) is False
    clock.advance(9.9)
    assert rl.log(logging.WARNING, "loki", "send failed", status=503) is False
    clock.advance(0.1)
    assert rl.log(logging.WARNING, "loki", "send failed", status=502) is True

    assert [r.fields for r in handler.records] == [{"status": 503}, {"status": 502, "suppressed": 2}]  # type: ignore[attr-defined]


def test_keys_are_independent_and_burst_allows_several(collected: tuple[logging.Logger, Collect]) -> None:
    logger, handler = collected
    clock = FakeClock()
    rl = RateLimitedLog(logger, interval_s=5.0, burst=2, clock=clock)

    outcomes = [rl.log(logging.ERROR, "a", "a failed") for _ in range(3)]
    assert outcomes == [True, True, False]
    assert rl.log(logging.ERROR, "b", "b failed") is True
    clock.advance(5.0)
    assert rl.log(logging.ERROR, "a", "a failed") is True

    assert [r.getMessage() for r in handler.records] == ["a failed", "a failed", "b failed", "a failed"]
    assert getattr(handler.records[-1], "fields", None) == {"suppressed": 1}
    assert not hasattr(handler.records[0], "fields")


@pytest.mark.usefixtures("restore_logging")
def test_suppressed_count_reaches_the_json_line() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    clock = FakeClock()
    rl = RateLimitedLog(logging.getLogger("otelpipe.exporter.jaeger"), interval_s=1.0, clock=clock)
    for _ in range(4):
        rl.log(logging.WARNING, "k", "retrying", attempt=1)
    clock.advance(1.0)
    rl.log(logging.WARNING, "k", "retrying", attempt=5)

    out = [msgspec.json.decode(line) for line in stream.getvalue().splitlines()]
    assert [(o["attempt"], o.get("suppressed")) for o in out] == [(1, None), (5, 3)]
