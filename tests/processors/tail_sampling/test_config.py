"""Configuration through the real loader: every problem reported at once, each with its full TOML key."""

from __future__ import annotations

import pytest

from config.loader import load_config_text
from pipeline.component import ComponentId, Kind
from pipeline.components import default_registry
from pipeline.errors import ConfigError
from processors.tail_sampling.config import Latency, Not, Probabilistic, TailSamplingConfig
from tests.support.configs import nop_pipelines

PIPELINES = nop_pipelines(["tail_sampling"])


def load(body: str) -> TailSamplingConfig:
    cfg = load_config_text([("t.toml", body + PIPELINES)], default_registry(), env={})
    loaded = cfg.of(Kind.PROCESSOR)[ComponentId("tail_sampling")]
    assert isinstance(loaded, TailSamplingConfig)
    return loaded


def errors(body: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(body)
    return list(exc.value.errors)


def test_a_full_configuration_decodes() -> None:
    cfg = load(
        """
[processors.tail_sampling]
decision_wait_ms = 10000
decision_wait_after_root_ms = 2000
num_traces = 1000
annotations = { adjusted_count = true }
log_policies = [{ name = "warn", min_severity = "WARN" }]
[[processors.tail_sampling.policies]]
name = "baseline"
type = "probabilistic"
sampling_percentage = 12.5
[[processors.tail_sampling.policies]]
name = "not-health"
type = "not"
not_sub_policy = { name = "health", type = "latency", threshold_ms = 10 }
"""
    )
    assert cfg.decision_wait_ms == 10_000
    assert cfg.annotations.adjusted_count
    assert isinstance(cfg.policies[0], Probabilistic)
    assert cfg.policies[0].sampling_percentage == 12.5
    assert isinstance(cfg.policies[1], Not)
    assert isinstance(cfg.policies[1].not_sub_policy, Latency)
    assert cfg.log_policies[0].min_severity == "WARN"


def test_every_error_names_its_key() -> None:
    found = errors(
        """
[processors.tail_sampling]
decision_wait_ms = 5000
max_trace_duration_ms = 1000
[[processors.tail_sampling.policies]]
name = "p"
type = "probabilistic"
sampling_percentage = 120
[[processors.tail_sampling.policies]]
name = "q"
type = "no_such_type"
[[processors.tail_sampling.policies]]
name = "r"
type = "string_attribute"
key = "k"
values = ["("]
enabled_regex_matching = true
[[processors.tail_sampling.policies]]
name = "s"
type = "and"
and_sub_policy = [{ name = "x", type = "latency", threshold_ms = 10, upper_threshold_ms = 5, oops = 1 }]
"""
    )
    text = "\n".join(found)
    assert "processors.tail_sampling.policies[0].sampling_percentage: expected a number >= 0" in text
    assert "(got 120)" in text
    assert "processors.tail_sampling.policies[1].type: expected one of: always_sample" in text
    assert "processors.tail_sampling.policies[2].values: item 0 is not a valid regular expression" in text
    assert "processors.tail_sampling.policies[3].and_sub_policy[0].oops: unknown key" in text


def test_cross_field_checks() -> None:
    text = "\n".join(
        errors(
            """
[processors.tail_sampling]
decision_wait_ms = 5000
max_trace_duration_ms = 1000
policies = [{ name = "a", type = "always_sample" }]
"""
        )
    )
    assert "processors.tail_sampling.max_trace_duration_ms: must be >= decision_wait_ms (5000)" in text
    twice = '{ name = "a", type = "always_sample" }'
    dup = f"[processors.tail_sampling]\npolicies = [{twice}, {twice}]\n"
    assert "processors.tail_sampling.policies: item 1 repeats the policy name 'a'" in "\n".join(errors(dup))
    assert "policies: expected an array of at least 1 item" in "\n".join(
        errors("[processors.tail_sampling]\npolicies = []\n")
    )


def test_composite_checks_its_names() -> None:
    text = "\n".join(
        errors(
            """
[[processors.tail_sampling.policies]]
name = "c"
type = "composite"
max_total_spans_per_second = 100
policy_order = ["a", "zz"]
composite_sub_policy = [{ name = "a", type = "always_sample" }]
rate_allocation = [{ policy = "a", percent = 60 }]
"""
        )
    )
    assert "processors.tail_sampling.policies[0].policy_order: item 1 ('zz') names no composite_sub_policy" in text


def test_ottl_condition_is_not_offered() -> None:
    text = "\n".join(errors('[[processors.tail_sampling.policies]]\nname = "o"\ntype = "ottl_condition"\n'))
    assert "policies[0].type: expected one of:" in text
    assert "ottl_condition" not in text.split("(got")[0]
