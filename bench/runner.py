"""One benchmark run against one target (otelpipe, or the reference collector), from start to cleanup.

    sinks (process, load core) -> daemon (subprocess, own session, pinned to the daemon core) -> ready
    -> generators (processes, load core) build their units -> start together -> monitor every second
       (daemon CPU and RSS from /proc, its /metrics, the sinks' counters) -> load ends
    -> drain: wait until the daemon holds nothing (processors balanced, queues empty, sinks idle)
    -> final /metrics and sink records -> SIGTERM -> accounting -> cleanup of every process and port

Everything started is registered with ``procs.Cleanup`` before it can fail, and ``close()`` runs in a
``finally``; a daemon that exits during the run ends the load early and is reported as crashed with its log's
tail, never as a hang.

TargetRun is put together from its parts, over one state (run_state.py: RunSettings and RunState): starting and
stopping processes (run_control.py), what is sampled every second (run_sampling.py) and the result
(run_result.py). This module holds the run's sequence: the load, the drain, ``execute``.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from typing import Any

from bench import loadgen, procs
from bench.peer_config import PeerConfigError
from bench.peers import absent_reason, find_otelcol
from bench.procstat import cpu_seconds, rss_bytes
from bench.run_control import ProcessControl
from bench.run_result import ResultAssembly
from bench.run_sampling import SAMPLE_INTERVAL_S, Sampling, loadavg, machine_busy_seconds
from bench.run_state import Progress, RunSettings
from bench.scenario import Scenario

__all__ = ["Progress", "RunSettings", "TargetRun", "run_target"]


class TargetRun(ProcessControl, Sampling, ResultAssembly):
    """State of one run; ``execute()`` returns the result as plain data for the report."""

    # ---------------------------------------------------------------- measure
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


def run_target(
    scenario: Scenario, target: str, settings: RunSettings, progress: Progress | None = None
) -> dict[str, Any]:
    """Run ``scenario`` against ``target`` ("otelpipe" or "otelcol"); the result is plain data for the report."""
    if target == "otelcol" and find_otelcol() is None:
        return {"target": target, "absent": absent_reason(), "problems": []}
    return TargetRun(scenario, target, settings, progress).execute()
