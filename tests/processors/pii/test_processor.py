"""The processor shell and its configuration: full-key config errors, in-place masking with mark_modified,
self-metrics, fail-closed errors, and no original value in the daemon's logs."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
import pytest

from config.loader import load_config_text
from pipeline.component import Kind
from pipeline.components import default_registry
from pipeline.delivery.merge import LazyBatch
from pipeline.errors import ConfigError, Permanent
from pipeline.model import Batch, Signal
from pipeline.telemetry.metrics import SelfMetrics
from processors.pii import FACTORY
from processors.pii.config import PiiConfig
from processors.pii.processor import PiiProcessor
from tests.support.configs import nop_pipelines
from tests.support.data import logs_request, traces_request
from tests.support.settings import make_settings, sample_value
from tests.support.sinks import SinkConsumer

SECRET = "jane.roe@example.com"
PIPELINES = nop_pipelines(["pii"], signals=["traces"])


def _errors(table: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config_text([("t.toml", "[processors.pii]\n" + table + PIPELINES)], default_registry(), env=env or {})
    return list(exc.value.errors)


def test_empty_table_is_the_safe_default() -> None:
    config = load_config_text([("t.toml", "[processors.pii]\n" + PIPELINES)], default_registry(), env={})
    (pii,) = config.components[Kind.PROCESSOR].values()
    assert isinstance(pii, PiiConfig)
    assert len(pii.detectors) == 9
    assert pii.action == "redact"
    assert "*password*" in pii.blocked_keys


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('action = "hash"', 'processors.pii.hash_key: required when an action is "hash"'),
        ('actions = { email = "hash" }', "processors.pii.hash_key: required"),
        ('action = "hash"\nhash_key = "short"', "processors.pii.hash_key: must be at least 16 characters"),
        ('action = "erase"', "processors.pii.action: expected one of: redact, mask_partial, hash, drop"),
        ('detectors = ["email", "passport"]', "processors.pii.detectors[1]: expected one of: email"),
        ('actions = { ssn = "drop" }', "processors.pii.actions.ssn: invalid key"),
        ('rules = [{ name = "r", pattern = "(" }]', "processors.pii.rules[0].pattern: not a valid RE2"),
        ('rules = [{ name = "r", pattern = "x*" }]', "processors.pii.rules[0].pattern: matches the empty string"),
        ('rules = [{ name = "Bad Name", pattern = "x" }]', "processors.pii.rules[0].name: expected a string"),
        ('rules = [{ name = "email", pattern = "x" }]', "processors.pii.rules: rule [0] name 'email' is already"),
        ('blocked_keys = [""]', "processors.pii.blocked_keys: [0] empty pattern"),
        ("colour = 1", "processors.pii.colour: unknown key"),
    ],
)
def test_config_errors_name_the_full_key(table: str, expected: str) -> None:
    errors = _errors(table)
    assert any(e.startswith(expected) for e in errors), errors


def test_hash_key_from_the_environment() -> None:
    text = '[processors.pii]\naction = "hash"\nhash_key = "${env:OTELPIPE_PII_KEY}"\n' + PIPELINES
    config = load_config_text([("t.toml", text)], default_registry(), env={"OTELPIPE_PII_KEY": "k" * 32})
    (pii,) = config.components[Kind.PROCESSOR].values()
    assert isinstance(pii, PiiConfig)
    assert pii.hash_key == "k" * 32


def _processor(**table: Any) -> tuple[PiiProcessor, SinkConsumer, SelfMetrics]:
    metrics = SelfMetrics(process_metrics=False)
    sink = SinkConsumer()
    settings = make_settings(Kind.PROCESSOR, "pii", frozenset(Signal), metrics=metrics)
    processor = FACTORY.create(settings, msgspec.convert(table, PiiConfig), {s: sink for s in Signal})
    assert isinstance(processor, PiiProcessor)
    return processor, sink, metrics


def _traces_with_secret() -> Batch:
    req = traces_request(n_traces=1, spans_per_trace=2)
    kv = req.resource_spans[0].scope_spans[0].spans[1].attributes.add(key="user.email")
    kv.value.string_value = SECRET
    return Batch.from_message(Signal.TRACES, req)


def test_passes_on_a_new_masked_batch_and_leaves_its_input_alone() -> None:
    processor, sink, metrics = _processor()
    batch = _traces_with_secret()
    before = batch.serialize()
    nbytes = batch.nbytes
    assert not processor.consumer(Signal.TRACES).mutates_data
    asyncio.run(processor.consumer(Signal.TRACES).consume(batch))
    (out,) = sink.batches
    assert out is not batch
    assert isinstance(out, LazyBatch)
    assert not out.parsed  # nothing downstream asked for the message yet
    assert out.items == 2
    assert out.metadata is batch.metadata
    assert SECRET.encode() not in out.serialize()
    assert batch.serialize() == before  # a batch shared with other consumers is not changed
    assert SECRET.encode() in before
    # The new bytes parse into the same request with the value masked.
    spans = out.message.resource_spans[0].scope_spans[0].spans
    assert spans[1].attributes[-1].value.string_value == "[REDACTED:email]"
    assert len(spans) == 2
    labels = {"processor": "pii", "pipeline": "test", "otel_signal": "traces"}
    assert (
        sample_value(
            metrics, "otelpipe_processor_pii_matches_total", {**labels, "detector": "email", "action": "redact"}
        )
        == 1
    )
    assert sample_value(metrics, "otelpipe_processor_pii_values_scanned_total", labels) == 1
    assert sample_value(metrics, "otelpipe_processor_pii_bytes_scanned_total", labels) == nbytes
    assert sample_value(metrics, "otelpipe_processor_pii_batches_modified_total", labels) == 1


def test_clean_batch_keeps_its_bytes() -> None:
    processor, sink, metrics = _processor()
    batch = Batch.from_message(Signal.LOGS, logs_request(3))
    raw = batch.raw
    asyncio.run(processor.consumer(Signal.LOGS).consume(batch))
    assert sink.batches[0].raw is raw
    labels = {"processor": "pii", "pipeline": "test", "otel_signal": "logs"}
    assert sample_value(metrics, "otelpipe_processor_pii_batches_modified_total", labels) == 0
    assert sample_value(metrics, "otelpipe_processor_pii_bytes_scanned_total", labels) == len(raw or b"")


def test_two_instances_share_one_registry() -> None:
    metrics = SelfMetrics(process_metrics=False)
    for name in ("pii", "pii/b"):
        settings = make_settings(Kind.PROCESSOR, name, frozenset({Signal.TRACES}), metrics=metrics)
        FACTORY.create(settings, msgspec.convert({}, PiiConfig), {Signal.TRACES: SinkConsumer()})


def test_masking_failure_refuses_the_batch_and_logs_no_value(caplog: pytest.LogCaptureFixture) -> None:
    processor, sink, _ = _processor()
    batch = _traces_with_secret()
    batch.raw = b"\x0a\x7f mail " + SECRET.encode()  # bytes that do not match the message: the walk fails
    with caplog.at_level(logging.DEBUG), pytest.raises(Permanent):
        asyncio.run(processor.consumer(Signal.TRACES).consume(batch))
    assert sink.batches == []
    assert "pii masking failed" in caplog.text


def test_logs_never_carry_original_values(caplog: pytest.LogCaptureFixture) -> None:
    processor, sink, _ = _processor(action="hash", hash_key="k" * 20)

    async def go() -> None:
        await processor.start()
        await processor.consumer(Signal.TRACES).consume(_traces_with_secret())
        await processor.shutdown(time.monotonic() + 1)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(go())
    assert sink.items() == 2
    assert "pii masking ready" in caplog.text
    records = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert SECRET not in records
    assert "k" * 20 not in records


def test_downstream_refusal_passes_through() -> None:
    processor, sink, _ = _processor()
    sink.fail_with = Permanent("backend says no")
    with pytest.raises(Permanent):
        asyncio.run(processor.consumer(Signal.TRACES).consume(_traces_with_secret()))


def test_repeated_values_are_counted_every_time() -> None:
    processor, sink, metrics = _processor()
    for _ in range(3):  # the second and third come from the result cache
        asyncio.run(processor.consumer(Signal.TRACES).consume(_traces_with_secret()))
    labels = {"processor": "pii", "pipeline": "test", "otel_signal": "traces", "detector": "email", "action": "redact"}
    assert sample_value(metrics, "otelpipe_processor_pii_matches_total", labels) == 3
    assert all(SECRET.encode() not in b.serialize() for b in sink.batches)
