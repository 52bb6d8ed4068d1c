"""The protocol sinks answer as the real backends do and record what they received."""

from __future__ import annotations

import asyncio
import json
import struct
import time

import aiohttp
import cramjam
import grpc
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import sink_protocols as sp
from bench.sinks import SERVICES, SinkConfig, SinkState, serve
from bench.workload import PII_VALUES
from pipeline.model import Signal
from tests.support.daemon import free_port
from tests.support.data import logs_request, traces_request


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _loki_push(labels: str, lines: list[str], trace_id: str = "", timestamp: bool = True) -> bytes:
    entries = b""
    for line in lines:
        entry = _len(1, _varint(1 << 3) + _varint(1_700_000_000)) if timestamp else b""
        entry += _len(2, line.encode())
        if trace_id:
            entry += _len(3, _len(1, b"trace_id") + _len(2, trace_id.encode()))
        entries += _len(2, entry)
    return bytes(cramjam.snappy.compress_raw(_len(1, _len(1, labels.encode()) + entries)))


def _series(labels: list[tuple[str, str]], samples: list[tuple[float, int]]) -> bytes:
    body = b"".join(_len(1, _len(1, n.encode()) + _len(2, v.encode())) for n, v in labels)
    for value, ts in samples:
        body += _len(2, _varint(1 << 3 | 1) + struct.pack("<d", value) + _varint(2 << 3) + _varint(ts))
    return _len(1, body)


def _stamped_traces(n_traces: int = 2, spans_per_trace: int = 3) -> ExportTraceServiceRequest:
    """A traces request whose ids carry send stamps, as the load generator's do (the sink counts those)."""
    req = traces_request(n_traces, spans_per_trace)
    stamp = time.time_ns().to_bytes(8, "big")
    for span in req.resource_spans[0].scope_spans[0].spans:
        span.trace_id = stamp + span.trace_id[8:]
    return req


RW_HEADERS = {
    "content-encoding": "snappy",
    "content-type": "application/x-protobuf",
    "x-prometheus-remote-write-version": "0.1.0",
}


def test_loki_protobuf_push_decodes_entries_and_trace_ids() -> None:
    push = sp.loki_protobuf(_loki_push('{service_name="cart"}', ["a", "b"], trace_id="ab" * 16))
    assert (push.streams, push.entries, push.trace_ids) == (1, 2, ["ab" * 16] * 2)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not snappy at all", 400),
        (_loki_push("service_name=cart", ["a"]), 400),  # labels must be {name="value"}
        (_loki_push('{a="b"}', ["a"], timestamp=False), 400),
    ],
)
def test_loki_protobuf_rejections(body: bytes, status: int) -> None:
    with pytest.raises(sp.Rejected) as info:
        sp.loki_protobuf(body)
    assert info.value.status == status


def test_loki_json_push() -> None:
    body = json.dumps(
        {"streams": [{"stream": {"a": "b"}, "values": [["1700000000000000000", "x", {"trace_id": "cd" * 16}]]}]}
    ).encode()
    assert sp.loki_json(body).entries == 1
    bad = json.dumps({"streams": [{"stream": {"a": "b"}, "values": [[1700000000000000000, "x"]]}]}).encode()
    with pytest.raises(sp.Rejected):
        sp.loki_json(bad)


def test_remote_write_checks_headers_labels_and_order() -> None:
    good = _series([("__name__", "up"), ("job", "x")], [(1.0, 1000), (2.0, 2000)])
    rw = sp.remote_write(bytes(cramjam.snappy.compress_raw(good)), RW_HEADERS)
    assert (rw.series, rw.samples) == (1, 2)
    cases = [
        (good, {**RW_HEADERS, "content-encoding": "gzip"}, 400),
        (good, {**RW_HEADERS, "x-prometheus-remote-write-version": "2.0.0"}, 415),
        (_series([("job", "x"), ("__name__", "up")], [(1.0, 1)]), RW_HEADERS, 400),  # unsorted
        (_series([("__name__", "up"), ("job", "")], [(1.0, 1)]), RW_HEADERS, 400),  # empty value
        (_series([("__name__", "up")], [(1.0, 5), (1.0, 4)]), RW_HEADERS, 400),  # out of order
    ]
    for raw, headers, status in cases:
        with pytest.raises(sp.Rejected) as info:
            sp.remote_write(bytes(cramjam.snappy.compress_raw(raw)), headers)
        assert info.value.status == status


