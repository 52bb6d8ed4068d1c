"""Machine facts written into every report."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def machine_facts() -> dict[str, Any]:
    from google.protobuf.internal import api_implementation

    from pipeline.compiled import MODULES, compiled

    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "protobuf_backend": api_implementation.Type(),
        "versions": {d: _version(d) for d in ("otelpipe", "grpcio", "protobuf", "aiohttp", "uvloop", "msgspec")},
        # The modules a regular install compiles with mypyc (setup.py) that this run imports compiled; the daemon
        # is started from the same path, so it runs the same build.
        "compiled": compiled(),
        "compilable": len(MODULES),
    }


def build_note(facts: dict[str, Any]) -> str:
    """How the PII hot path ran, for a report's machine line: compiled with mypyc or as Python source."""
    done = facts.get("compiled")
    if done is None:
        return "build not recorded"
    if not done:
        return "Python source (not compiled)"
    return f"mypyc-compiled ({len(done)} of {facts.get('compilable')} hot-path modules)"
