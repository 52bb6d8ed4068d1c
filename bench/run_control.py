"""Starting and stopping what one benchmark run needs (a part of runner.TargetRun, over run_state.RunState).

Ports; the protocol sinks (a process on the load core); the daemon under test, otelpipe or the reference collector
with its YAML generated from the scenario, in its own session, pinned, waited for until ready; the load generators
(processes on the load core), which build their units before the clock starts. At the end: the sinks' final
records and the daemon's SIGTERM; a daemon that exits early is reported as crashed with its log's tail. Everything
started is registered with ``procs.Cleanup`` before it can fail (runner.py closes it in a ``finally``).
"""

from __future__ import annotations

import os
import queue
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec

from bench import loadgen, procs, sinks
from bench.peer_config import PeerConfigError, generate
from bench.peers import absent_reason, find_otelcol
from bench.run_state import RunState
from bench.workload import PII_VALUES


class ProcessControl(RunState):
    """Start and stop the sinks, the daemon and the generators of one run."""

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

    def _crashed(self, when: str) -> None:
        self.result["crashed"] = True
        self.result["exit_code"] = self.daemon.returncode
        self.result["problems"].append(
            f"the {self.target} daemon exited with code {self.daemon.returncode} {when}; "
            f"log tail:\n{procs.tail(self.log)}"
        )

    # ---------------------------------------------------------------- stop
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
