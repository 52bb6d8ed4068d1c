"""bench.peers: the manifest, the one helper that finds the binary, and a clear failure without Go."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bench import peers
from bench.peers import build


def test_manifest_pins_one_release_and_lists_the_components() -> None:
    text = peers.MANIFEST.read_text()
    for module in (
        "receiver/otlpreceiver",
        "receiver/jaegerreceiver",
        "processor/tailsamplingprocessor",
        "processor/redactionprocessor",
        "processor/batchprocessor",
        "processor/memorylimiterprocessor",
        "connector/spanmetricsconnector",
        "exporter/otlpexporter",
        "exporter/otlphttpexporter",
        "exporter/prometheusremotewriteexporter",
        "exporter/fileexporter",
        "exporter/debugexporter",
    ):
        assert re.search(rf"^\s+- gomod: \S+/{module} v", text, re.MULTILINE), module
    release = peers.manifest_version()
    versions = set(re.findall(r"^\s+- gomod: \S+ v(\S+)", text, re.MULTILINE))
    # Components at the release, providers at its stable (v1) twin: nothing else.
    assert versions - {release}
    assert all(v == release or v.startswith("1.") for v in versions)


def test_comments_do_not_change_the_cache_directory() -> None:
    text = peers.MANIFEST.read_text()
    assert peers.build_dir(text) == peers.build_dir("# a new comment\n" + text + "\n\n")
    assert peers.build_dir(text) != peers.build_dir(text.replace("nopexporter", "zipkinexporter"))


def test_find_otelcol_honours_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "otelcol-contrib"
    binary.write_text("#!/bin/sh\necho otelcol-contrib version 0.0.0\n")
    monkeypatch.setenv(peers.ENV_OVERRIDE, str(binary))
    assert peers.find_otelcol() is None  # not executable yet
    assert "not an executable file" in peers.absent_reason()
    binary.chmod(0o755)
    assert peers.find_otelcol() == binary


def test_cache_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(peers.ENV_OVERRIDE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert peers.cache_root() == tmp_path / "otelpipe" / "peers"
    assert peers.find_otelcol() is None
    assert "python -m bench.peers" in peers.absent_reason()


def test_build_without_go_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(peers.ENV_OVERRIDE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(build.PeerBuildError, match="Go is not installed"):
        build.build(say=lambda _: None)
    assert build.main(["--where"]) == 1


def test_built_peer_runs() -> None:
    binary = peers.find_otelcol()
    if binary is None:
        pytest.skip(peers.absent_reason())
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert peers.manifest_version() in out.stdout
    components = subprocess.run([str(binary), "components"], capture_output=True, text=True, timeout=60, check=True)
    for name in ("tail_sampling", "redaction", "spanmetrics", "prometheusremotewrite", "jaeger", "nop"):
        assert name in components.stdout
