"""Build otelcol-contrib from ``manifest.yaml`` with the official OpenTelemetry Collector builder (ocb).

    python -m bench.peers [--force] [--where]

Idempotent: when the binary for this manifest is already in the cache it only prints where it is. Otherwise it
installs the builder at the manifest's collector release (``go install``), runs it in a work directory under the
cache (it downloads modules through the Go module proxy and compiles: 10-30 minutes on 2 cores), moves the binary
into place atomically and records the build time and version in ``build-info.json`` beside it. A lock file keeps
two concurrent invocations from building twice.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.peers import BINARY_NAME, BUILDER_MODULE, MANIFEST, build_dir, cache_root, find_otelcol, manifest_version


class PeerBuildError(Exception):
    """The peer could not be built; the message says why and what to do."""


Say = Callable[[str], None]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def go_binary() -> str:
    go = shutil.which("go")
    if go is None:
        raise PeerBuildError(
            "Go is not installed or not on PATH: the reference collector is built from Go modules with the "
            "OpenTelemetry Collector builder. Install Go (1.24 or newer, e.g. `apt-get install golang`) and run "
            "`python -m bench.peers` again."
        )
    return go


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path, what: str) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        rc = subprocess.call(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise PeerBuildError(f"{what} failed (exit {rc}); last lines of {log}:\n" + "\n".join(tail))


def install_builder(go: str, version: str, env: dict[str, str], log: Path, say: Say) -> Path:
    """The builder at the manifest's release, cached; ocb refuses component versions it does not match."""
    tools = cache_root() / "tools"
    builder = tools / f"builder-v{version}"
    if builder.is_file():
        return builder
    say(f"installing {BUILDER_MODULE}@v{version}")
    gobin = tools / f".gobin-{os.getpid()}"
    gobin.mkdir(parents=True, exist_ok=True)
    try:
        _run(
            [go, "install", f"{BUILDER_MODULE}@v{version}"],
            cwd=tools,
            env={**env, "GOBIN": str(gobin)},
            log=log,
            what="installing the collector builder",
        )
        os.replace(gobin / "builder", builder)
    finally:
        shutil.rmtree(gobin, ignore_errors=True)
    return builder


def binary_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    return (out.stdout or out.stderr).strip()


def build(force: bool = False, say: Say = _say) -> Path:
    """Build (or find) the peer binary and return its path; raises PeerBuildError with the reason."""
    existing = find_otelcol()
    if existing is not None and not force:
        say(f"{BINARY_NAME} is already built: {existing}")
        return existing
    go = go_binary()
    text = MANIFEST.read_text()
    version = manifest_version(text)
    target = build_dir(text)
    with _lock(cache_root() / ".build.lock"):
        if (target / BINARY_NAME).is_file() and not force:  # built by a concurrent invocation meanwhile
            return target / BINARY_NAME
        work = cache_root() / f"work-{target.name}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        log = work / "build.log"
        env = dict(os.environ)
        env.setdefault("CGO_ENABLED", "0")
        started = time.monotonic()
        builder = install_builder(go, version, env, log, say)
        (work / "manifest.yaml").write_text(text)
        say(f"building {BINARY_NAME} {version} in {work} (log: {log}); this takes 10-30 minutes on 2 cores")
        # nice: the build shares the machine's cores with whoever else is working on it.
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        _run(
            [*nice, str(builder), "--config", "manifest.yaml", "--ldflags", "-s -w"],
            cwd=work,
            env=env,
            log=log,
            what="the collector builder",
        )
        built = work / "build" / BINARY_NAME
        if not built.is_file():
            raise PeerBuildError(f"the builder finished but {built} is missing; see {log}")
        target.mkdir(parents=True, exist_ok=True)
        staging = target / f".{BINARY_NAME}.tmp"
        shutil.copy2(built, staging)
        os.replace(staging, target / BINARY_NAME)
        seconds = round(time.monotonic() - started, 1)
        go_version = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout.strip()
        info = {
            "binary": str(target / BINARY_NAME),
            "version": binary_version(target / BINARY_NAME),
            "collector_release": version,
            "build_seconds": seconds,
            "go": go_version,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (target / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
        shutil.rmtree(work, ignore_errors=True)
        say(f"built {info['version']} in {seconds:.0f} s: {target / BINARY_NAME}")
        return target / BINARY_NAME


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="rebuild even when the binary is cached")
    ap.add_argument("--where", action="store_true", help="print the binary's path (exit 1 if not built) and stop")
    args = ap.parse_args(argv)
    if args.where:
        found = find_otelcol()
        print(found if found is not None else f"not built (would be {build_dir() / BINARY_NAME})")
        return 0 if found is not None else 1
    try:
        path = build(force=args.force)
    except PeerBuildError as exc:
        _say(f"bench.peers: {exc}")
        return 1
    print(path)
    return 0
