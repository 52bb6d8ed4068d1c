"""One benchmark run against one target (otelpipe, or the reference collector), from start to cleanup.

    sinks (process, load core) -> daemon (subprocess, own session, pinned to the daemon core) -> ready
    -> generators (processes, load core) build their units -> start together -> monitor every second
       (daemon CPU and RSS from /proc, its /metrics, the sinks' counters) -> load ends
    -> drain: wait until the daemon holds nothing (processors balanced, queues empty, sinks idle)
    -> final /metrics and sink records -> SIGTERM -> accounting -> cleanup of every process and port

Everything started is registered with ``procs.Cleanup`` before it can fail, and ``close()`` runs in a
``finally``; a daemon that exits during the run ends the load early and is reported as crashed with its log's
tail, never as a hang.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec

from bench import accounting, loadgen, procs, promtext, sinks
from bench.peer_config import PeerConfigError, generate
from bench.peers import absent_reason, find_otelcol
from bench.procstat import cpu_seconds, rss_bytes
from bench.scenario import Scenario
from bench.workload import PII_VALUES

Progress = Callable[[str, float, float, str], None]
SAMPLE_INTERVAL_S = 1.0
# Items held below which "RSS bytes per buffered span" is not reported (a batch processor holds up to ~8K).
MEANINGFUL_BUFFER = 50_000


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


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[index], 3)


def latency_summary(samples: list[float]) -> dict[str, Any]:
    values = sorted(samples)
    return {
        "count": len(values),
        "p50_ms": _quantile(values, 0.50),
        "p95_ms": _quantile(values, 0.95),
        "p99_ms": _quantile(values, 0.99),
        "max_ms": round(values[-1], 3) if values else None,
        # Every percentile from 0 to 100, for the latency plot (the raw samples are not kept in the report).
        "percentiles_ms": [_quantile(values, i / 100) for i in range(101)] if values else [],
    }


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine spent busy so far (all cores), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        parts = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def loadavg() -> float:
    with open("/proc/loadavg", encoding="ascii") as f:
        return float(f.read().split()[0])


class TargetRun:
    """State of one run; ``execute()`` returns the result as plain data for the report."""

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

    # ---------------------------------------------------------------- start
    def _env_and_ports(self) -> dict[str, str]:
        c = self.cleanup
        self.ports = {k: c.port() for k in ("grpc", "http", "telemetry", "sink_grpc", "sink_http")}
        return {
            "BENCH_GRPC_ENDPOINT": f"127.0.0.1:{self.ports['grpc']}",
            "BENCH_HTTP_ENDPOINT": f"127.0.0.1:{self.ports['http']}",
            "BENCH_TELEMETRY_ENDPOINT": f"127.0.0.1:{self.ports['telemetry']}",
            "BENCH_SINK_GRPC": f"127.0.0.1:{self.ports['sink_grpc']}",
            "BENCH_SINK_HTTP": f"http://127.0.0.1:{self.ports['sink_http']}",
        }

    def _start_sinks(self, ctx: Any) -> None:
        ready = ctx.Event()
        config = sinks.SinkConfig(
            self.ports["sink_grpc"],
            self.ports["sink_http"],
            PII_VALUES if self.scenario.load.scan_pii else (),
            self.settings.load_cpu if self.scenario.load.pin else None,
        )
        self.sink_proc = ctx.Process(target=sinks.run_process, args=(config, ready), name="bench-sinks", daemon=True)
        self.cleanup.children.append(self.sink_proc)
        self.sink_proc.start()
        if not ready.wait(30):
            raise RuntimeError("the protocol sinks did not start within 30 s")

    def _daemon_argv(self, env: dict[str, str]) -> tuple[list[str], Path]:
        self.work.mkdir(parents=True, exist_ok=True)
        if self.target == "otelpipe":
            path = self.work / f"{self.scenario.name}.toml"
            path.write_text(self.scenario.config_text)
            argv = [sys.executable, "-m", "pipeline", "run", "-c", str(path)]
            if self.settings.profile:
                self.result["profile"] = str(self.work / "profile.txt")
                # pyinstrument writes when the daemon exits after SIGTERM (a drained, normal exit).
                argv = [
                    sys.executable,
                    "-m",
                    "pyinstrument",
                    "--renderer",
                    "text",
                    "--show-all",
                    "-o",
                    str(self.work / "profile.txt"),
                    "-m",
                    "pipeline",
                    "run",
                    "-c",
                    str(path),
                ]
            return argv, path
        binary = find_otelcol()
        if binary is None:
            raise PeerConfigError(absent_reason())
        peer = generate(self.scenario.config_tree(env), "127.0.0.1", self.ports["telemetry"])
        self.result["peer_notes"] = peer.notes
        path = self.work / f"{self.scenario.name}.otelcol.yaml"
        path.write_text(peer.yaml() + "\n")
        self.result["binary"] = str(binary)
        return [str(binary), "--config", f"file:{path}"], path

    def _start_daemon(self, env: dict[str, str]) -> None:
        argv, config = self._daemon_argv(env)
        self.result["config"] = str(config)
        full_env = {**os.environ, **env}
        pinned = self.scenario.load.pin
        if self.target == "otelcol" and pinned:
            full_env["GOMAXPROCS"] = "1"  # one core, as the otelpipe daemon gets
        self.log = self.work / "daemon.log"
        self.daemon = self.cleanup.start_daemon(argv, full_env, self.log, self.settings.daemon_cpu if pinned else None)
        tel = self.ports["telemetry"]
        if self.target == "otelpipe":
            ready = lambda: procs.http_ok(f"http://127.0.0.1:{tel}/health/ready")  # noqa: E731
        else:
            grpc_port = self.ports["grpc"]
            ready = lambda: procs.http_ok(f"http://127.0.0.1:{tel}/metrics") and procs.tcp_open(grpc_port)  # noqa: E731
        procs.wait_for(ready, self.daemon, self.settings.ready_timeout_s, "ready", self.log)

    def _start_generators(self, ctx: Any) -> None:
        load, s = self.scenario.load, self.settings
        self.out_q: Any = ctx.Queue()
        self.stop = ctx.Event()
        self.controls: list[Any] = []
        specs = []
        shares = sum(stream.share * stream.processes for stream in load.streams)
        index = 0
        for stream in load.streams:
            for _ in range(stream.processes):
                specs.append(
                    loadgen.StreamSpec(
                        index=index,
                        transport=stream.transport,
                        shape=load.shape_for(stream),
                        units=load.units_per_process,
                        mode=s.mode,
                        rate_spans_per_s=s.rate_spans_per_s * stream.share / shares,
                        concurrency=min(stream.concurrency, s.max_concurrency or stream.concurrency),
                        grpc_target=f"127.0.0.1:{self.ports['grpc']}",
                        http_base=f"http://127.0.0.1:{self.ports['http']}",
                        timeout_s=load.timeout_s,
                        cpu=s.load_cpu if load.pin else None,
                        seed=1000 + index,
                    )
                )
                index += 1
        self.specs = specs
        for spec in specs:
            control = ctx.Queue()
            proc = ctx.Process(
                target=loadgen.run_process, args=(spec, self.out_q, control, self.stop), name=f"bench-load-{spec.index}"
            )
            self.cleanup.children.append(proc)
            self.controls.append(control)
            proc.start()
        waiting = len(specs)
        deadline = time.monotonic() + 180
        while waiting:
            try:
                kind, payload = self.out_q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty as exc:
                raise RuntimeError("load generators did not get ready within 180 s") from exc
            if kind == "ready":
                waiting -= 1
            elif kind == "result" and payload.error:
                raise RuntimeError(payload.error)

    # ---------------------------------------------------------------- measure
    def _metrics(self) -> list[promtext.Sample] | None:
        try:
            return promtext.fetch(f"http://127.0.0.1:{self.ports['telemetry']}/metrics")
        except (OSError, ValueError):
            return None

    def _sink_stats(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['sink_http']}/bench/stats", timeout=5) as r:
                stats: dict[str, Any] = msgspec.json.decode(r.read())
                return stats
        except (OSError, ValueError):
            return {}

    def _buffered(self, m: list[promtext.Sample]) -> tuple[float, float]:
        """(items held inside processors, batches in exporter queues) by the daemon's own counters."""
        p = self.prefix
        held = (
            promtext.total(m, f"{p}_processor_incoming_items")
            - promtext.total(m, f"{p}_processor_outgoing_items")
            - promtext.total(m, f"{p}_processor_dropped_items")
        )
        return max(0.0, held), promtext.total(m, f"{p}_exporter_queue_size")

    def _sample(self, t0: float) -> dict[str, Any]:
        pid = self.daemon.pid
        sample: dict[str, Any] = {"t": round(time.monotonic() - t0, 3)}
        try:
            sample["cpu_s"] = cpu_seconds(pid)
            sample["rss"] = rss_bytes(pid)
        except (OSError, IndexError, ValueError):
            return sample
        m = self._metrics()
        if m is not None:
            p = self.prefix
            sample["accepted_spans"] = promtext.total(m, f"{p}_receiver_accepted_spans")
            sample["accepted_logs"] = promtext.total(m, f"{p}_receiver_accepted_log_records")
            sample["buffered_items"], sample["queued_batches"] = self._buffered(m)
        stats = self._sink_stats()
        items = stats.get("items", {})
        sample["exported_spans"] = items.get("traces", 0)
        sample["exported_logs"] = items.get("logs", 0) + items.get("loki", 0)
        sample["sink_idle_s"] = stats.get("idle_s", 0.0)
        self.samples.append(sample)
        return sample

    def _run_load(self) -> list[loadgen.StreamResult]:
        s = self.settings
        start_at = time.time() + 0.5
        for control in self.controls:
            control.put((start_at, s.duration_s))
        t0 = time.monotonic() + 0.5
        self.t0 = t0
        results: dict[int, loadgen.StreamResult] = {}
        deadline = t0 + s.duration_s + self.scenario.load.timeout_s + 30
        killed = False
        next_sample = t0
        while len(results) < len(self.specs) and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_sample:
                sample = self._sample(t0)
                next_sample += SAMPLE_INTERVAL_S
                if self.progress is not None:
                    rate = self._rate("accepted_spans") or self._rate("accepted_logs")
                    self.progress(self.target, min(now - t0, s.duration_s), s.duration_s, f"{rate:,.0f} items/s")
                del sample
            if s.kill_daemon_after_s is not None and not killed and now - t0 >= s.kill_daemon_after_s:
                self.daemon.kill()
                killed = True
            if self.daemon.poll() is not None and not self.result["crashed"]:
                self._crashed("during the load")
                self.stop.set()
            try:
                kind, payload = self.out_q.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "result":
                results[payload.index] = payload
                if payload.error:
                    self.result["problems"].append(f"load stream {payload.index}: {payload.error}")
        if len(results) < len(self.specs):
            self.stop.set()
            self.result["problems"].append("load generators did not report in time (stopped)")
        return [results[i] for i in sorted(results)]

    def _rate(self, key: str) -> float:
        with_key = [x for x in self.samples if key in x]
        if len(with_key) < 2:
            return 0.0
        a, b = with_key[-2], with_key[-1]
        dt = b["t"] - a["t"]
        return float((b[key] - a[key]) / dt) if dt > 0 else 0.0

    def _crashed(self, when: str) -> None:
        self.result["crashed"] = True
        self.result["exit_code"] = self.daemon.returncode
        self.result["problems"].append(
            f"the {self.target} daemon exited with code {self.daemon.returncode} {when}; "
            f"log tail:\n{procs.tail(self.log)}"
        )

    def _drain(self) -> bool:
        """Wait until the daemon holds nothing and the sinks went quiet; False if the deadline passed first."""
        load = self.scenario.load
        wait_s = self.scenario.decision_wait_s()
        deadline = time.monotonic() + load.drain_timeout_s + wait_s
        quiet_s = 1.0 if self.target == "otelpipe" else wait_s + 2.0
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                if not self.result["crashed"]:
                    self._crashed("while draining")
                return False
            sample = self._sample(self.t0)
            held = sample.get("buffered_items", 0) + sample.get("queued_batches", 0)
            if sample.get("sink_idle_s", 0.0) >= quiet_s and (self.target != "otelpipe" or held == 0):
                return True
            time.sleep(0.5)
        return False

    # ---------------------------------------------------------------- run
    def execute(self) -> dict[str, Any]:
        ctx = mp.get_context("spawn")
        r = self.result
        r["loadavg_before"] = loadavg()
        busy0 = 0.0
        try:
            env = self._env_and_ports()
            self._start_sinks(ctx)
            self._start_daemon(env)
            self._start_generators(ctx)
            cpu0, rss0 = cpu_seconds(self.daemon.pid), rss_bytes(self.daemon.pid)
            sink_cpu0 = cpu_seconds(self.sink_proc.pid)
            busy0, own0 = machine_busy_seconds(), time.process_time()
            streams = self._run_load()
            drained = self._drain() if not r["crashed"] else False
            if not drained and not r["crashed"]:
                r["problems"].append("the daemon did not drain within drain_timeout_s (buffers or queues not empty)")
            r["drained"] = drained
            final_metrics = None if r["crashed"] else self._metrics()
            if not r["crashed"]:
                cpu1 = cpu_seconds(self.daemon.pid)
                r["daemon_cpu_seconds"] = round(cpu1 - cpu0, 3)
            sink_cpu = cpu_seconds(self.sink_proc.pid) - sink_cpu0
            busy = machine_busy_seconds() - busy0
            own = time.process_time() - own0
            final = self._sink_final()
            self._stop_daemon()
            self._summarize(streams, final, final_metrics, rss0)
            gen_cpu = sum(x.cpu_seconds for x in streams)
            ours = r.get("daemon_cpu_seconds", 0.0) + sink_cpu + gen_cpu + own
            r["load"]["sink_cpu_seconds"] = round(sink_cpu, 3)
            r["other_load"] = {
                "loadavg_before": r.pop("loadavg_before"),
                "machine_busy_cpu_seconds": round(busy, 3),
                "our_cpu_seconds": round(ours, 3),
                "other_cpu_seconds": round(max(0.0, busy - ours), 3),
                # More than a tenth of a core busy elsewhere on average: another workload shared the machine.
                "present": busy - ours > 0.1 * max(1.0, self.samples[-1]["t"] if self.samples else 1.0),
            }
        except procs.DaemonExited as exc:
            r["crashed"] = True
            r["problems"].append(f"the {self.target} daemon {exc}")
        except PeerConfigError as exc:
            r["absent"] = str(exc)
        finally:
            if self.daemon is not None and self.daemon.poll() is None:
                r.setdefault("exit_code", None)
            leftover = self.cleanup.close()
            r["ports_released"] = not leftover
            if leftover:
                r["problems"].append(f"ports still bound after cleanup: {leftover}")
        return r

    def _sink_final(self) -> sinks.Final | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['sink_http']}/bench/final", timeout=30) as resp:
                return msgspec.msgpack.decode(resp.read(), type=sinks.Final)
        except (OSError, ValueError) as exc:
            self.result["problems"].append(f"could not read the sinks' records: {exc}")
            return None

    def _stop_daemon(self) -> None:
        if self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.result["exit_code"] = self.daemon.wait(30)
            except Exception:
                self.result["problems"].append("the daemon did not exit within 30 s of SIGTERM (killed)")
                self.daemon.kill()
                self.result["exit_code"] = self.daemon.wait(5)
        else:
            self.result["exit_code"] = self.daemon.returncode

    # ---------------------------------------------------------------- summarize
    def _summarize(
        self,
        streams: list[loadgen.StreamResult],
        final: sinks.Final | None,
        metrics: list[promtext.Sample] | None,
        rss0: int,
    ) -> None:
        r, load = self.result, self.scenario.load
        p = self.prefix
        exported_span_ids = set(_split_ids(final.span_trace_ids)) if final else set()
        exported_log_ids = set(_split_ids(final.log_trace_ids)) if final else set()
        sink_items = final.stats.get("items", {}) if final else {}
        on_purpose = set(accounting.ON_PURPOSE_REASONS) | set(load.on_purpose_reasons)
        accounts: dict[str, Any] = {}
        for signal, bit, item, ids, required in (
            ("traces", 1, "spans", exported_span_ids, load.required_traces),
            ("logs", 2, "log_records", exported_log_ids, load.required_logs),
        ):
            if signal not in load.signals():
                continue
            counts = _merge_counts(streams, signal)
            drops: dict[str, int] | None = None
            daemon_accepted = None
            if metrics is not None:
                daemon_accepted = int(promtext.total(metrics, f"{p}_receiver_accepted_{item}"))
                if self.target == "otelpipe":
                    drops = _otelpipe_drops(metrics, signal, item)
            facts: list[accounting.TraceFacts] = []
            for stream in streams:
                facts += accounting.acked_trace_facts(stream.unit_infos, stream.acked_units, required, bit)
            exported = int(sink_items.get(signal, 0)) + (int(sink_items.get("loki", 0)) if signal == "logs" else 0)
            acc = accounting.account(
                signal,
                counts,
                exported,
                drops,
                daemon_accepted,
                facts,
                ids if final and load.accounting == "full" else None,
                on_purpose,
                discard=load.accounting == "discard",
            )
            if self.target != "otelpipe":
                # The peer's drop counters are not mapped: only the id checks and exported counts are compared.
                acc.problems = [x for x in acc.problems if "lost" not in x and "more items" not in x]
            r["problems"] += acc.problems
            accounts[signal] = asdict(acc)
        r["accounts"] = accounts
        r["latency"] = {
            "traces": latency_summary(final.span_latency_ms if final else []),
            "logs": latency_summary(final.log_latency_ms if final else []),
        }
        r["pii_leaks"] = int(final.stats.get("pii_leaks", 0)) if final else None
        if load.scan_pii and r["pii_leaks"]:
            r["problems"].append(f"{r['pii_leaks']} exported requests carried a value of the PII vocabulary")
        self._cpu_and_memory(streams, rss0)

    def _cpu_and_memory(self, streams: list[loadgen.StreamResult], rss0: int) -> None:
        r, s = self.result, self.settings
        accepted_spans = sum(a["accepted"] for k, a in r["accounts"].items() if k == "traces")
        accepted_items = sum(a["accepted"] for a in r["accounts"].values())
        cpu = r.get("daemon_cpu_seconds") or 0.0
        has_spans = "traces" in r["accounts"]
        r["spans_per_cpu_second"] = round(accepted_spans / cpu) if cpu > 0 and has_spans else None
        r["items_per_cpu_second"] = round(accepted_items / cpu) if cpu > 0 else None
        # The steady window: after warm-up, before the load ends; spans accepted per CPU-second in it.
        warm = self.scenario.load.warmup_s
        window = [x for x in self.samples if "cpu_s" in x and "accepted_spans" in x and warm <= x["t"] <= s.duration_s]
        if len(window) >= 2 and window[-1]["cpu_s"] > window[0]["cpu_s"]:
            a, b = window[0], window[-1]
            r["window_spans_per_cpu_second"] = round(
                (b["accepted_spans"] - a["accepted_spans"]) / (b["cpu_s"] - a["cpu_s"])
            )
            r["window_cpu_utilisation"] = round((b["cpu_s"] - a["cpu_s"]) / (b["t"] - a["t"]), 3)
            r["window_accepted_spans_per_s"] = round((b["accepted_spans"] - a["accepted_spans"]) / (b["t"] - a["t"]))
        rss = [x["rss"] for x in self.samples if "rss" in x]
        steady = sorted(x["rss"] for x in window) if window else sorted(rss)
        r["baseline_rss_bytes"] = rss0
        r["peak_rss_bytes"] = max(rss, default=None)
        r["steady_rss_bytes"] = steady[len(steady) // 2] if steady else None
        # Only where buffered spans are what the daemon holds (tail sampling's decision wait): a batch processor's
        # few thousand pending items beside the caches and gRPC buffers would give a meaningless figure.
        per_span = sorted(
            (x["rss"] - rss0) / x["buffered_items"] for x in window if x.get("buffered_items", 0) >= MEANINGFUL_BUFFER
        )
        r["rss_bytes_per_buffered_span"] = round(per_span[len(per_span) // 2]) if per_span else None
        limit = self.scenario.load.max_peak_rss_mib
        if limit and r["peak_rss_bytes"] and r["peak_rss_bytes"] > limit << 20:
            r["problems"].append(
                f"peak RSS {r['peak_rss_bytes'] >> 20} MiB is over the scenario's bound of {limit} MiB"
            )
        elapsed = max((x.elapsed_s for x in streams), default=0.0)
        r["load"] = {
            "mode": s.mode,
            "rate_spans_per_s": s.rate_spans_per_s if s.mode == "rate" else None,
            "duration_s": s.duration_s,
            "streams": [
                {
                    "index": x.index,
                    "transport": x.transport,
                    "cpu_seconds": round(x.cpu_seconds, 3),
                    "cpu_utilisation": round(x.cpu_seconds / x.elapsed_s, 3) if x.elapsed_s else None,
                    "status_codes": x.status_codes,
                }
                for x in streams
            ],
            "generator_cpu_seconds": round(sum(x.cpu_seconds for x in streams), 3),
            "elapsed_s": round(elapsed, 3),
        }
        r["timeseries"] = {
            "samples": self.samples,
            "load_per_second": {
                signal: {
                    outcome: _merge_series(streams, signal, outcome) for outcome in ("offered", "acked", "refused")
                }
                for signal in ("traces", "logs")
            },
        }


def _split_ids(blob: bytes) -> list[bytes]:
    return [blob[i : i + 16] for i in range(0, len(blob), 16)]


def _merge_counts(streams: list[loadgen.StreamResult], signal: str) -> accounting.LoadCounts:
    total: dict[str, int] = dict.fromkeys(loadgen.OUTCOMES, 0)
    for stream in streams:
        for outcome, n in stream.counts.get(signal, {}).items():
            total[outcome] += n
    return accounting.LoadCounts(**total)


def _merge_series(streams: list[loadgen.StreamResult], signal: str, outcome: str) -> dict[str, int]:
    merged: dict[int, int] = {}
    for stream in streams:
        for second, n in stream.per_second.get(signal, {}).get(outcome, {}).items():
            merged[second] = merged.get(second, 0) + n
    return {str(k): merged[k] for k in sorted(merged)}


def _otelpipe_drops(metrics: list[promtext.Sample], signal: str, item: str) -> dict[str, int]:
    """Drop counters of one signal by reason: processors' (by otel_signal) plus exporters'."""
    drops = promtext.by_label(metrics, "otelpipe_processor_dropped_items", "reason", otel_signal=signal)
    for reason, n in promtext.by_label(metrics, f"otelpipe_exporter_dropped_{item}", "reason").items():
        drops[reason] = drops.get(reason, 0) + n
    return {reason: int(n) for reason, n in drops.items()}


def run_target(
    scenario: Scenario, target: str, settings: RunSettings, progress: Progress | None = None
) -> dict[str, Any]:
    """Run ``scenario`` against ``target`` ("otelpipe" or "otelcol"); the result is plain data for the report."""
    if target == "otelcol" and find_otelcol() is None:
        return {"target": target, "absent": absent_reason(), "problems": []}
    return TargetRun(scenario, target, settings, progress).execute()
