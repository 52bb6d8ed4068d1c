"""The reference collector (otelcol-contrib) as a benchmark peer: where its binary lives and how to find it.

The binary is built from ``manifest.yaml`` by ``python -m bench.peers`` (see ``bench/peers/build.py``) into a
per-user cache, never into the repository. Its directory name carries the collector version and a hash of the
manifest, so changing a component or version in the manifest makes the old binary invisible instead of silently
reusing it.

``find_otelcol()`` is the one helper tests and the harness use; ``OTELPIPE_OTELCOL`` points it at a binary
built elsewhere (for example an official otelcol-contrib release).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

MANIFEST = Path(__file__).with_name("manifest.yaml")
BINARY_NAME = "otelcol-contrib"
ENV_OVERRIDE = "OTELPIPE_OTELCOL"
BUILDER_MODULE = "go.opentelemetry.io/collector/cmd/builder"

_DIST_VERSION = re.compile(r"^dist:\s*$(?:\n[ \t]+.*$)*?\n[ \t]+version:\s*([0-9][^\s#]*)", re.MULTILINE)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/otelpipe/peers``, by default ``~/.cache/otelpipe/peers``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "otelpipe" / "peers"


def manifest_version(text: str | None = None) -> str:
    """The collector release the manifest pins (``dist.version``); the builder is installed at the same one."""
    match = _DIST_VERSION.search(MANIFEST.read_text() if text is None else text)
    if match is None:
        raise ValueError(f"{MANIFEST}: no dist.version found")
    return match.group(1)


def build_dir(text: str | None = None) -> Path:
    """The cache directory of the binary built from this manifest (which may not exist yet)."""
    text = MANIFEST.read_text() if text is None else text
    # Comments and blank lines do not change the binary, so they do not change its directory either.
    meaningful = [line.split("#", 1)[0].rstrip() for line in text.splitlines()]
    digest = hashlib.sha256("\n".join(line for line in meaningful if line).encode()).hexdigest()[:12]
    return cache_root() / f"{BINARY_NAME}-{manifest_version(text)}-{digest}"


def find_otelcol() -> Path | None:
    """The reference collector binary, or None when it has not been built (callers say so plainly)."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        path = Path(override)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    path = build_dir() / BINARY_NAME
    return path if path.is_file() and os.access(path, os.X_OK) else None


def absent_reason() -> str:
    """One sentence for reports and skipped tests when ``find_otelcol()`` is None."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return f"{ENV_OVERRIDE}={override} is not an executable file"
    return (
        f"the reference collector is not built (expected {build_dir() / BINARY_NAME}); "
        "build it with `python -m bench.peers` (needs Go and the Go module proxy)"
    )
