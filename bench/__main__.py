"""``python -m bench``: the benchmark harness.

    python -m bench run SCENARIO [--duration S] [--rate N | --max] [--peer otelcol] [--out DIR] [--no-pin]
    python -m bench list                 scenarios, and which components each still lacks
    python -m bench table [--results D]  the README's results table from the committed reports

``run`` starts the protocol sinks, the daemon under test (the scenario's TOML) and the load generators, runs,
stops everything it started and writes DIR/SCENARIO.{json,md,png} (default DIR: bench/results). With
``--peer otelcol`` the same scenario then runs against the reference collector (bench/peers) with an equivalent
YAML configuration, and the report shows both side by side. Exit code: 0 when nothing was lost and every
required trace arrived, 1 when the report lists problems, 2 when the scenario cannot run here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from bench import report, scenario
from bench.runner import RunSettings, run_target

RESULTS = Path(__file__).parent / "results"
WORK = Path(__file__).parent / "out"
# Closed-loop requests in flight per stream while measuring capacity: enough to keep one core busy, few enough
# that a memory limiter does not start refusing (which would measure the limiter, not the capacity).
CALIBRATION_CONCURRENCY = 8


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one scenario and write its report")
    run.add_argument("scenario")
    run.add_argument("--duration", type=float, help="seconds of load (default: the scenario's)")
    rate = run.add_mutually_exclusive_group()
    rate.add_argument("--rate", type=float, help="open loop at N spans/s (log records/s for log-only loads)")
    rate.add_argument("--max", action="store_true", help="closed loop: as fast as the daemon answers")
    run.add_argument("--peer", choices=["otelcol"], help="also run the reference collector and compare")
    run.add_argument("--out", type=Path, default=RESULTS, help="report directory (default: bench/results)")
    run.add_argument(
        "--scenario-dir", type=Path, default=scenario.SCENARIOS_DIR, help="read SCENARIO from this directory"
    )
    run.add_argument("--no-pin", action="store_true", help="do not pin the daemon and the load to separate cores")
    run.add_argument(
        "--profile",
        action="store_true",
        help="run otelpipe under pyinstrument (bench/out/SCENARIO/otelpipe/profile.txt); figures of such a run "
        "include the profiler's overhead",
    )
    sub.add_parser("list", help="list the scenarios")
    table = sub.add_parser("table", help="print the README's table of committed results")
    table.add_argument("--results", type=Path, default=RESULTS)
    return ap


def _placeholder_env() -> dict[str, str]:
    return {
        "BENCH_GRPC_ENDPOINT": "127.0.0.1:1",
        "BENCH_HTTP_ENDPOINT": "127.0.0.1:2",
        "BENCH_TELEMETRY_ENDPOINT": "127.0.0.1:3",
        "BENCH_SINK_GRPC": "127.0.0.1:4",
        "BENCH_SINK_HTTP": "http://127.0.0.1:5",
    }


def _list() -> int:
    from pipeline.components import default_registry

    registry = default_registry()
    for name in scenario.available():
        sc = scenario.load(name)
        missing = scenario.missing_components(sc, registry)
        state = "ready" if not missing else "needs " + ", ".join(missing)
        print(f"{name:10} {state}\n           {sc.load.description}")
    return 0


class _Progress:
    """A rich progress bar per target while a run goes on."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn()
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, target: str, done: float, total: float, info: str) -> None:
        if target not in self.tasks:
            self.tasks[target] = self.bar.add_task(target, total=total, info="")
        self.bar.update(self.tasks[target], completed=done, info=info)


def run(args: argparse.Namespace) -> int:
    from bench.machine import machine_facts
    from pipeline.components import default_registry

    try:
        sc = scenario.load(args.scenario, args.scenario_dir)
        scenario.check(sc, default_registry(), _placeholder_env())
    except scenario.ScenarioError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    if args.profile:
        import importlib.util

        if importlib.util.find_spec("pyinstrument") is None:
            print("bench: --profile needs pyinstrument (pip install -e '.[test]')", file=sys.stderr)
            return 2
    load = sc.load
    duration = args.duration or load.duration_s
    mode = "max" if args.max else ("rate" if args.rate else load.mode)
    pinned = load.pin and not args.no_pin and (os.cpu_count() or 1) >= 2
    work = WORK / sc.name
    daemon_cpu, load_cpu = (0, 1) if pinned else (None, None)
    progress = _Progress()
    results: dict[str, dict[str, Any]] = {}
    calibration: dict[str, float] = {}
    targets = ["otelpipe"] + ([args.peer] if args.peer else [])
    with progress.bar:
        for target in targets:
            rate = args.rate or load.rate_spans_per_s
            if mode == "rate" and not args.rate and load.capacity_factor > 0:
                cal = run_target(
                    sc,
                    target,
                    RunSettings(
                        load.calibration_s,
                        "max",
                        0.0,
                        work / "calibration",
                        daemon_cpu,
                        load_cpu,
                        max_concurrency=CALIBRATION_CONCURRENCY,
                    ),
                    lambda t, d, tot, info: progress(f"{t} calibration", d, tot, info),
                )
                capacity = cal.get("window_accepted_spans_per_s") or 0
                if not capacity:
                    results[target] = cal
                    continue
                calibration[target] = capacity
                # Below ~90% the daemon was not the limit (the load core was): the report says so.
                calibration[f"{target}_daemon_cpu_utilisation"] = cal.get("window_cpu_utilisation") or 0.0
                rate = capacity * load.capacity_factor
            settings = RunSettings(
                duration, mode, rate, work, daemon_cpu, load_cpu, profile=args.profile and target == "otelpipe"
            )
            results[target] = run_target(sc, target, settings, progress)
    settings_out = {
        "mode": mode,
        "rate_spans_per_s": results["otelpipe"].get("load", {}).get("rate_spans_per_s"),
        "duration_s": duration,
        "pinned": pinned,
        "daemon_cpu": daemon_cpu,
        "load_cpu": load_cpu,
        "profiled": bool(args.profile),
        "calibrated_capacity_spans_per_s": calibration or None,
        "capacity_factor": load.capacity_factor or None,
        "command": "python -m bench " + " ".join(sys.argv[1:]),
    }
    rep = report.build(sc.name, load.description, settings_out, machine_facts(), results, bool(args.peer))
    paths = report.write(rep, args.out)
    print(f"report: {', '.join(str(p) for p in paths)}")
    _summary(rep)
    return 0 if rep["ok"] else 1


def _summary(rep: dict[str, Any]) -> None:
    print(
        f"{rep['scenario']}: accepted {rep.get('accepted_spans') or 0:,} spans / "
        f"{rep.get('accepted_log_records') or 0:,} "
        f"logs, exported {rep.get('exported_spans') or 0:,} / {rep.get('exported_log_records') or 0:,}, "
        f"lost {rep.get('lost_spans')} / {rep.get('lost_log_records')}, "
        f"{rep.get('spans_per_cpu_second') or rep.get('items_per_cpu_second') or 0:,} per CPU-s, "
        f"p99 {rep.get('latency_p99_ms')} ms, peak RSS {(rep.get('peak_rss_bytes') or 0) >> 20} MiB"
    )
    if rep.get("ratio"):
        print(f"otelpipe / otelcol: {rep['ratio']}")
    elif rep["peer"]["status"] == "absent":
        print(f"reference collector absent: {rep['peer']['reason']}")
    for problem in rep["problems"]:
        print(f"problem: {problem}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "table":
        print(report.readme_table(args.results))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
