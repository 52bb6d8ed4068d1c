"""Faults, end to end: the real daemon, raw OTLP clients, fake backends that fail on command, on loopback.

Each test answers one question of the delivery contract (DESIGN.md section 1): is everything the daemon
acknowledged delivered (duplicates allowed, loss never), and does every refusal reach the sender as a retryable
error? Accounting is by span id: acknowledged ids (the client got OK) against ids the backend received.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.gen import trace_requests
from bench.procstat import rss_bytes
from tests.delivery.support import (
    GrpcClient,
    ThreadedBackend,
    http_export,
    span_ids_of,
    tally,
)
from tests.exporters.backends import Reply
from tests.support.daemon import Daemon, wait_until
from tests.support.data import traces_request

FAST_RETRY = "initial_interval_ms = 50\nmax_interval_ms = 200\nrandomization_factor = 0.0"


def pipeline(exporter: str, processors: str = "") -> str:
    return f"""
[pipelines.traces]
receivers = ["otlp"]
processors = [{processors}]
exporters = ["{exporter}"]
"""


def otlphttp(backend: ThreadedBackend, *, queue: str = "", batch: str = "", timeout_ms: int = 5000) -> str:
    return f"""
[exporters.otlphttp]
endpoint = "{backend.endpoint}"
compression = "none"
timeout_ms = {timeout_ms}
[exporters.otlphttp.retry_on_failure]
{FAST_RETRY}
max_elapsed_ms = 0
[exporters.otlphttp.sending_queue]
num_consumers = 1
{queue}
{batch}
"""


def log_records(d: Daemon) -> list[dict[str, object]]:
    out = []
    for line in d.log().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def in_order_without_duplicates(ids: list[bytes]) -> list[bytes]:
    seen: set[bytes] = set()
    out = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


# ------------------------------------------------------------------------------------------------ backend faults


def test_backend_down_then_up_delivers_everything_acknowledged_in_order(tmp_path: Path) -> None:
    with ThreadedBackend("grpc", up=False) as backend:
        body = f"""
