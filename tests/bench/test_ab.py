"""bench.ab: two import roots timed alternately; the engine must come from the root named."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ab

ROOT = Path(__file__).resolve().parents[2]


def test_two_roots_are_timed_and_compared(capsys: pytest.CaptureFixture[str]) -> None:
    assert ab.main([str(ROOT), str(ROOT), "--rounds", "2", "--requests", "2", "--warmup", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["round 1", "round 2"]
    ratios = []
    for line in lines[:2]:  # "round N: A <a> ms  B <b> ms per request  B/A <r>": the ratio is B over A
        words = line.split()
        a, b, ratio = float(words[3]), float(words[6]), float(words[-1])
        assert ratio == pytest.approx(b / a, abs=1e-3)
        ratios.append(ratio)
    assert "masked the requests differently" not in "\n".join(lines)  # one root, one output
    assert lines[-1].startswith("median B/A ")
    assert float(lines[-1].split()[2]) == pytest.approx(sum(ratios) / 2, abs=1e-3)


def test_a_root_that_does_not_provide_the_engine_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not from this root"):
        ab.main([str(ROOT), str(tmp_path), "--rounds", "1", "--requests", "1", "--warmup", "0"])


def test_builds_that_mask_differently_are_called_out(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = iter([ab.Timed(2.0, "a"), ab.Timed(1.0, "b")])
    monkeypatch.setattr(ab, "timed_child", lambda *args: next(outputs))
    assert ab.main([str(ROOT), str(ROOT), "--rounds", "1", "--requests", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "B/A 0.500" in out
    assert "A and B masked the requests differently" in out
