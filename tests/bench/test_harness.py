"""The harness end to end on a tiny, seconds-long scenario: it starts everything, measures, writes a well-formed
report, and stops every process and frees every port, also when the daemon dies in the middle of the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report, scenario
from bench.__main__ import main
from bench.runner import RunSettings, TargetRun

CONFIG = """
[service]
telemetry_endpoint = "${env:BENCH_TELEMETRY_ENDPOINT}"
log_level = "warning"

[receivers.otlp]
grpc_endpoint = "${env:BENCH_GRPC_ENDPOINT}"
http_endpoint = "${env:BENCH_HTTP_ENDPOINT}"

[exporters.otlp]
endpoint = "${env:BENCH_SINK_GRPC}"
insecure = true
compression = "none"

[pipelines.traces]
receivers = ["otlp"]
exporters = ["otlp"]

[pipelines.logs]
receivers = ["otlp"]
exporters = ["otlp"]
"""

LOAD = """
description = "tiny harness test"
mode = "rate"
rate_spans_per_s = 4000
duration_s = 2
warmup_s = 0.5
units_per_process = 4
pin = false
drain_timeout_s = 20
scan_pii = true

[shape]
spans_per_request = 100
logs_per_trace = 1.0
pii_ratio = 0.0

[[streams]]
transport = "grpc"
signals = ["traces", "logs"]
concurrency = 4
"""


@pytest.fixture
def tiny(tmp_path: Path) -> scenario.Scenario:
    (tmp_path / "tiny.toml").write_text(CONFIG)
    (tmp_path / "tiny.load.toml").write_text(LOAD)
    return scenario.load("tiny", tmp_path)


def _assert_all_stopped(run: TargetRun, result: dict[str, object]) -> None:
    assert result["ports_released"] is True
    assert all(p.poll() is not None for p in run.cleanup.daemons)
    assert not any(child.is_alive() for child in run.cleanup.children)


def test_tiny_run_measures_and_reports(tiny: scenario.Scenario, tmp_path: Path) -> None:
    settings = RunSettings(2.0, "rate", 4000.0, tmp_path / "work", daemon_cpu=None, load_cpu=None)
    run = TargetRun(tiny, "otelpipe", settings, progress=None)
    result = run.execute()
    _assert_all_stopped(run, result)
    assert result["problems"] == []
    assert result["crashed"] is False
    assert result["drained"] is True
    traces, logs = result["accounts"]["traces"], result["accounts"]["logs"]
    assert traces["accepted"] > 0
    assert logs["accepted"] > 0
    assert traces["exported"] == traces["accepted"] == traces["daemon_accepted"]
    assert traces["lost"] == logs["lost"] == 0
    assert traces["acked_traces"] == traces["exported_acked_traces"] > 0
    assert result["latency"]["traces"]["count"] == traces["acked_traces"]
    assert result["spans_per_cpu_second"] > 0
    assert result["peak_rss_bytes"] > 0
    assert result["pii_leaks"] == 0
    assert result["exit_code"] == 0

    rep = report.build(
        "tiny",
        tiny.load.description,
        {"mode": "rate", "duration_s": 2.0},
        {"cores": 2},
        {"otelpipe": result},
        peer_requested=False,
    )
    paths = report.write(rep, tmp_path / "report")
    data = json.loads(paths[0].read_text())
    for key in (
        "scenario",
        "offered_spans",
        "accepted_spans",
        "refused_spans",
        "exported_spans",
        "lost_spans",
        "spans_per_cpu_second",
        "latency_p99_ms",
        "peak_rss_bytes",
        "machine",
    ):
        assert key in data
    assert data["ok"] is True
    assert data["lost_spans"] == 0
    assert data["peer"] == {"status": "not requested"}
    assert "**OK**" in paths[1].read_text()
    assert paths[2].stat().st_size > 10_000


def test_daemon_crash_is_reported_and_everything_is_cleaned_up(tiny: scenario.Scenario, tmp_path: Path) -> None:
    settings = RunSettings(
        4.0, "rate", 4000.0, tmp_path / "work", daemon_cpu=None, load_cpu=None, kill_daemon_after_s=1.0
    )
    run = TargetRun(tiny, "otelpipe", settings, progress=None)
    result = run.execute()
    _assert_all_stopped(run, result)
    assert result["crashed"] is True
    assert any("exited with code -9" in p for p in result["problems"])  # type: ignore[attr-defined]
    rep = report.build("tiny", "x", {}, {}, {"otelpipe": result}, peer_requested=True)
    assert rep["ok"] is False
    assert rep["peer"]["status"] == "absent"


def test_log_only_open_loop_keeps_its_rate(tiny: scenario.Scenario, tmp_path: Path) -> None:
    """A stream that sends only logs schedules by log records (a rate in items/s, not units/s)."""
    (tmp_path / "logonly.toml").write_text(tiny.config_text)
    (tmp_path / "logonly.load.toml").write_text(
        LOAD.replace('signals = ["traces", "logs"]', 'signals = ["logs"]').replace(
            "logs_per_trace = 1.0", "logs_per_trace = 5.0\nunsent_trace_log_ratio = 1.0"
        )
    )
    sc = scenario.load("logonly", tmp_path)
    run = TargetRun(sc, "otelpipe", RunSettings(2.0, "rate", 3000.0, tmp_path / "work"), progress=None)
    result = run.execute()
    _assert_all_stopped(run, result)
    logs = result["accounts"]["logs"]
    assert "traces" not in result["accounts"]
    assert logs["lost"] == 0
    assert logs["exported"] == logs["accepted"] > 0
    # 3000 records/s for 2 s were scheduled (sent, or unsent when the in-flight cap was reached), give or take
    # a unit: far from one unit per 1/3000 s.
    assert 4000 < logs["offered"] + logs["unsent"] < 9000


def test_cli_refuses_unknown_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "no-such-scenario"]) == 2
    assert "unknown scenario" in capsys.readouterr().err
