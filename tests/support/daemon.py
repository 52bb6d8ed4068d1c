"""Run the real daemon as a subprocess on free loopback ports, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(predicate: object, timeout_s: float = 20.0, interval_s: float = 0.02, what: str = "condition") -> None:
    """Poll ``predicate`` until it returns true or the deadline passes (no fixed sleeps in tests)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


class Daemon:
    """``with Daemon(tmp_path, body) as d:`` starts ``otelpipe run`` on a config whose receiver and telemetry
    endpoints are filled in; ``body`` is the rest of the TOML (exporters, pipelines)."""

    def __init__(self, workdir: Path, body: str, *, receiver_extra: str = "") -> None:
        self.grpc_port, self.http_port, self.telemetry_port = free_port(), free_port(), free_port()
        self.workdir = workdir
        self.config_path = workdir / "otelpipe.toml"
        self.config_path.write_text(
            f"""
[service]
telemetry_endpoint = "127.0.0.1:{self.telemetry_port}"
log_level = "info"
log_format = "json"
shutdown_timeout_ms = 20000

[receivers.otlp]
grpc_endpoint = "127.0.0.1:{self.grpc_port}"
http_endpoint = "127.0.0.1:{self.http_port}"
{receiver_extra}
{body}
"""
        )
        self.log_path = workdir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Daemon:
        env = dict(os.environ)
        env.pop("OTEL_SDK_DISABLED", None)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "run", "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_until(self._ready, what="daemon readiness")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.telemetry_port}/health/ready", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.telemetry_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def metric(self, name: str) -> float:
        total = 0.0
        for line in self.metrics_text().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
