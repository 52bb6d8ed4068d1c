"""Cross-table checks not covered by the case files: endpoint overlap rules, ambiguous ids, longer cycles."""

from __future__ import annotations

import pytest

from config.checks import _listen_address
from config.loader import load_config_text
from pipeline.component import Factory, Kind
from pipeline.errors import ConfigError
from tests.config import fakes


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("127.0.0.1:4317", "127.0.0.1:4317", True),
        ("localhost:4317", "127.0.0.1:4317", True),
        ("LOCALHOST:4317", "[::1]:4317", True),
        ("0.0.0.0:4317", "10.0.0.5:4317", True),
        (":4317", "127.0.0.1:4317", True),
        ("[::]:4317", "127.0.0.1:4317", True),
        ("[::0001]:4317", "[::1]:4317", True),
        ("http://127.0.0.1:4318/v1", "127.0.0.1:4318", True),
        ("127.0.0.1:4317", "127.0.0.2:4317", False),
        ("127.0.0.1:4317", "127.0.0.1:4318", False),
        ("0.0.0.0:0", "0.0.0.0:0", False),
        ("", "", False),
        ("not-an-endpoint", "not-an-endpoint", False),
    ],
)
def test_listen_address_overlap(a: str, b: str, overlap: bool) -> None:
    first, second = _listen_address(a), _listen_address(b)
    overlaps = (
        first is not None
        and second is not None
        and first[1] == second[1]
        and (first[0] is None or second[0] is None or bool(first[0] & second[0]))
    )
    assert overlaps is overlap


def test_disabled_endpoints_never_conflict() -> None:
    text = """
    [service]
    telemetry_endpoint = ""
    [receivers.otlp]
    grpc_endpoint = ""
    http_endpoint = "127.0.0.1:4318"
    [receivers."otlp/b"]
    grpc_endpoint = ""
    http_endpoint = "127.0.0.1:4319"
    [exporters.jaeger]
    [pipelines.traces]
    receivers = ["otlp", "otlp/b"]
    exporters = ["jaeger"]
    """
    config = load_config_text([("a.toml", text)], fakes.registry(), env={})
    assert len(config.of(Kind.RECEIVER)) == 2


def test_unused_receivers_bind_nothing_so_do_not_conflict() -> None:
    text = """
    [receivers.otlp]
    [receivers."otlp/spare"]
    [exporters.jaeger]
    [pipelines.traces]
    receivers = ["otlp"]
    exporters = ["jaeger"]
    """
    config = load_config_text([("a.toml", text)], fakes.registry(), env={})
    assert config.warnings == ('receivers."otlp/spare": defined but not used by any pipeline',)


def test_a_connector_id_shared_with_a_receiver_is_ambiguous() -> None:
    registry = fakes.registry()
    registry.register(Factory(Kind.RECEIVER, "forward", fakes.ForwardConfig, fakes.create, fakes.ALL))
    text = """
    [receivers.forward]
    [connectors.forward]
    [exporters.jaeger]
    [pipelines.traces]
    receivers = ["forward"]
    exporters = ["jaeger"]
    """

    with pytest.raises(ConfigError) as caught:
        load_config_text([("a.toml", text)], registry, env={})

    # The pipeline's reference cannot be resolved, but is not reported a second time.
    assert caught.value.errors == (
        "connectors.forward: ambiguous id: [receivers.forward] is also defined, "
        "so pipelines could not tell them apart (rename one)",
    )


def test_a_cycle_through_three_pipelines_is_reported_once() -> None:
    text = """
    [receivers.otlp]
    [exporters.loki]
    [connectors."forward/1"]
    [connectors."forward/2"]
    [connectors."forward/3"]
    [pipelines."logs/c"]
    receivers = ["forward/2"]
    exporters = ["forward/3"]
    [pipelines."logs/a"]
    receivers = ["otlp", "forward/3"]
    exporters = ["loki", "forward/1"]
    [pipelines."logs/b"]
    receivers = ["forward/1"]
    exporters = ["forward/2"]
    """

    with pytest.raises(ConfigError) as caught:
        load_config_text([("a.toml", text)], fakes.registry(), env={})

    assert caught.value.errors == (
        'pipelines."logs/c": pipelines form a cycle through connectors: '
        "logs/c -> [forward/3] -> logs/a -> [forward/1] -> logs/b -> [forward/2] -> logs/c",
    )


def test_connector_outputs_route_per_signal_not_to_every_receiving_pipeline() -> None:
    # forward turns traces into traces and logs into logs: used by a traces and a logs pipeline on each side,
    # every input has a matching output pipeline, so this is valid (as in the collector).
    text = """
    [receivers.otlp]
    [exporters.jaeger]
    [exporters.loki]
    [connectors.forward]
    [pipelines.traces]
    receivers = ["otlp"]
    exporters = ["forward"]
    [pipelines.logs]
    receivers = ["otlp"]
    exporters = ["forward"]
    [pipelines."traces/out"]
    receivers = ["forward"]
    exporters = ["jaeger"]
    [pipelines."logs/out"]
    receivers = ["forward"]
    exporters = ["loki"]
    """
    config = load_config_text([("a.toml", text)], fakes.registry(), env={})
    assert len(config.pipelines) == 4
