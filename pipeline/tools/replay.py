"""``otelpipe replay -c CONFIG FILE...``: run captured telemetry through the configured tail sampling, offline.

The captures are what the ``file`` exporter writes (OTLP/JSON lines or length-prefixed protobuf; traces and
logs). Each ``tail_sampling`` processor of the configuration (or the one ``--processor`` names) gets its own pure
core (processors/tail_sampling/engine.py) and a virtual clock that follows the data: a request "arrives" at the
latest timestamp it carries (span end, log record time), requests from all files are merged in that order, due
decisions run before each arrival, and whatever is still buffered at the end is decided as on shutdown. So
``decision_wait_ms``, the root rule and rate limits behave as they would have on the day the data was captured
(budgets too, except that memory is counted the same way, not measured).

It prints, per deciding policy, traces and spans kept and dropped and the bytes of kept spans, then totals,
late spans, log records and the output size; ``--json`` prints the same as one JSON document. Exit status: 0;
1 when a capture cannot be read or no tail_sampling processor is configured; 2 when the configuration is invalid.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.loader import format_errors, load_config
from pipeline.component import Kind, Registry
from pipeline.errors import ConfigError
from pipeline.exporters.file import read_records
from pipeline.model import Request, Signal
from processors.tail_sampling.config import TailSamplingConfig
from processors.tail_sampling.engine import Outcome, Stats, TailSampler

NAME = "replay"
HELP = "replay captured telemetry (file exporter output) through the configured tail sampling, offline"
NO_POLICY = "(no policy sampled)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", action="append", type=Path, required=True, metavar="FILE", help="TOML config file"
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="captures written by the file exporter")
    parser.add_argument("--processor", metavar="ID", help="the tail_sampling processor to replay (default: all)")
    parser.add_argument("--format", choices=["json", "proto"], help="capture format (default: from the file name)")
    parser.add_argument(
        "--signal", choices=["traces", "logs"], help="signal of proto captures whose name does not say it"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


@dataclass
class Report:
    processor: str
    stats: Stats = field(default_factory=Stats)
    votes: dict[tuple[str, str], int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # policies in config order
    input_spans: int = 0
    input_logs: int = 0
    input_bytes: int = 0
    output_requests: int = 0
    output_bytes: int = 0
    output_spans: int = 0
    output_logs: int = 0

    def add(self, stats: Stats) -> None:
        s = self.stats
        for key, (traces, spans, nbytes) in stats.by_policy.items():
            record = s.by_policy.setdefault(key, [0, 0, 0])
            record[0] += traces
            record[1] += spans
            record[2] += nbytes
        s.late_spans.update(stats.late_spans)
        s.logs.update(stats.logs)
        s.decided.update(stats.decided)
        s.filter_false_positives += stats.filter_false_positives

    def as_dict(self) -> dict[str, Any]:
        policies: dict[str, dict[str, int]] = {name: _empty_row() for name in self.order}
        for (policy, decision), (traces, spans, nbytes) in sorted(self.stats.by_policy.items()):
            row = policies.setdefault(policy or NO_POLICY, _empty_row())
            row[f"traces_{decision}"] += traces
            row[f"spans_{decision}"] += spans
            if decision == "kept":
                row["bytes_kept"] += nbytes
        for (policy, outcome), n in self.votes.items():
            if outcome in ("sampled", "dropped"):
                policies.setdefault(policy, _empty_row())["matched"] += n
        kept = [r for (_, d), r in self.stats.by_policy.items() if d == "kept"]
        dropped = [r for (_, d), r in self.stats.by_policy.items() if d == "dropped"]
        return {
            "processor": self.processor,
            "policies": policies,
            "totals": {
                "traces_kept": sum(r[0] for r in kept),
                "traces_dropped": sum(r[0] for r in dropped),
                "spans_kept": sum(r[1] for r in kept),
                "spans_dropped": sum(r[1] for r in dropped),
            },
            "late_spans": dict(self.stats.late_spans),
            "log_records": {f"{path}/{outcome}": n for (path, outcome), n in sorted(self.stats.logs.items())},
            "input": {"spans": self.input_spans, "log_records": self.input_logs, "bytes": self.input_bytes},
            "output": {
                "requests": self.output_requests,
                "bytes": self.output_bytes,
                "spans": self.output_spans,
                "log_records": self.output_logs,
            },
        }


def _empty_row() -> dict[str, int]:
    return dict.fromkeys(("matched", "traces_kept", "spans_kept", "traces_dropped", "spans_dropped", "bytes_kept"), 0)


def _arrival_ns(signal: Signal, request: Any) -> int:
    """When a request would have reached the daemon: the latest time it carries (0 when it carries none)."""
    latest = 0
    if signal is Signal.TRACES:
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    latest = max(latest, s.end_time_unix_nano, s.start_time_unix_nano)
    else:
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    latest = max(latest, r.observed_time_unix_nano, r.time_unix_nano)
    return latest


def _records(path: Path, fmt: str | None, signal: Signal | None) -> Iterator[tuple[int, int, Signal, Request]]:
    for i, (sig, req) in enumerate(read_records(path, fmt, signal)):
        if sig is Signal.METRICS:
            continue  # tail sampling does not take metrics
        yield _arrival_ns(sig, req), i, sig, req


class Replayer:
    """One tail_sampling processor's core on a virtual clock (seconds of data time)."""

    def __init__(self, name: str, cfg: TailSamplingConfig) -> None:
        self.engine = TailSampler(cfg, stable=True)
        self.report = Report(name)
        self.now = 0.0

    def feed(self, arrival_ns: int, signal: Signal, request: Any) -> None:
        if arrival_ns:
            self.now = max(self.now, arrival_ns / 1e9)
        out = Outcome()
        self.engine.tick(self.now, out)
        raw = request.SerializeToString()
        r = self.report
        r.input_bytes += len(raw)
        if signal is Signal.TRACES:
            r.input_spans += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            self.engine.ingest_spans(raw, request, self.now, out)
        else:
            n = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
            r.input_logs += n
            if self.engine.ingest_logs(raw, request, self.now, out):
                r.output_requests += 1
                r.output_bytes += len(raw)
                r.output_logs += n
        self._count(out)

    def finish(self) -> Report:
        out = Outcome()
        self.engine.drain(self.now, out, decide=not self.engine.cfg.drop_pending_traces_on_shutdown)
        self._count(out)
        self.report.votes = {(p, o): n for p, o, n in self.engine.policies.take_votes()}
        self.report.order = list(self.engine.policies.names)
        return self.report

    def _count(self, out: Outcome) -> None:
        r = self.report
        for raw, n in out.spans.encode():
            r.output_requests += 1
            r.output_bytes += len(raw)
            r.output_spans += n
        for raw, n in out.logs.encode():
            r.output_requests += 1
            r.output_bytes += len(raw)
            r.output_logs += n
        r.add(self.engine.stats.take())


