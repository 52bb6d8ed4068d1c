"""The machine facts every report carries: which build of the hot path ran, and the speed reference."""

from __future__ import annotations

from bench.machine import machine_facts, machine_line, speed_reference
from pipeline.compiled import MODULES

_BASE = {"cpu_model": "AMD EPYC", "cores": 2, "python": "3.11.7", "protobuf_backend": "upb"}


def test_speed_reference_times_the_fixed_workload() -> None:
    ms = speed_reference()
    assert isinstance(ms, float)
    assert ms > 0


def test_the_facts_say_what_ran() -> None:
    facts = machine_facts()
    assert facts["compiled"] == []  # the tests run the source tree
    assert facts["compilable"] == len(MODULES)
    assert facts["speed_reference_ms"] > 0
    assert machine_line(facts).endswith(" ms (lower is faster)")


def test_machine_line() -> None:
    head = "Machine: AMD EPYC, 2 cores, Python 3.11.7, protobuf upb, PII hot path "
    assert machine_line(_BASE) == head + "build not recorded"
    assert machine_line({**_BASE, "compiled": [], "speed_reference_ms": 23.4}) == (
        head + "Python source (not compiled), speed reference 23.4 ms (lower is faster)"
    )
    compiled = {**_BASE, "compiled": ["a", "b"], "compilable": 12}
    assert machine_line(compiled) == head + "mypyc-compiled (2 of 12 modules)"
