"""End to end through the real daemon: OTLP/gRPC and OTLP/HTTP in, ``pii`` in the traces and logs pipelines, the
file exporter out. What lands in the file must hold no secret, and the daemon's own log must not either."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.exporters.file import read_records
from pipeline.model import Signal
from tests.processors.pii.helpers import strings
from tests.support.configs import file_pipelines
from tests.support.daemon import Daemon, wait_until
from tests.support.data import logs_request, traces_request

CARD = "4111 1111 1111 1111"
EMAIL = "ann.lee@example.com"
PASSWORD = "hunter2-Secret!"

BODY = """
[processors.pii]
actions = { email = "hash" }
hash_key = "e2e-test-key-0123456789"

"""


def _traces() -> ExportTraceServiceRequest:
    req = traces_request(n_traces=2, spans_per_trace=3)
    span = req.resource_spans[0].scope_spans[0].spans[4]
    span.attributes.add(key="payment.card").value.string_value = f"card {CARD}"
    span.attributes.add(key="db.password").value.string_value = PASSWORD
    span.attributes.add(
        key="url.full"
    ).value.string_value = f"https://shop.example.com/cb?email={EMAIL.replace('@', '%40')}"
    span.events.add(name=f"mail sent to {EMAIL}")
    return req


def _logs() -> ExportLogsServiceRequest:
    req = logs_request(3)
    records = req.resource_logs[0].scope_logs[0].log_records
    records[0].body.string_value = f"payment with {CARD} by {EMAIL}"
    nested = records[1].body.kvlist_value.values.add(key="user")
    nested.value.kvlist_value.values.add(key="email").value.string_value = EMAIL
    return req


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Daemon(tmp_path, BODY + file_pipelines(out, ["pii"])) as daemon:
        with grpc.insecure_channel(daemon.grpc_target) as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            export(_traces().SerializeToString(), timeout=10)
        request = urllib.request.Request(
            f"{daemon.http_base}/v1/logs",
            data=_logs().SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

        def arrived() -> bool:
            paths = [out / "traces.jsonl", out / "logs.jsonl"]
            return all(p.exists() and p.stat().st_size > 0 for p in paths)

        wait_until(arrived, what="masked traces and logs in the file exporter output")
        wait_until(lambda: daemon.metric("otelpipe_processor_pii_matches_total") >= 7, what="pii self-metrics")
        assert daemon.terminate() == 0
        log = daemon.log()
    texts = []
    for path, signal in ((out / "traces.jsonl", Signal.TRACES), (out / "logs.jsonl", Signal.LOGS)):
        for _, message in read_records(path, signal=signal):
            texts += list(strings(message))
    joined = "\n".join(texts)
    for secret in (CARD, EMAIL, PASSWORD, EMAIL.replace("@", "%40")):
        assert secret not in joined
        assert secret not in log
    assert "[REDACTED:credit_card]" in joined
    assert "[REDACTED:blocked_key]" in joined
    assert joined.count("email:") >= 4  # hashed tokens: <name>:<key_id>:<hex>
    assert len({t for t in texts if t.startswith("email:")}) == 1  # the same address, the same token everywhere
