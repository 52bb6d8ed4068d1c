"""load_config / load_config_text end to end: the decoded result, merging, substitution, warnings, reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import format_errors, load_config, load_config_text, merge
from config.model import Config, LogFormat, LogLevel, PipelineConfig, PipelineId, ServiceConfig
from pipeline.component import ComponentId, Kind
from pipeline.errors import ConfigError
from pipeline.model import Signal
from tests.config import fakes

# DESIGN.md section 3, on the fake registry.
FULL = """
[service]
telemetry_endpoint = "127.0.0.1:8888"
log_level = "debug"
log_format = "console"

[receivers.otlp]
grpc_endpoint = "127.0.0.1:4317"
http_endpoint = "127.0.0.1:4318"
max_recv_bytes = 67108864

[processors.memory_limiter]
limit_mib = 1024

[processors.tail_sampling]
decision_wait_ms = 10000
num_traces = 100000
[[processors.tail_sampling.policies]]
name = "errors"
type = "status_code"
status_codes = ["ERROR"]
[[processors.tail_sampling.policies]]
name = "baseline"
type = "probabilistic"
sampling_percentage = 10

[processors.pii]

[processors."batch/fast"]
send_batch_size = 8192
timeout_ms = 200

[connectors.span_metrics]

[exporters.jaeger]
endpoint = "localhost:14317"
protocol = "otlp_grpc"

[exporters.loki]
endpoint = "http://localhost:3100/loki/api/v1/push"

[exporters.prometheus_remote_write]
endpoint = "http://localhost:9090/api/v1/write"

[pipelines.traces]
receivers = ["otlp"]
exporters = ["span_metrics"]

[pipelines."traces/sampled"]
receivers = ["otlp"]
processors = ["memory_limiter", "tail_sampling", "pii", "batch/fast"]
exporters = ["jaeger"]

[pipelines.logs]
receivers = ["otlp"]
processors = ["memory_limiter", "tail_sampling", "pii"]
exporters = ["loki"]

