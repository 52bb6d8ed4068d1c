"""The reference collector's YAML generated from the scenarios' TOML."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import peers, scenario
from bench.peer_config import PeerConfigError, generate, to_yaml

ENV = {
    "BENCH_GRPC_ENDPOINT": "127.0.0.1:14317",
    "BENCH_HTTP_ENDPOINT": "127.0.0.1:14318",
    "BENCH_TELEMETRY_ENDPOINT": "127.0.0.1:18888",
    "BENCH_SINK_GRPC": "127.0.0.1:24317",
    "BENCH_SINK_HTTP": "http://127.0.0.1:24318",
}


def test_standard_maps_every_component() -> None:
    tree = scenario.load("standard").config_tree(ENV)
    peer = generate(tree, "127.0.0.1", 18888)
    cfg = peer.config
    assert cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "127.0.0.1:14317"
    ts = cfg["processors"]["tail_sampling"]
    assert ts["decision_wait"] == "2000ms"
    assert [p["type"] for p in ts["policies"]] == ["status_code", "latency", "probabilistic"]
    assert ts["policies"][1]["latency"] == {"threshold_ms": 1000}
    assert "redaction" in cfg["processors"]
    assert any("redaction" in n for n in peer.notes)
    assert cfg["exporters"]["otlp/jaeger"]["endpoint"] == "127.0.0.1:24317"
    assert cfg["service"]["pipelines"]["traces"]["processors"] == [
        "memory_limiter",
        "tail_sampling",
        "redaction",
        "batch",
    ]


def test_unmapped_components_are_refused() -> None:
    with pytest.raises(PeerConfigError, match="spam"):
        generate({"processors": {"spam": {}}}, "127.0.0.1", 1)


def test_yaml_shapes() -> None:
    text = to_yaml({"a": {"b": [1, "x"], "c": [{"d": True, "e": "f"}]}, "g": {}})
    assert text == 'a:\n  b:\n    - 1\n    - "x"\n  c:\n    - d: true\n      e: "f"\ng: {}'


@pytest.mark.parametrize("name", scenario.available())
def test_peer_accepts_the_generated_config(name: str, tmp_path: Path) -> None:
    binary = peers.find_otelcol()
    if binary is None:
        pytest.skip(peers.absent_reason())
    path = tmp_path / "peer.yaml"
    path.write_text(generate(scenario.load(name).config_tree(ENV), "127.0.0.1", 18888).yaml())
    out = subprocess.run(
        [str(binary), "validate", "--config", f"file:{path}"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