[exporters.otlp]
endpoint = "{backend.endpoint}"
insecure = true
compression = "none"
[exporters.otlp.retry_on_failure]
{FAST_RETRY}
max_elapsed_ms = 0
[exporters.otlp.sending_queue]
num_consumers = 1
""" + pipeline("otlp")
        with Daemon(tmp_path, body) as d:
            client = GrpcClient(d.grpc_target)
            acked: list[bytes] = []
            for _ in range(20):
                request = traces_request(1, 5)
                assert client.export(request).ok  # accepted into the queue while the backend is down
                acked += span_ids_of(request)
            wait_until(lambda: d.metric("otelpipe_exporter_send_failed_spans_total") > 0, what="failed sends")
            backend.start()
            wait_until(lambda: tally(acked, backend.delivered_ids()).lost == 0, timeout_s=30, what="delivery")
            client.close()
            assert in_order_without_duplicates(backend.delivered_ids()) == acked
            assert d.metric("otelpipe_exporter_dropped_spans_total") == 0


def test_429_retry_after_is_honoured_as_the_wait_floor(tmp_path: Path) -> None:
    with ThreadedBackend("http") as backend:
        backend.script(Reply.fail_http(429, "slow down", retry_after="2"))
        with Daemon(tmp_path, otlphttp(backend) + pipeline("otlphttp")) as d:
            request = traces_request(1, 4)
            assert GrpcClient(d.grpc_target).export(request).ok
            wait_until(lambda: tally(span_ids_of(request), backend.delivered_ids()).lost == 0, what="delivery")
            assert backend.requests() == 2
            waits = [r["retry_in_s"] for r in log_records(d) if "retry_in_s" in r]
            assert waits == [2.0]  # the 50 ms backoff was raised to the server's 2 s
            assert d.metric("otelpipe_exporter_retries_total") == 1


def test_400_is_not_retried_and_is_counted(tmp_path: Path) -> None:
    with ThreadedBackend("http") as backend:
        backend.script(Reply.fail_http(400, "bad span"))
        with Daemon(tmp_path, otlphttp(backend) + pipeline("otlphttp")) as d:
            client = GrpcClient(d.grpc_target)
            assert client.export(traces_request(1, 5)).ok
            wait_until(lambda: d.metric("otelpipe_exporter_dropped_spans_total") == 5, what="the drop count")
            second = traces_request(1, 2)
            assert client.export(second).ok
            wait_until(lambda: tally(span_ids_of(second), backend.delivered_ids()).lost == 0, what="the next request")
            client.close()
            # One queue consumer, in order: the 400 request went once, then the next one; no retry in between.
            assert backend.requests() == 2
            assert d.metric("otelpipe_exporter_retries_total") == 0
            text = d.metrics_text()
            assert 'otelpipe_exporter_dropped_spans_total{exporter="otlphttp",reason="permanent_error"} 5.0' in text


def test_attempt_timeout_then_success(tmp_path: Path) -> None:
    with ThreadedBackend("http") as backend:
        hang = backend.new_event()
        backend.script(Reply.hanging(hang))
        try:
            with Daemon(tmp_path, otlphttp(backend, timeout_ms=300) + pipeline("otlphttp")) as d:
                request = traces_request(1, 3)
                assert GrpcClient(d.grpc_target).export(request).ok
                wait_until(lambda: d.metric("otelpipe_exporter_sent_spans_total") == 3, what="the retried send")
                assert d.metric("otelpipe_exporter_retries_total") == 1
                assert tally(span_ids_of(request), backend.delivered_ids()).lost == 0
        finally:
            backend.release(hang)


# ------------------------------------------------------------------------------------------------ backpressure


def test_full_queue_refuses_retryably_and_the_clients_retry_succeeds_with_bounded_memory(tmp_path: Path) -> None:
    with ThreadedBackend("http") as backend:
        backend.script(then=Reply.fail_http(503, "backend overloaded"))
        body = otlphttp(backend, queue="queue_size = 2") + pipeline("otlphttp")
        with Daemon(tmp_path, body) as d:
            assert d.proc is not None
            client = GrpcClient(d.grpc_target)
            answers = [client.export(traces_request(1, 2)) for _ in range(6)]
            refused = [a for a in answers if not a.ok]
            assert refused, "the queue never filled"
            assert all(a.code == "UNAVAILABLE" and a.retry_after_s == 1.0 for a in refused)
            assert "sending queue is full" in refused[0].message

            # Memory stays bounded while the sender keeps pushing 1000-span requests into a full queue: after a
            # warm-up (malloc keeps freed buffers mapped, DESIGN.md section 4), RSS stays on a plateau.
            payloads = [ExportTraceServiceRequest.FromString(p) for p in trace_requests(4, 1000)]
            refused_count = sum(0 if client.export(payloads[i % 4]).ok else 1 for i in range(200))
            plateau = rss_bytes(d.proc.pid)
            peaks = []
            for _ in range(5):
                refused_count += sum(0 if client.export(payloads[i % 4]).ok else 1 for i in range(100))
                peaks.append(rss_bytes(d.proc.pid))
            growth_mib = (max(peaks) - plateau) / 2**20
            assert refused_count == 700  # refused, not buffered (~250 MB pushed in all)
            assert growth_mib < 40, f"RSS grew {growth_mib:.0f} MiB above its plateau while refusing"

            # A real SDK client: it retries the retryable refusal by itself and succeeds once the backend is back.
            provider = TracerProvider()
            memory = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(memory))
            with provider.get_tracer("t").start_as_current_span("retried"):
                pass
            spans = memory.get_finished_spans()
            exporter = OTLPSpanExporter(endpoint=d.grpc_target, insecure=True, timeout=20)
            result: list[SpanExportResult] = []
            worker = threading.Thread(target=lambda: result.append(exporter.export(spans)))
            worker.start()
            wait_until(
                lambda: "otelpipe_receiver_refused_spans_total" in d.metrics_text(), what="the SDK's first refusal"
            )
            backend.script(then=Reply.ok())
            worker.join(timeout=30)
            assert result == [SpanExportResult.SUCCESS]
            client.close()


# ------------------------------------------------------------------------------------------------ disk queue


def disk_body(backend: ThreadedBackend, path: Path, extra: str = "") -> str:
    queue = f'type = "disk"\npath = "{path}"\n{extra}'
    return otlphttp(backend, queue=queue) + pipeline("otlphttp")


def test_kill_9_with_a_disk_queue_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with ThreadedBackend("http") as backend:
        # Every other reply fails: at the kill some requests are delivered, some in flight, most queued.
        backend.script(*[Reply.fail_http(503) if i % 2 else Reply.ok() for i in range(400)])
        (tmp_path / "run1").mkdir()
        d = Daemon(tmp_path / "run1", disk_body(backend, tmp_path / "queue")).start()
        acked: list[bytes] = []
        stop = threading.Event()

        def load() -> None:
            client = GrpcClient(d.grpc_target)
            for _ in range(2000):  # bounded even if the kill never lands
                if stop.is_set():
                    break
                request = traces_request(2, 5)
                if client.export(request, timeout_s=5).ok:
                    acked.extend(span_ids_of(request))
            client.close()

        worker = threading.Thread(target=load)
        worker.start()
        try:
            wait_until(lambda: len(acked) >= 300 and backend.requests() >= 8, what="load and deliveries")
            assert d.proc is not None
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(timeout=10)
        finally:
            stop.set()
            worker.join(timeout=30)
            d.__exit__(None, None, None)
        backend.script(then=Reply.ok(), clear=True)
        (tmp_path / "run2").mkdir()
        with Daemon(tmp_path / "run2", disk_body(backend, tmp_path / "queue")) as again:
            wait_until(lambda: tally(acked, backend.delivered_ids()).lost == 0, timeout_s=30, what="recovered data")
            recovered = again.metric("otelpipe_exporter_queue_recovered_spans_total")
        result = tally(acked, backend.delivered_ids())
        assert result.lost == 0
        assert recovered > 0
        # Duplicates are allowed (sent just before the kill, not yet marked done), and they are few.
        assert result.duplicates <= 40


def test_a_corrupt_segment_is_skipped_counted_and_the_rest_delivered(tmp_path: Path) -> None:
    with ThreadedBackend("http", up=False) as backend:
        (tmp_path / "run1").mkdir()
        requests = [traces_request(1, 5) for _ in range(3)]
        with Daemon(tmp_path / "run1", disk_body(backend, tmp_path / "queue")) as d:
            client = GrpcClient(d.grpc_target)
            assert all(client.export(r).ok for r in requests)
            client.close()
            assert d.terminate() == 0  # backend down: the records stay on disk
            assert "kept for the next start" in d.log()
        (segment,) = sorted((tmp_path / "queue").glob("*.seg"))
        data = bytearray(segment.read_bytes())
        third = len(data) // 3
        data[third + third // 2] ^= 0xFF  # inside the second request's bytes
        segment.write_bytes(bytes(data))
        backend.start()
        (tmp_path / "run2").mkdir()
        with Daemon(tmp_path / "run2", disk_body(backend, tmp_path / "queue")) as again:
            first_and_last = span_ids_of(requests[0]) + span_ids_of(requests[2])
            wait_until(lambda: tally(first_and_last, backend.delivered_ids()).lost == 0, what="the good records")
            assert again.metric("otelpipe_exporter_queue_corrupt_records_total") == 1
            assert "corrupt record skipped" in again.log()
            assert again.proc is not None
            assert again.proc.poll() is None
            assert tally(span_ids_of(requests[1]), backend.delivered_ids()).delivered == 0


def test_a_disk_queue_over_its_limit_refuses_then_accepts_again(tmp_path: Path) -> None:
    with ThreadedBackend("http") as backend:
        backend.script(then=Reply.fail_http(503))
        one = len(traces_request(1, 5).SerializeToString()) + 28
        body = disk_body(backend, tmp_path / "queue", extra=f"max_bytes = {3 * one + 10}")
        with Daemon(tmp_path, body) as d:
            client = GrpcClient(d.grpc_target)
            answers = [client.export(traces_request(1, 5)) for _ in range(6)]
            refused = [a for a in answers if not a.ok]
            assert refused
            assert all(a.code == "UNAVAILABLE" and a.retry_after_s == 1.0 for a in refused)
            assert "max_bytes" in refused[0].message
            # HTTP clients get 503 with Retry-After.
            over_http = http_export(d.http_base, traces_request(1, 5))
            assert (over_http.ok, over_http.code, over_http.retry_after_s) == (False, "503", 1.0)
            backend.script(then=Reply.ok())
            late = traces_request(1, 5)
            wait_until(lambda: client.export(late).ok, what="the queue to take data again")
            wait_until(lambda: tally(span_ids_of(late), backend.delivered_ids()).lost == 0, what="delivery")
            client.close()


# ------------------------------------------------------------------------------------------------ signals


def test_sigterm_drains_batches_queues_and_retries_in_flight(tmp_path: Path) -> None:
    with ThreadedBackend("http") as backend:
        backend.script(*[Reply.fail_http(503) for _ in range(5)])  # a few failures: retries in flight at SIGTERM
        body = (
            otlphttp(backend, batch="[exporters.otlphttp.batch]\nsend_batch_size = 50\ntimeout_ms = 10000")
            + "[processors.batch]\nsend_batch_size = 20\ntimeout_ms = 10000\n"
            + pipeline("otlphttp", '"batch"')
        )
        d = Daemon(tmp_path, body).start()
        try:
            client = GrpcClient(d.grpc_target)
            acked: list[bytes] = []
            for _ in range(30):
                request = traces_request(1, 3)
                assert client.export(request).ok
                acked += span_ids_of(request)
            client.close()
            assert d.terminate() == 0
        finally:
            d.__exit__(None, None, None)
        result = tally(acked, backend.delivered_ids())
        assert (result.acknowledged, result.lost) == (90, 0)
        assert '"dropped_items"' not in d.log()  # nothing counted as dropped at the deadline


@pytest.mark.parametrize("queue", ["memory", "disk"])
def test_sighup_keeps_the_port_serving_and_drains_the_old_graph_exactly_once(tmp_path: Path, queue: str) -> None:
    """A changed exporter restarts: with a memory queue the old instance drains into the backend; with a disk
    queue the new instance takes over the same directory (pipeline/exporters/queue/disk.py)."""
    queue_options = f'type = "disk"\npath = "{tmp_path / "queue"}"' if queue == "disk" else ""
    with ThreadedBackend("http") as backend:
        d = Daemon(tmp_path, otlphttp(backend, queue=queue_options) + pipeline("otlphttp")).start()
        acked: list[bytes] = []
        failures: list[str] = []
        stop = threading.Event()

        def load() -> None:
            client = GrpcClient(d.grpc_target)
            for _ in range(3000):
                if stop.is_set():
                    break
                request = traces_request(1, 2)
                answer = client.export(request, timeout_s=5)
                if answer.ok:
                    acked.extend(span_ids_of(request))
                else:
                    failures.append(answer.code)
            client.close()

        worker = threading.Thread(target=load)
        worker.start()
        try:
            assert d.proc is not None
            good = d.config_path.read_text()
            wait_until(lambda: len(acked) >= 100, what="load")
            # Valid: an exporter option and a new batch processor; the receiver is unchanged.
            changed = (
                good.replace("num_consumers = 1", "num_consumers = 4").replace(
                    "processors = []", 'processors = ["batch"]'
                )
                + "\n[processors.batch]\ntimeout_ms = 50\n"
            )
            d.config_path.write_text(changed)
            d.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "new configuration running" in d.log(), what="the reload")
            mark = len(acked)
            wait_until(lambda: len(acked) >= mark + 100, what="load after the reload")
            # Invalid: reported, the running configuration stays.
            d.config_path.write_text(changed.replace("timeout_ms = 50", "timeout_ms = -5"))
            d.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "keeping the running one" in d.log(), what="the invalid reload")
            assert "processors.batch.timeout_ms" in d.log()
            mark = len(acked)
            wait_until(lambda: len(acked) >= mark + 50, what="load after the invalid reload")
        finally:
            stop.set()
            worker.join(timeout=30)
        assert d.terminate() == 0
        d.__exit__(None, None, None)
        assert failures == []  # the port kept serving: not even a retryable refusal
        result = tally(acked, backend.delivered_ids())
        assert result.lost == 0
        assert result.duplicates == 0  # every request went through exactly one graph


@pytest.mark.parametrize("transport", ["grpc"])
def test_refusals_are_unavailable_with_retry_info_never_resource_exhausted(tmp_path: Path, transport: str) -> None:
    """Raw client check of the refusal code: the SDK would retry RESOURCE_EXHAUSTED even without RetryInfo."""
    with ThreadedBackend("http") as backend:
        backend.script(then=Reply.fail_http(503))
        with Daemon(tmp_path, otlphttp(backend, queue="queue_size = 1") + pipeline("otlphttp")) as d:
            client = GrpcClient(d.grpc_target)
            codes = {client.export(traces_request(1, 1)).code for _ in range(5)}
            client.close()
            assert codes <= {"OK", "UNAVAILABLE"}
            assert grpc.StatusCode.RESOURCE_EXHAUSTED.name not in codes
