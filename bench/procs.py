"""Processes and ports the harness starts, and the guarantee that it stops every one of them.

``Cleanup`` records each child as it is started (the daemon in its own session, so its whole process group can
be killed; multiprocessing children by handle) and each port handed out; ``close()`` terminates what is still
running (SIGTERM, then SIGKILL after a grace period) and reports which ports are still bound. It runs from a
``finally``, so a crashed daemon, a failed generator or a Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    """True while something listens on (or holds) the port; TIME_WAIT leftovers of closed connections do not
    count, as servers (the daemon's included) bind with SO_REUSEADDR."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def pin_to(cpu: int | None) -> Callable[[], None] | None:
    """A preexec_fn pinning the child to ``cpu`` (None, or a one-core machine: no pinning)."""
    if cpu is None or not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) <= cpu:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


class DaemonExited(Exception):
    """The daemon under test exited while the harness still needed it."""


@dataclass
class Cleanup:
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)
    children: list[Any] = field(default_factory=list)  # multiprocessing.Process
    ports: list[int] = field(default_factory=list)
    grace_s: float = 10.0

    def port(self) -> int:
        p = free_port()
        self.ports.append(p)
        return p

    def start_daemon(self, argv: list[str], env: dict[str, str], log: Path, cpu: int | None) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=pin_to(cpu)
            )
        self.daemons.append(proc)
        return proc

    def close(self) -> list[int]:
        """Stop everything; returns the ports still in use afterwards (should be empty)."""
        for proc in self.daemons:
            _stop_group(proc, self.grace_s)
        for child in self.children:
            if child.is_alive():
                child.terminate()
                child.join(self.grace_s)
            if child.is_alive():
                child.kill()
                child.join(5)
        deadline = time.monotonic() + 5.0
        busy = [p for p in self.ports if port_in_use(p)]
        while busy and time.monotonic() < deadline:
            time.sleep(0.1)  # a killed process's sockets close asynchronously; poll briefly
            busy = [p for p in busy if port_in_use(p)]
        return busy


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    # Whatever the daemon left in its group (it should be nothing) goes too.
    _signal_group(proc, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(5)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return bool(200 <= r.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(
    predicate: Callable[[], bool], proc: subprocess.Popen[bytes], timeout_s: float, what: str, log: Path
) -> None:
    """Poll until ``predicate`` holds; DaemonExited (with the log's tail) if ``proc`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DaemonExited(f"exited with code {proc.returncode} before {what}:\n{tail(log)}")
        if predicate():
            return
        time.sleep(0.05)
    raise DaemonExited(f"not {what} after {timeout_s:.0f} s:\n{tail(log)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
