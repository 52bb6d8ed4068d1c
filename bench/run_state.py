"""What one benchmark run (bench/runner.py) is given and what it holds while it runs.

``RunSettings`` are the run's settings. ``RunState`` is the state of ``runner.TargetRun``: what ``__init__`` sets,
and, declared here, what the start-up assigns later (run_control.py) and the load, the sampling and the summary
read (runner.py, run_sampling.py, run_result.py). TargetRun is those parts over this one state, so each part keeps
its methods as they were, in a module of its own, and sees every attribute with its type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen, procs
from bench.scenario import Scenario

Progress = Callable[[str, float, float, str], None]


@dataclass(frozen=True, slots=True)
class RunSettings:
    duration_s: float
    mode: str  # rate | max
    rate_spans_per_s: float
    work_dir: Path
    daemon_cpu: int | None = 0
    load_cpu: int | None = 1
    # Fault injection for the harness's own tests: SIGKILL the daemon this many seconds into the load.
    kill_daemon_after_s: float | None = None
    ready_timeout_s: float = 60.0
    # Caps every stream's concurrency (calibration runs: measure capacity without tripping the limiters).
    max_concurrency: int | None = None
    # Run the otelpipe daemon under pyinstrument and write its profile next to the daemon log.
    profile: bool = False


class RunState:
    """What one run holds; ``runner.TargetRun`` adds what it does."""

    # Assigned while the run starts (run_control.py) and when the load starts (runner.py).
    ports: dict[str, int]
    sink_proc: Any
    log: Path
    out_q: Any
    stop: Any
    controls: list[Any]
    specs: list[loadgen.StreamSpec]
    t0: float

    def __init__(self, scenario: Scenario, target: str, settings: RunSettings, progress: Progress | None) -> None:
        self.scenario = scenario
        self.target = target
        self.settings = settings
        self.progress = progress
        self.cleanup = procs.Cleanup()
        self.work = settings.work_dir / target
        self.prefix = "otelpipe" if target == "otelpipe" else "otelcol"
        self.result: dict[str, Any] = {"target": target, "problems": [], "crashed": False}
        self.samples: list[dict[str, Any]] = []
        self.daemon: Any = None
