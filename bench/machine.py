"""Machine facts written into every report."""

from __future__ import annotations

import os
import platform
import time
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
        "speed_reference_ms": speed_reference(),
    }


# A fixed workload shaped like the hot paths: an interpreter loop over bytes (the wire walk, the splice) and an RE2
# scan over a buffer (the bulk passes).
_REFERENCE_TEXT = b"order 7 paid by alice@example.com with 4111 1111 1111 1111 from 10.0.3.7; " * 4000
_REFERENCE_PATTERN = rb"[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]{2,}"


def speed_reference() -> float:
    """CPU milliseconds of a fixed workload, best of three (lower is faster). This machine's speed drifts by up to
    30% within an hour, more than most effects we measure; reports taken at different times can be compared
    through this figure, and two runs only compare well when it is close."""
    import re2  # type: ignore[import-untyped,unused-ignore]

    pattern = re2.compile(_REFERENCE_PATTERN)
    buf = _REFERENCE_TEXT
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        total = 0
        for i in range(len(buf)):
            total += buf[i]
        total += len(pattern.findall(buf))
        best = min(best, time.process_time() - start)
    return round(best * 1e3, 1)


def machine_line(facts: dict[str, Any]) -> str:
    """The opening of every report's machine line (no final full stop): CPU, cores, Python, protobuf backend, how
    the PII hot path ran (compiled with mypyc or as Python source), and the speed reference when recorded. Reads
    with ``get`` so that reports re-rendered from older JSON still render."""
    done = facts.get("compiled")
    if done is None:
        build = "build not recorded"
    elif not done:
        build = "Python source (not compiled)"
    else:
        build = f"mypyc-compiled ({len(done)} of {facts.get('compilable')} modules)"
    line = (
        f"Machine: {facts.get('cpu_model')}, {facts.get('cores')} cores, Python {facts.get('python')}, protobuf "
        f"{facts.get('protobuf_backend')}, PII hot path {build}"
    )
    reference = facts.get("speed_reference_ms")
    return line if reference is None else f"{line}, speed reference {reference} ms (lower is faster)"
