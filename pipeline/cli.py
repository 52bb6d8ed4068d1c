"""The ``otelpipe`` command (also ``python -m pipeline``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from config.loader import format_errors, load_config
from config.model import Config
from pipeline import __version__
from pipeline.component import Registry
from pipeline.components import default_registry
from pipeline.errors import ConfigError
from pipeline.tools import tools


def default_config_path() -> Path:
    """The embedded config/default.toml: OTLP on localhost into the debug exporter, no backend needed."""
    return Path(str(resources.files("config").joinpath("default.toml")))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otelpipe", description="OpenTelemetry pipeline daemon")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon")
    validate = sub.add_parser("validate", help="check configuration files and exit (0 = valid)")
    for sp in (run, validate):
        sp.add_argument(
            "-c",
            "--config",
            action="append",
            type=Path,
            default=[],
            metavar="FILE",
            help="TOML config file; repeat to merge several in order (run: defaults to the embedded default)",
        )
    sub.add_parser("version", help="print the version")
    for tool in tools():
        tool.configure(sub.add_parser(tool.NAME, help=tool.HELP, description=tool.HELP))
    return p


def _load(paths: Sequence[Path], registry: Registry) -> Config:
    from pipeline import graph
    from pipeline.telemetry.health import HealthRegistry
    from pipeline.telemetry.metrics import SelfMetrics

    config = load_config(paths, registry)
    # Factories check what only they can see (e.g. the file exporter's {signal} rule); nothing is started.
    graph.build(config, registry, SelfMetrics(process_metrics=False), HealthRegistry())
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        from pipeline.compiled import MODULES, compiled

        print(f"otelpipe {__version__}")
        native = compiled()
        print(f"compiled with mypyc: {', '.join(native) if native else 'none'} ({len(native)} of {len(MODULES)})")
        return 0
    registry = default_registry()
    for tool in tools():
        if args.command == tool.NAME:
            code: int = tool.run(args, registry)
            return code
    paths: list[Path] = args.config or ([default_config_path()] if args.command == "run" else [])
    if not paths:
        print("otelpipe validate: give at least one -c FILE", file=sys.stderr)
        return 2
    try:
        config = _load(paths, registry)
    except ConfigError as exc:
        print(format_errors(exc), file=sys.stderr)
        return 1
    if args.command == "validate":
        for w in config.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"configuration is valid: {len(config.pipelines)} pipelines")
        return 0
    from pipeline.service import run_service

    return run_service(paths, registry, config)


if __name__ == "__main__":
    sys.exit(main())
