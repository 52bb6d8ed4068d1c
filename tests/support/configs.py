"""TOML pieces that tests put around the component they are about."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def pipelines(exporter: str, processors: Sequence[str] = (), signals: Sequence[str] = ("traces", "logs")) -> str:
    """A pipeline per signal from the otlp receiver through ``processors`` to ``exporter``."""
    chain = ", ".join(f'"{p}"' for p in processors)
    return "".join(
        f'\n[pipelines.{signal}]\nreceivers = ["otlp"]\nprocessors = [{chain}]\nexporters = ["{exporter}"]\n'
        for signal in signals
    )


def file_pipelines(out: Path, processors: Sequence[str] = ()) -> str:
    """A file exporter writing one JSON-lines file per signal under ``out``, and traces and logs pipelines through
    ``processors`` to it: the rest of a Daemon body for tests that read what came out."""
    return f'''
[exporters.file]
path = "{out}/{{signal}}.jsonl"
format = "json"
flush_interval_ms = 50
{pipelines("file", processors)}'''


def nop_pipelines(processors: Sequence[str], signals: Sequence[str] = ("traces", "logs")) -> str:
    """An otlp receiver on an ephemeral gRPC port (no HTTP), a nop exporter and a pipeline per signal through
    ``processors``: the rest of a config for tests that only load it."""
    head = '\n[receivers.otlp]\ngrpc_endpoint = "127.0.0.1:0"\nhttp_endpoint = ""\n[exporters.nop]\n'
    return head + pipelines("nop", processors, signals)
