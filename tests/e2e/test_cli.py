"""The ``otelpipe`` command line: validate, version, and a run that must fail before opening any port."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import __version__
from pipeline.cli import main
from pipeline.compiled import MODULES


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    # The source tree (an editable install) runs nothing compiled; tests/processors/pii/test_compiled.py checks
    # the line for a compiled build.
    expected = [f"otelpipe {__version__}", f"compiled with mypyc: none (0 of {len(MODULES)})"]
    assert main(["version"]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    out = subprocess.run([sys.executable, "-m", "pipeline", "version"], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == expected


def test_validate_ok_on_the_embedded_default(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", "-c", "config/default.toml"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


BAD = """
[service]
log_format = "xml"
[receivers.otlp]
max_recv_bytes = -1
grpc_endpoint = "127.0.0.1:{port}"
[exporters."otlp/backup"]
endpoint = "localhost:4317"
timeout_ms = 0
[exporters.file]
path = "/tmp/x.pb"
format = "proto"
[pipelines.traces]
receivers = ["otlp"]
exporters = ["otlp/backup", "jaeger"]
"""


def test_validate_prints_every_error_with_its_full_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(BAD.format(port=4317))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", "-c", str(cfg)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    for key in (
        "service.log_format:",
        "receivers.otlp.max_recv_bytes:",
        'exporters."otlp/backup".timeout_ms:',
        "pipelines.traces.exporters[1]:",
    ):
        assert key in proc.stderr, proc.stderr
    assert "configuration is valid" not in proc.stdout


def test_run_with_invalid_config_exits_1_without_serving(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(BAD.format(port=0))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "-c", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "service.log_format:" in proc.stderr
    assert "listening" not in proc.stderr.lower()


def test_several_files_merge_in_order(tmp_path: Path) -> None:
    base = tmp_path / "a.toml"
    base.write_text(
        '[receivers.otlp]\ngrpc_endpoint = "127.0.0.1:0"\nhttp_endpoint = ""\n[exporters.nop]\n'
        '[pipelines.traces]\nreceivers = ["otlp"]\nexporters = ["nop"]\n'
    )
    override = tmp_path / "b.toml"
    override.write_text('[service]\nlog_format = "xml"\n')
    assert main(["validate", "-c", str(base)]) == 0
    assert main(["validate", "-c", str(base), "-c", str(override)]) == 1
