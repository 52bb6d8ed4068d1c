"""``otelpipe replay`` on a small capture, checked against counts worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.exporters.file import encode_record
from pipeline.model import Batch, Signal
from tests.processors.tail_sampling.builders import BASE_NS, log, logs_request, request, span, tid
from tests.support.configs import nop_pipelines

CONFIG = """
[processors.tail_sampling]
decision_wait_ms = 10000
decision_wait_after_root_ms = 0
[[processors.tail_sampling.policies]]
name = "no-health"
type = "drop"
drop_sub_policy = [{ name = "health", type = "string_attribute", key = "http.route", values = ["/health"] }]
[[processors.tail_sampling.policies]]
name = "errors"
type = "status_code"
status_codes = ["ERROR"]
[[processors.tail_sampling.policies]]
name = "slow"
type = "latency"
threshold_ms = 500
""" + nop_pipelines(["tail_sampling"])


@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, Path, Path]:
    a, b, c, d, e = (tid() for _ in range(5))
    first = request(
        span(a), span(a, status=2), span(a),  # errors
        span(b), span(b, duration_ms=600),  # slow
        span(c, status=2, attrs={"http.route": "/health"}),  # dropped by the drop policy, error or not
        span(d), span(d),  # no policy samples it
        span(e, status=2), span(e),  # errors ...
    )  # fmt: skip
    late = request(span(e, start_ms=20_000))  # ... and one span 20 s later: after the decision
    traces = tmp_path / "traces.jsonl"
    traces.write_bytes(b"".join(encode_record(Batch.from_message(Signal.TRACES, r), "json") for r in (first, late)))
    records = [log(a, body="a1"), log(a, body="a2"), log(d, body="d1"), log(body="free")]
    for r in records:
        r.time_unix_nano = BASE_NS  # before the spans: the log records wait for their trace
    logs = tmp_path / "logs.pb"
    logs.write_bytes(encode_record(Batch.from_message(Signal.LOGS, logs_request(*records)), "proto"))
    config = tmp_path / "otelpipe.toml"
    config.write_text(CONFIG)
    return config, traces, logs


def test_replay_counts_match_the_hand_computed_ones(
    capture: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, traces, logs = capture
    assert main(["replay", "-c", str(config), str(traces), str(logs), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    policies = report["policies"]
    assert policies["errors"] | {"bytes_kept": 0} == {
        "matched": 2,
        "traces_kept": 2,
        "spans_kept": 5,
        "traces_dropped": 0,
        "spans_dropped": 0,
        "bytes_kept": 0,
    }
    assert policies["errors"]["bytes_kept"] > 0
    assert policies["slow"]["traces_kept"] == 1
    assert policies["slow"]["spans_kept"] == 2
    assert policies["no-health"] | {"bytes_kept": 0} == {
        "matched": 1,
        "traces_kept": 0,
        "spans_kept": 0,
        "traces_dropped": 1,
        "spans_dropped": 1,
        "bytes_kept": 0,
    }
    assert policies["(no policy sampled)"]["traces_dropped"] == 1
    assert policies["(no policy sampled)"]["spans_dropped"] == 2
    assert report["totals"] == {"traces_kept": 3, "traces_dropped": 2, "spans_kept": 7, "spans_dropped": 3}
    assert report["late_spans"] == {"kept": 1}
    assert report["log_records"] == {"no_trace/kept": 1, "trace/dropped": 1, "trace/kept": 2}
    assert report["input"]["spans"] == 11
    assert report["input"]["log_records"] == 4
    assert report["output"]["spans"] == 8  # 7 decided + 1 late
    assert report["output"]["log_records"] == 3
    assert report["output"]["bytes"] > 0


def test_replay_prints_a_table(capture: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, traces, logs = capture
    assert main(["replay", "-c", str(config), str(traces), str(logs)]) == 0
    text = capsys.readouterr().out
    assert "processor tail_sampling" in text
    errors_row = next(line for line in text.splitlines() if line.strip().startswith("errors"))
    assert errors_row.split()[1:5] == ["2", "2", "5", "0"]
    assert "late spans: kept 1" in text


def test_replay_needs_a_tail_sampling_processor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[receivers.otlp]\ngrpc_endpoint = "127.0.0.1:0"\nhttp_endpoint = ""\n[exporters.nop]\n'
        '[pipelines.traces]\nreceivers = ["otlp"]\nexporters = ["nop"]\n'
    )
    capture = tmp_path / "traces.jsonl"
    capture.write_text("")
    assert main(["replay", "-c", str(config), str(capture)]) == 1
    assert "no tail_sampling processor" in capsys.readouterr().err


def test_replay_reports_an_invalid_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[processors.tail_sampling]\npolicies = [{ name = "p", type = "nope" }]\n')
    assert main(["replay", "-c", str(config), str(tmp_path / "missing.jsonl")]) == 2
    assert "processors.tail_sampling.policies[0].type" in capsys.readouterr().err


def test_replay_reports_an_unreadable_capture(
    capture: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = capture
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    assert main(["replay", "-c", str(config), str(broken)]) == 1
    assert "broken.jsonl:1" in capsys.readouterr().err


def test_replay_selects_a_processor_by_id(capture: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, traces, _ = capture
    assert main(["replay", "-c", str(config), str(traces), "--processor", "tail_sampling", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["processor"] == "tail_sampling"
    assert main(["replay", "-c", str(config), str(traces), "--processor", "tail_sampling/other"]) == 1
    assert "no tail_sampling processor named 'tail_sampling/other'" in capsys.readouterr().err