def test_remote_write_rejects_an_older_sample_across_requests() -> None:
    state = SinkState()
    first = _series([("__name__", "up")], [(1.0, 2000)])
    state.remote_write(sp.remote_write(bytes(cramjam.snappy.compress_raw(first)), RW_HEADERS), b"")
    older = _series([("__name__", "up")], [(1.0, 1000)])
    with pytest.raises(sp.Rejected):
        state.remote_write(sp.remote_write(bytes(cramjam.snappy.compress_raw(older)), RW_HEADERS), b"")


def test_unstamped_spans_are_not_counted_and_garbage_is_refused() -> None:
    state = SinkState()
    state.traces(traces_request().SerializeToString())
    assert state.items["traces"] == 0
    with pytest.raises(DecodeError):
        state.traces(b"\xff\xff\xff")


def test_sink_state_counts_ids_latency_and_pii() -> None:
    state = SinkState(pii_values=PII_VALUES)
    req = _stamped_traces(n_traces=2, spans_per_trace=3)
    state.traces(req.SerializeToString())
    assert state.items["traces"] == 6
    assert len(state.span_ids) == 2
    assert len(state.span_latency) == 2
    logs = logs_request(3)
    logs.resource_logs[0].scope_logs[0].log_records[0].body.string_value = f"mail {PII_VALUES[0]}"
    state.logs(logs.SerializeToString())
    assert state.items["logs"] == 3
    assert state.pii_leaks == 1


def test_sinks_serve_every_protocol() -> None:
    async def scenario() -> tuple[SinkState, list[int]]:
        config = SinkConfig(grpc_port=free_port(), http_port=free_port())
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(serve(config, stop, ready))
        await asyncio.wait_for(ready.wait(), 10)
        statuses = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{config.grpc_port}") as channel:
            call = channel.unary_unary(f"/{SERVICES[Signal.TRACES]}/Export")
            assert await call(_stamped_traces().SerializeToString(), timeout=5) == b""
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(b"\xff\xff\xff", timeout=5)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        base = f"http://127.0.0.1:{config.http_port}"
        async with aiohttp.ClientSession() as session:
            posts = [
                ("/v1/logs", logs_request().SerializeToString(), {"Content-Type": "application/x-protobuf"}),
                ("/loki/api/v1/push", _loki_push('{a="b"}', ["x"]), {"Content-Type": "application/x-protobuf"}),
                ("/loki/api/v1/push", b"garbage", {"Content-Type": "application/x-protobuf"}),
                (
                    "/api/v1/write",
                    bytes(cramjam.snappy.compress_raw(_series([("__name__", "up")], [(1.0, 1)]))),
                    {
                        "Content-Encoding": "snappy",
                        "Content-Type": "application/x-protobuf",
                        "X-Prometheus-Remote-Write-Version": "0.1.0",
                    },
                ),
            ]
            for path, body, headers in posts:
                async with session.post(base + path, data=body, headers=headers, compress=None) as r:
                    statuses.append(r.status)
            async with session.get(base + "/bench/stats") as r:
                stats = await r.json()
        assert stats["items"] == {"traces": 6, "logs": 3, "loki": 1, "remote_write": 1}
        stop.set()
        return await asyncio.wait_for(task, 10), statuses

    state, statuses = asyncio.run(scenario())
    assert statuses == [200, 204, 400, 204]
    assert state.rejected == {"traces": 1, "loki": 1}
