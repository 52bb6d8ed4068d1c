"""Small tools for exporter tests: run a coroutine test, a sleep that only moves a fake clock, metric reads."""

from __future__ import annotations

import asyncio
import functools
import random
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from pipeline.component import CreateSettings, Kind
from pipeline.errors import RetryableExportError
from pipeline.exporters.helper import ExporterHelper, ExporterHelperConfig, PartialSuccess
from pipeline.model import Batch, Signal
from pipeline.telemetry.health import Status
from tests.support.clock import FakeClock
from tests.support.data import logs_request, metrics_request, traces_request
from tests.support.settings import make_settings, sample_value


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test function in a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


class FakeSleep:
    """An injected sleep: records each wait and moves the fake clock instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


class BlockingSleep:
    """An injected sleep that never ends by itself: the backoff wait stays open until cancelled."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.entered = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.entered.set()
        await asyncio.Event().wait()


def exporter_settings(
    type_: str, clock: FakeClock | None = None, signals: frozenset[Signal] = frozenset(Signal)
) -> CreateSettings:
    if clock is None:
        return make_settings(Kind.EXPORTER, type_, signals=signals)
    return make_settings(Kind.EXPORTER, type_, signals=signals, clock=clock)


def metric(settings: CreateSettings, name: str, **labels: str) -> float:
    return sample_value(settings.metrics, name, {"exporter": str(settings.id), **labels})


def sent(settings: CreateSettings, signal: Signal = Signal.TRACES) -> float:
    return metric(settings, f"otelpipe_exporter_sent_{signal.item_name}_total")


def dropped(settings: CreateSettings, reason: str, signal: Signal = Signal.TRACES) -> float:
    return metric(settings, f"otelpipe_exporter_dropped_{signal.item_name}_total", reason=reason)


def batch_of(signal: Signal) -> Batch:
    if signal is Signal.TRACES:
        return Batch.from_message(signal, traces_request(2, 3))
    if signal is Signal.LOGS:
        return Batch.from_message(signal, logs_request(4))
    return Batch.from_message(signal, metrics_request(5))


def spans(n_traces: int = 1, per_trace: int = 2) -> Batch:
    return Batch.from_message(Signal.TRACES, traces_request(n_traces, per_trace))


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` until true, with a deadline (for state that has no event to wait on)."""
    async with asyncio.timeout(timeout_s):
        # Metrics and files have no event to wait on; a short poll under a deadline is the next best thing.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


Outcome = None | BaseException | PartialSuccess | asyncio.Event


class ScriptedSend:
    """A send function answering from a script (then success): an exception is raised, an Event is waited on."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes: deque[Outcome] = deque(outcomes)
        self.calls: list[Batch] = []
        self.called = asyncio.Event()

    async def __call__(self, batch: Batch) -> PartialSuccess | None:
        self.calls.append(batch)
        self.called.set()
        outcome = self.outcomes.popleft() if self.outcomes else None
        if isinstance(outcome, asyncio.Event):
            await outcome.wait()
            return None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def config(**overrides: Any) -> ExporterHelperConfig:
    """Helper config from TOML-like values; retries start at 1 s without jitter unless overridden."""
    values: dict[str, Any] = {
        "retry_on_failure": {"initial_interval_ms": 1000, "randomization_factor": 0.0, "multiplier": 2.0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return msgspec.convert(values, ExporterHelperConfig)


def unavailable(retry_after_s: float | None = None) -> RetryableExportError:
    return RetryableExportError("UNAVAILABLE: backend down", retry_after_s)


class Rig:
    def __init__(self, send: ScriptedSend, sleep: Any = None, **cfg: Any) -> None:
        self.clock = FakeClock()
        self.sleep = sleep if sleep is not None else FakeSleep(self.clock)
        self.settings = exporter_settings("otlp", clock=self.clock)
        self.send = send
        self.helper = ExporterHelper(self.settings, config(**cfg), send, sleep=self.sleep, rng=random.Random(7))

    async def __aenter__(self) -> Rig:
        await self.helper.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.helper.shutdown(self.clock.monotonic() + 10)

    def health(self) -> Status:
        status, _ = self.settings.health.run()
        return status
