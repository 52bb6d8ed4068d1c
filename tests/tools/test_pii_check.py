"""``otelpipe pii-check``: exit 0 for a safe configuration, 1 when a default detector leaks (or no pii processor
is configured), 2 for an invalid configuration; leaks and wrong masks are printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main

PIPELINES = """
[receivers.otlp]
[exporters.nop]
[pipelines.traces]
receivers = ["otlp"]
processors = [{processors}]
exporters = ["nop"]
"""


def _config(tmp_path: Path, processors: str, tables: str) -> Path:
    path = tmp_path / "otelpipe.toml"
    path.write_text(tables + PIPELINES.format(processors=processors))
    return path


def test_default_configuration_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["pii-check", "-c", str(_config(tmp_path, '"pii"', "[processors.pii]\n"))])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "processors.pii:" in out
    assert "leaks: none" in out
    assert "masked wrongly: none" in out


def test_a_disabled_detector_leaks_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = '[processors.pii]\ndetectors = ["email", "credit_card", "us_ssn", "ipv4", "ipv6", "jwt", "iban"]\n'
    code = main(["pii-check", "-c", str(_config(tmp_path, '"pii"', tables))])
    out = capsys.readouterr().out
    assert code == 1
    assert "(detector not enabled)" in out
    assert "phone" in out
    assert "credentials" in out
    assert "email " not in out.split("leaks:")[1].split("masked wrongly")[0]


def test_an_ignored_key_that_hides_a_secret_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = '[processors.pii]\nignored_keys = ["app.*"]\n'
    code = main(["pii-check", "-c", str(_config(tmp_path, '"pii"', tables))])
    out = capsys.readouterr().out
    assert code == 1
    assert "survives in span attribute, event attribute, data point attribute" in out


def test_over_eager_rule_is_reported_as_masked_wrongly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = '[processors.pii]\nrules = [{ name = "uuid", pattern = "[0-9a-f]{8}-[0-9a-f]{4}" }]\n'
    code = main(["pii-check", "-c", str(_config(tmp_path, '"pii"', tables))])
    out = capsys.readouterr().out
    assert code == 0  # masking too much is reported, but leaks alone fail the check
    assert "UUID: '550e8400-e29b-41d4-a716-446655440000' -> span attribute: '[REDACTED:uuid]" in out


def test_no_pii_processor_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["pii-check", "-c", str(_config(tmp_path, "", ""))])
    assert code == 1
    assert "no pii processor" in capsys.readouterr().out


def test_invalid_configuration_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["pii-check", "-c", str(_config(tmp_path, '"pii"', '[processors.pii]\naction = "hash"\n'))])
    assert code == 2
    assert "processors.pii.hash_key: required" in capsys.readouterr().out
