"""What every part of the tail sampling benchmark (bench/tail_sampling.py) shares: the policies and the requests.

The three policies are written once (POLICY_LIST): the in-process engine's configuration (``engine_config``) and
the daemon's TOML (``daemon_config``) are built from them, so both parts measure the same decisions. The load is
1000-span requests of bench/gen.py sent again and again with new trace ids (``unique_request``), so every trace is
new to the sampler (a replayed id would be a late span).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import receive

if TYPE_CHECKING:
    from processors.tail_sampling.config import TailSamplingConfig

# The policies every part of this benchmark runs: errors, slow traces (79 ms: about 10% of the generated
# ones), a 10% baseline.
POLICY_LIST: list[dict[str, Any]] = [
    {"name": "errors", "type": "status_code", "status_codes": ["ERROR"]},
    {"name": "slow", "type": "latency", "threshold_ms": 79},
    {"name": "baseline", "type": "probabilistic", "sampling_percentage": 10},
]
POLICIES = "".join(
    "[[processors.tail_sampling.policies]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in policy.items())
    for policy in POLICY_LIST
)


def engine_config(**settings: Any) -> TailSamplingConfig:
    """The in-process engine's configuration: the benchmark's policies, budgets that never bind."""
    from processors.tail_sampling.config import TailSamplingConfig

    return msgspec.convert(
        {
            "policies": POLICY_LIST,
            "decision_wait_after_root_ms": 0,
            "num_traces": 10_000_000,
            "max_bytes": 1 << 40,
            **settings,
        },
        TailSamplingConfig,
    )


def daemon_config(grpc_port: int, telemetry_port: int, decision_wait_ms: int, after_root_ms: int = 0) -> str:
    tables = f"""
[processors.tail_sampling]
decision_wait_ms = {decision_wait_ms}
decision_wait_after_root_ms = {after_root_ms}
num_traces = 2000000
max_bytes = 8589934592
{POLICIES}"""
    return receive.daemon_config(grpc_port, telemetry_port, processors=["tail_sampling"], tables=tables)


# ----------------------------------------------------------------------------------------------- load


def trace_id_offsets(raw: bytes) -> list[int]:
    """Where each span's trace id sits in a serialized request (spans start with field 1, 16 bytes)."""
    req = ExportTraceServiceRequest.FromString(raw)
    offsets: list[int] = []
    cursor = 0
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                at = raw.index(b"\x0a\x10" + span.trace_id, cursor)
                offsets.append(at + 2)
                cursor = at + 18
    return offsets


def unique_request(template: bytes, offsets: list[int], round_: int) -> bytes:
    """The template with the first 4 bytes of every trace id replaced by ``round_``: new ids, same traces, same
    randomness (the last 7 bytes), so sampling decisions keep their proportions."""
    buf = bytearray(template)
    tag = round_.to_bytes(4, "big")
    for off in offsets:
        buf[off : off + 4] = tag
    return bytes(buf)