def replay(
    processors: dict[str, TailSamplingConfig], files: list[Path], fmt: str | None = None, signal: Signal | None = None
) -> list[Report]:
    """Replay ``files`` through each processor; raises ValueError when a capture cannot be read."""
    replayers = [Replayer(name, cfg) for name, cfg in processors.items()]
    for arrival, _, sig, req in heapq.merge(*(_records(p, fmt, signal) for p in files), key=lambda r: (r[0], r[1])):
        for r in replayers:
            r.feed(arrival, sig, req)
    return [r.finish() for r in replayers]


def render(report: dict[str, Any]) -> str:
    lines = [f"processor {report['processor']}"]
    header = ("policy", "matched", "traces kept", "spans kept", "traces dropped", "spans dropped", "bytes kept")
    rows = [header]
    for name, row in report["policies"].items():
        rows.append(
            (
                name,
                str(row["matched"]),
                str(row["traces_kept"]),
                str(row["spans_kept"]),
                str(row["traces_dropped"]),
                str(row["spans_dropped"]),
                str(row["bytes_kept"]),
            )
        )
    t = report["totals"]
    rows.append(
        (
            "total",
            "",
            str(t["traces_kept"]),
            str(t["spans_kept"]),
            str(t["traces_dropped"]),
            str(t["spans_dropped"]),
            "",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        lines.append(
            "  "
            + "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
        if i == 0 or i == len(rows) - 2:
            lines.append("  " + "  ".join("-" * w for w in widths))
    late = report["late_spans"]
    if late:
        lines.append("  late spans: " + ", ".join(f"{k} {v}" for k, v in sorted(late.items())))
    if report["log_records"]:
        lines.append("  log records: " + ", ".join(f"{k} {v}" for k, v in report["log_records"].items()))
    i, o = report["input"], report["output"]
    lines.append(
        f"  input: {i['spans']} spans, {i['log_records']} log records, {i['bytes']} bytes; "
        f"output: {o['requests']} requests, {o['spans']} spans, {o['log_records']} log records, {o['bytes']} bytes"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace, registry: Registry) -> int:
    try:
        config = load_config(args.config, registry)
    except ConfigError as exc:
        print(format_errors(exc), file=sys.stderr)
        return 2
    processors: dict[str, TailSamplingConfig] = {}
    for cid, cfg in config.of(Kind.PROCESSOR).items():
        if cid.type == "tail_sampling" and isinstance(cfg, TailSamplingConfig):
            processors[str(cid)] = cfg
    if args.processor is not None:
        processors = {k: v for k, v in processors.items() if k == args.processor}
    if not processors:
        which = f" named {args.processor!r}" if args.processor else ""
        print(f"otelpipe replay: the configuration has no tail_sampling processor{which}", file=sys.stderr)
        return 1
    signal = Signal(args.signal) if args.signal else None
    try:
        reports = replay(processors, list(args.files), args.format, signal)
    except (OSError, ValueError) as exc:
        print(f"otelpipe replay: {exc}", file=sys.stderr)
        return 1
    documents = [r.as_dict() for r in reports]
    if args.json:
        print(json.dumps(documents if len(documents) > 1 else documents[0], indent=2))
    else:
        print("\n\n".join(render(d) for d in documents))
    return 0
