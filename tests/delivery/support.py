"""Support for fault tests against the real daemon: fake backends on a thread, raw OTLP clients, accounting.

The fake backends (tests/exporters/backends.py) are asyncio servers; here each runs on its own event-loop
thread so a test can drive the daemon subprocess with blocking clients. A backend can listen on a port chosen in
advance, so "backend down" can mean nothing listens there (connection refused), not only error replies.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc.aio
from aiohttp import web
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.model import Signal
from tests.exporters.backends import SERVICES, GrpcBackend, HttpBackend, Received, Reply
from tests.support.daemon import free_port

T = TypeVar("T")

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class _Accounting:
    """Remembers the reply given to each recorded request: only those answered OK count as delivered."""

    replies: list[Reply]

    def _next_reply(self) -> Reply:
        reply: Reply = super()._next_reply()  # type: ignore[misc]
        self.replies.append(reply)
        return reply


class _HttpOnPort(_Accounting, HttpBackend):
    def __init__(self, port: int) -> None:
        super().__init__()
        self._port = port
        self.replies = []

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, auto_decompress=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self._port, reuse_address=True).start()
        self._runner = runner
        self.endpoint = f"http://127.0.0.1:{self._port}"


class _GrpcOnPort(_Accounting, GrpcBackend):
    def __init__(self, port: int) -> None:
        super().__init__()
        self._port = port
        self.replies = []

    async def start(self) -> None:
        # The parent binds port 0; a fixed port lets a test start the backend late (down = nothing listens).
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handlers = [
            grpc.method_handlers_generic_handler(
                service, {"Export": grpc.unary_unary_rpc_method_handler(self._handler(signal))}
            )
            for signal, service in SERVICES.items()
        ]
        server.add_generic_rpc_handlers(tuple(handlers))
        server.add_insecure_port(f"127.0.0.1:{self._port}")
        await server.start()
        self._server = server
        self.endpoint = f"127.0.0.1:{self._port}"


class ThreadedBackend:
    """``with ThreadedBackend("http") as b:`` a fake OTLP backend on its own loop thread (started later with
    ``start()`` when ``up=False``)."""

    def __init__(self, kind: str = "http", *, up: bool = True) -> None:
        self.kind = kind
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"backend-{kind}", daemon=True)
        self._thread.start()
        self._backend: _HttpOnPort | _GrpcOnPort = _HttpOnPort(self.port) if kind == "http" else _GrpcOnPort(self.port)
        self._up = False
        self._parsed_requests: list[list[bytes]] = []
        if up:
            self.start()

    @property
    def endpoint(self) -> str:
        """What the daemon's exporter is pointed at (valid before the backend is up)."""
        return f"http://127.0.0.1:{self.port}" if self.kind == "http" else f"127.0.0.1:{self.port}"

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout_s)

    def start(self) -> None:
        self._run(self._backend.start())
        self._up = True

    def stop(self) -> None:
        if self._up:
            self._run(self._backend.stop())
            self._up = False

    def script(self, *replies: Reply, then: Reply | None = None, clear: bool = False) -> None:
        """Answer the next requests with ``replies``, then with ``then``; ``clear`` drops replies still scripted."""

        async def apply() -> None:
            if clear:
                self._backend._script.replies.clear()
            self._backend.script(*replies, then=then)

        self._run(apply())

    def received(self) -> list[Received]:
        """Requests the backend answered with success (what it stored), in arrival order."""

        async def copy() -> list[Received]:
            replies = self._backend.replies
            return [r for r, reply in zip(self._backend.received, replies, strict=False) if _stored(reply)]

        return self._run(copy())

    def delivered_ids(self) -> list[bytes]:
        """Span ids of every request answered with success, in arrival order (parsed once, incrementally)."""
        received = self.received()
        for r in received[len(self._parsed_requests) :]:
            self._parsed_requests.append(span_ids_of(ExportTraceServiceRequest.FromString(r.body)))
        return [i for ids in self._parsed_requests for i in ids]

    def requests(self) -> int:
        """Every request that reached the backend, whatever it answered."""

        async def count() -> int:
            return len(self._backend.received)

        return self._run(count())

    def release(self, event: asyncio.Event) -> None:
        """Set an event a ``Reply.hanging`` waits on (it belongs to the backend's loop)."""
        self._loop.call_soon_threadsafe(event.set)

    def new_event(self) -> asyncio.Event:
        async def make() -> asyncio.Event:
            return asyncio.Event()

        return self._run(make())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ThreadedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stored(reply: Reply) -> bool:
    return reply.grpc_code is None and reply.http_status == 200


# -- clients ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    ok: bool
    code: str  # gRPC status name, or the HTTP status as text
    retry_after_s: float | None  # RetryInfo / Retry-After
    message: str = ""


class GrpcClient:
    """A raw OTLP/gRPC client (no retries: the Python SDK retries some codes by itself)."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target)
        self._call = self._channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)

    def export(self, request: ExportTraceServiceRequest, timeout_s: float = 10.0) -> Answer:
        try:
            self._call(request.SerializeToString(), timeout=timeout_s)
        except grpc.RpcError as exc:
            return Answer(False, exc.code().name, _retry_info(exc.trailing_metadata()), exc.details() or "")
        return Answer(True, "OK", None)

    def close(self) -> None:
        self._channel.close()


def _retry_info(trailers: Iterable[Any] | None) -> float | None:
    for key, value in trailers or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def http_export(base: str, request: ExportTraceServiceRequest, timeout_s: float = 10.0) -> Answer:
    req = urllib.request.Request(
        f"{base}/v1/traces", data=request.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return Answer(True, str(r.status), None)
    except urllib.error.HTTPError as exc:
        retry_after = exc.headers.get("Retry-After")
        body = exc.read()
        message = status_pb2.Status.FromString(body).message if body else ""
        return Answer(False, str(exc.code), float(retry_after) if retry_after else None, message)


# -- accounting -------------------------------------------------------------------------------------------------


def span_ids_of(request: ExportTraceServiceRequest) -> list[bytes]:
    return [s.span_id for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def delivered_span_ids(received: list[Received]) -> list[bytes]:
    """Every span id the backend received, in arrival order (duplicates included)."""
    out: list[bytes] = []
    for r in received:
        if r.signal is Signal.TRACES:
            out.extend(span_ids_of(ExportTraceServiceRequest.FromString(r.body)))
    return out


@dataclass(frozen=True)
class Tally:
    acknowledged: int
    delivered: int  # distinct acknowledged items the backend has
    duplicates: int  # extra copies of items the backend has more than once
    lost: int  # acknowledged, never delivered


def tally(acked: Iterable[bytes], delivered: list[bytes]) -> Tally:
    """Acknowledged span ids against what the backend stored (``ThreadedBackend.delivered_ids()``)."""
    acked_set = set(acked)
    distinct = set(delivered)
    return Tally(
        acknowledged=len(acked_set),
        delivered=len(acked_set & distinct),
        duplicates=len(delivered) - len(distinct),
        lost=len(acked_set - distinct),
    )
