"""bench.pii runs: the chosen engine's MB/s over fresh processes, and how the report shows them."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest

from bench import ab, pii
from bench.pii_data import log_requests
from bench.pii_report import write
from pipeline.model import Signal

ROOT = Path(__file__).resolve().parents[2]


def test_each_run_is_request_bytes_over_the_childs_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    times = {Signal.TRACES: iter([2.0, 4.0, 3.0]), Signal.LOGS: iter([1.0, 1.0, 0.5])}
    calls: list[tuple[Path, int, Signal]] = []

    def fake(root: Path, data: Path, warmup: int, signal: Signal) -> ab.Timed:
        calls.append((root, warmup, signal))
        assert len(pickle.loads(data.read_bytes())) == warmup + 2
        return ab.Timed(next(times[signal]), "digest")

    monkeypatch.setattr(ab, "timed_child", fake)
    out = pii.runs(3, warmup=1, requests=2)
    assert [signal for _, _, signal in calls] == [Signal.TRACES, Signal.LOGS] * 3  # alternating
    assert {root for root, _, _ in calls} == {ROOT}
    assert {w for _, w, _ in calls} == {1}
    traces, logs = out["traces"], out["logs"]
    per_ms = traces["request_bytes_avg"] / 1e3
    assert traces["mb_per_cpu_s"] == [round(per_ms / t, 1) for t in (2.0, 4.0, 3.0)]
    assert (traces["median"], traces["low"], traces["high"]) == (
        round(per_ms / 3.0, 1),
        round(per_ms / 4.0, 1),
        round(per_ms / 2.0, 1),
    )
    assert 0 < traces["text_bytes_avg"] < traces["request_bytes_avg"]
    assert traces["text_median"] == round(traces["median"] * traces["text_bytes_avg"] / traces["request_bytes_avg"], 1)
    assert logs["median"] == round(logs["request_bytes_avg"] / 1e3, 1)

    write({"machine": {}, "date": "2026-11-27", "runs": out}, tmp_path)
    md = (tmp_path / "pii.md").read_text()
    assert "## The chosen engine, 3 fresh processes per signal" in md
    row = next(line for line in md.splitlines() if line.startswith("| traces |"))
    assert row.split(" | ")[1:4] == [f"{traces['median']:.1f}", str(traces["low"]), str(traces["high"])]


def test_the_child_masks_the_signal_it_is_given(tmp_path: Path) -> None:
    raws, _ = log_requests(3, records=50)
    data = tmp_path / "logs.pickle"
    data.write_bytes(pickle.dumps(raws))
    timed = ab.timed_child(ROOT, data, 1, Signal.LOGS)
    assert timed.ms_per_request > 0
    engine = pii._engine()
    expected = hashlib.sha256()
    for raw in raws[1:]:
        outcome = engine.process(Signal.LOGS, raw)
        assert outcome.changed  # 50 records with PII in 10% of values: something is masked
        expected.update(outcome.raw or raw)
    assert timed.digest == expected.hexdigest()
    # Read as trace requests, the same bytes are masked otherwise (or not at all).
    assert ab.timed_child(ROOT, data, 1, Signal.TRACES).digest != timed.digest


def test_one_part_alone_does_not_replace_the_recorded_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake: dict[str, object] = {"runs": 1, "warmup": 1, "requests": 1}
    for signal in ("traces", "logs"):
        fake[signal] = {"mb_per_cpu_s": [1.0], "median": 1.0, "low": 1.0, "high": 1.0, "text_median": 0.5}
    monkeypatch.setattr(pii, "runs", lambda n: fake)
    monkeypatch.setattr(pii, "PARTIAL", tmp_path / "partial")
    monkeypatch.setattr(pii, "RESULTS", tmp_path / "results")
    assert pii.main(["runs", "--runs", "1"]) == 0
    assert (tmp_path / "partial" / "pii.md").exists()
    assert not (tmp_path / "results").exists()
    assert pii.main(["runs", "--out", str(tmp_path / "chosen")]) == 0
    assert json.loads((tmp_path / "chosen" / "pii.json").read_text())["runs"] == fake
