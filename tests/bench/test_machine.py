"""The machine facts every report carries: which build of the hot path ran, and the speed reference."""

from __future__ import annotations

from bench.machine import build_note, machine_facts, speed_reference
from pipeline.compiled import MODULES


def test_speed_reference_times_the_fixed_workload() -> None:
    ms = speed_reference()
    assert isinstance(ms, float)
    assert ms > 0


def test_the_facts_say_what_ran() -> None:
    facts = machine_facts()
    assert facts["compiled"] == []  # the tests run the source tree
    assert facts["compilable"] == len(MODULES)
    assert facts["speed_reference_ms"] > 0


def test_build_note() -> None:
    assert build_note({}) == "build not recorded"
    assert build_note({"compiled": [], "speed_reference_ms": 23.4}) == (
        "Python source (not compiled); speed reference 23.4 ms (lower is faster)"
    )
    assert build_note({"compiled": ["a", "b"], "compilable": 12}) == "mypyc-compiled (2 of 12 hot-path modules)"