[pipelines.metrics]
receivers = ["otlp", "span_metrics"]
exporters = ["prometheus_remote_write"]
"""

MINIMAL = """
[receivers.otlp]
[exporters.jaeger]
[pipelines.traces]
receivers = ["otlp"]
exporters = ["jaeger"]
"""


def load(*texts: str, env: dict[str, str] | None = None) -> Config:
    named = [(f"{i}.toml", text) for i, text in enumerate(texts)]
    return load_config_text(named, fakes.registry(), env={} if env is None else env)


def errors_of(*texts: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(*texts, env=env)
    return list(caught.value.errors)


def cid(text: str) -> ComponentId:
    return ComponentId.parse(text)


def test_design_example_decodes_into_typed_configs() -> None:
    config = load(FULL)

    assert config.service == ServiceConfig(
        telemetry_endpoint="127.0.0.1:8888", log_level=LogLevel.DEBUG, log_format=LogFormat.CONSOLE
    )
    processors = config.of(Kind.PROCESSOR)
    assert list(processors) == [cid("memory_limiter"), cid("tail_sampling"), cid("pii"), cid("batch/fast")]
    tail = processors[cid("tail_sampling")]
    assert isinstance(tail, fakes.TailSamplingConfig)
    assert tail.policies == [
        fakes.StatusCodePolicy(name="errors", status_codes=[fakes.StatusCode.ERROR]),
        fakes.ProbabilisticPolicy(name="baseline", sampling_percentage=10.0),
    ]
    # An empty table is the factory's default config.
    assert processors[cid("pii")] == fakes.PiiConfig()
    assert config.of(Kind.CONNECTOR) == {cid("span_metrics"): fakes.SpanMetricsConfig()}
    assert config.of(Kind.EXPORTER)[cid("jaeger")] == fakes.RemoteConfig(endpoint="localhost:14317")
    assert config.pipelines[PipelineId(Signal.TRACES, "sampled")] == PipelineConfig(
        PipelineId(Signal.TRACES, "sampled"),
        receivers=(cid("otlp"),),
        processors=(cid("memory_limiter"), cid("tail_sampling"), cid("pii"), cid("batch/fast")),
        exporters=(cid("jaeger"),),
    )
    assert list(config.pipelines) == [
        PipelineId(Signal.TRACES),
        PipelineId(Signal.TRACES, "sampled"),
        PipelineId(Signal.LOGS),
        PipelineId(Signal.METRICS),
    ]
    assert config.warnings == ()


def test_missing_service_table_gives_service_defaults() -> None:
    assert load(MINIMAL).service == ServiceConfig()


def test_every_error_in_every_table_is_reported_at_once() -> None:
    errors = errors_of(
        """
        [service]
        log_level = "verbose"

        [receivers.otlp]
        max_recv_bytes = 0

        [processors.memory_limiter]
        limit_mib = -5
        spike_limit_percent = 120
        enabled = "yes"

        [[processors.tail_sampling.policies]]
        name = "slow"
        type = "latency"
        threshold_ms = -1
        [[processors.tail_sampling.policies]]
        name = "sample"
        type = "probabilistic"
        sampling_percentage = 101

        [exporters.jaeger]
        protocol = "thrift"
        timeout = 5

        [exporters.loki]

        [pipelines.traces]
        receivers = ["otlp"]
        processors = ["memory_limiter", "tail_sampling", "missing"]
        exporters = ["jaeger", "loki"]
        """,
    )

    assert errors == [
        "service.log_level: expected one of: debug, info, warning, error (got 'verbose')",
        "receivers.otlp.max_recv_bytes: expected an integer >= 1 (got 0)",
        "processors.memory_limiter.limit_mib: expected an integer >= 1 (got -5)",
        "processors.memory_limiter.spike_limit_percent: expected a number >= 0 and <= 100 (got 120)",
        "processors.memory_limiter.enabled: expected a boolean (true or false) (got 'yes')",
        "processors.tail_sampling.policies[0].threshold_ms: expected an integer >= 0 (got -1)",
        "processors.tail_sampling.policies[1].sampling_percentage: expected a number >= 0 and <= 100 (got 101)",
        "exporters.jaeger.protocol: expected one of: otlp_grpc, otlp_http (got 'thrift')",
        "exporters.jaeger.timeout: unknown key (known: endpoint, headers, protocol, timeout_ms, tls)",
        "pipelines.traces.processors[2]: 'missing' is not defined (no [processors.missing] table)",
        "pipelines.traces.exporters[1]: exporter 'loki' does not accept traces (it accepts: logs)",
    ]


def test_later_files_override_scalars_and_arrays_and_merge_tables(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text(
        """
        [receivers.otlp]
        grpc_endpoint = "127.0.0.1:4317"
        http_endpoint = "127.0.0.1:4318"

        [processors.tail_sampling]
        num_traces = 5000
        [[processors.tail_sampling.policies]]
        name = "errors"
        type = "status_code"
        status_codes = ["ERROR"]

        [exporters.jaeger]
        headers = { a = "1", b = "2" }

        [pipelines.traces]
        receivers = ["otlp"]
        processors = ["tail_sampling"]
        exporters = ["jaeger"]
        """
    )
    override = tmp_path / "prod.toml"
    override.write_text(
        """
        [receivers.otlp]
        grpc_endpoint = "0.0.0.0:4317"

        [[processors.tail_sampling.policies]]
        name = "all"
        type = "probabilistic"
        sampling_percentage = 100

        [exporters.jaeger]
        headers = { b = "3" }

        [exporters.loki]

        [pipelines.traces]
        processors = []

        [pipelines.logs]
        receivers = ["otlp"]
        exporters = ["loki"]
        """
    )

    config = load_config([base, str(override)], fakes.registry(), env={})

    otlp = config.of(Kind.RECEIVER)[cid("otlp")]
    assert otlp == fakes.OtlpConfig(grpc_endpoint="0.0.0.0:4317", http_endpoint="127.0.0.1:4318")
    tail = config.of(Kind.PROCESSOR)[cid("tail_sampling")]
    assert isinstance(tail, fakes.TailSamplingConfig)
    assert tail.num_traces == 5000  # kept from the first file
    assert tail.policies == [fakes.ProbabilisticPolicy(name="all", sampling_percentage=100.0)]  # array replaced
    jaeger = config.of(Kind.EXPORTER)[cid("jaeger")]
    assert isinstance(jaeger, fakes.RemoteConfig)
    assert jaeger.headers == {"a": "1", "b": "3"}  # inline tables merge like any table
    assert config.pipelines[PipelineId(Signal.TRACES)].processors == ()
    assert set(config.pipelines) == {PipelineId(Signal.TRACES), PipelineId(Signal.LOGS)}
    # tail_sampling was left out of the only pipeline by the second file.
    assert config.warnings == ("processors.tail_sampling: defined but not used by any pipeline",)


def test_merge_replaces_a_table_with_a_scalar_and_back() -> None:
    assert merge({"a": {"x": 1}, "b": 1}, {"a": 2, "b": {"y": 2}}) == {"a": 2, "b": {"y": 2}}
    assert merge({"a": {"x": {"deep": 1}, "y": [1]}}, {"a": {"x": {"more": 2}, "y": [2]}}) == {
        "a": {"x": {"deep": 1, "more": 2}, "y": [2]}
    }


def test_env_substitution_with_defaults_escapes_and_typed_values() -> None:
    env = {"LIMIT": "2048", "SPIKE": "12.5", "ENABLED": "false", "HOST": "jaeger.internal", "EMPTY": ""}
    config = load(
        """
        [receivers.otlp]
        grpc_endpoint = "${env:GRPC:-127.0.0.1:4317}"
        http_endpoint = "${env:EMPTY:-127.0.0.1:4318}"

        [processors.memory_limiter]
        limit_mib = "${env:LIMIT}"
        spike_limit_percent = "${env:SPIKE}"
        enabled = "${env:ENABLED}"

        [processors.batch]
        timeout_ms = "${env:UNSET_TIMEOUT:-50}"

        [exporters.jaeger]
        endpoint = "${env:HOST}:14317"
        headers = { price = "$$5", literal = "cost: $ 3", raw = "$${env:HOST}" }

        [pipelines.traces]
        receivers = ["otlp"]
        processors = ["memory_limiter", "batch"]
        exporters = ["jaeger"]
        """,
        env=env,
    )

    assert config.of(Kind.RECEIVER)[cid("otlp")] == fakes.OtlpConfig(
        grpc_endpoint="127.0.0.1:4317", http_endpoint="127.0.0.1:4318"
    )
    assert config.of(Kind.PROCESSOR)[cid("memory_limiter")] == fakes.MemoryLimiterConfig(
        limit_mib=2048, spike_limit_percent=12.5, enabled=False
    )
    assert config.of(Kind.PROCESSOR)[cid("batch")] == fakes.BatchConfig(timeout_ms=50)
    jaeger = config.of(Kind.EXPORTER)[cid("jaeger")]
    assert isinstance(jaeger, fakes.RemoteConfig)
    assert jaeger.endpoint == "jaeger.internal:14317"
    assert jaeger.headers == {"price": "$5", "literal": "cost: $ 3", "raw": "${env:HOST}"}
    # Decoded values are plain str, not the loader's internal marker type.
    assert type(jaeger.endpoint) is str


def test_substituted_values_are_still_validated() -> None:
    errors = errors_of(
        """
        [receivers.otlp]
        [processors.memory_limiter]
        limit_mib = "${env:LIMIT}"
        spike_limit_percent = "${env:SPIKE}"
        [exporters.jaeger]
        [pipelines.traces]
        receivers = ["otlp"]
        processors = ["memory_limiter"]
        exporters = ["${env:EXPORTER}"]
        """,
        env={"LIMIT": "lots", "SPIKE": "150"},
    )

    assert errors == [
        "processors.memory_limiter.limit_mib: expected an integer >= 1 (got 'lots')",
        "processors.memory_limiter.spike_limit_percent: expected a number >= 0 and <= 100 (got '150')",
        "pipelines.traces.exporters[0]: environment variable EXPORTER is not set "
        "(write ${env:EXPORTER:-default} to give a default)",
    ]


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTELPIPE_TEST_LIMIT", "77")
    text = MINIMAL + '[processors.memory_limiter]\nlimit_mib = "${env:OTELPIPE_TEST_LIMIT}"\n'

    config = load_config_text([("a.toml", text)], fakes.registry())

    assert config.of(Kind.PROCESSOR)[cid("memory_limiter")] == fakes.MemoryLimiterConfig(limit_mib=77)


def test_unused_components_are_warnings_and_still_in_the_result() -> None:
    config = load(MINIMAL + "[exporters.file]\npath = '/tmp/x.jsonl'\n[connectors.span_metrics]\n")

    assert config.warnings == (
        "exporters.file: defined but not used by any pipeline",
        "connectors.span_metrics: defined but not used by any pipeline",
    )
    assert config.of(Kind.EXPORTER)[cid("file")] == fakes.FileConfig(path="/tmp/x.jsonl")
    assert cid("span_metrics") in config.of(Kind.CONNECTOR)


def test_a_shareable_processor_may_serve_one_pipeline_per_signal() -> None:
    config = load(
        MINIMAL
        + """
        [processors.tail_sampling]
        [exporters.loki]
        [pipelines."traces/sampled"]
        receivers = ["otlp"]
        processors = ["tail_sampling"]
        exporters = ["jaeger"]
        [pipelines.logs]
        receivers = ["otlp"]
        processors = ["tail_sampling"]
        exporters = ["loki"]
        """
    )

    assert config.pipelines[PipelineId(Signal.LOGS)].processors == (cid("tail_sampling"),)


def test_a_connector_joins_a_traces_pipeline_to_a_metrics_pipeline() -> None:
    config = load(
        MINIMAL
        + """
        [connectors.span_metrics]
        [exporters.prometheus_remote_write]
        [pipelines."traces/red"]
        receivers = ["otlp"]
        exporters = ["span_metrics"]
        [pipelines.metrics]
        receivers = ["span_metrics"]
        exporters = ["prometheus_remote_write"]
        """
    )

    assert config.pipelines[PipelineId(Signal.METRICS)].receivers == (cid("span_metrics"),)
    assert config.warnings == ()


def test_syntax_errors_of_every_file_are_reported_and_nothing_else(tmp_path: Path) -> None:
    first = tmp_path / "first.toml"
    first.write_text("[receivers.otlp\n")
    second = tmp_path / "second.toml"
    second.write_text('[exporters.jaeger]\nendpoint = "x"\nendpoint = "y"\n')

    with pytest.raises(ConfigError) as caught:
        load_config([first, second], fakes.registry(), env={})

    assert caught.value.errors == (
        f"{first}:1:16: invalid TOML: Expected ']' at the end of a table declaration",
        f"{second}:3:15: invalid TOML: Cannot overwrite a value",
    )


def test_an_unreadable_file_is_reported_with_the_others(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    broken = tmp_path / "broken.toml"
    broken.write_text("a = \n")

    with pytest.raises(ConfigError) as caught:
        load_config([missing, broken], fakes.registry(), env={})

    assert caught.value.errors == (
        f"{missing}: cannot read: No such file or directory",
        f"{broken}:1:5: invalid TOML: Invalid value",
    )


def test_no_files_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no configuration given"):
        load_config([], fakes.registry(), env={})


def test_format_errors_lists_every_message_under_a_count() -> None:
    err = ConfigError(["a.b: first", "c: second"])

    assert format_errors(err) == "invalid configuration (2 errors):\n  a.b: first\n  c: second"
    assert format_errors(ConfigError(["x: only"])) == "invalid configuration (1 error):\n  x: only"


def test_a_syntax_error_at_the_end_of_a_file_points_at_its_last_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text([("open.toml", '[receivers.otlp]\ngrpc_endpoint = "x"\nlist = [1,\n')], fakes.registry())

    assert caught.value.errors == ("open.toml:4:1: invalid TOML: Invalid value",)


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"# caf\xe9\n[receivers.otlp]\n")

    with pytest.raises(ConfigError) as caught:
        load_config([latin1], fakes.registry(), env={})

    assert caught.value.errors == (f"{latin1}: not UTF-8 text (invalid byte at offset 5)",)
