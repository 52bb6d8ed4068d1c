"""Fake OTLP backends (gRPC and HTTP) on 127.0.0.1: record every request, answer as scripted.

    backend = GrpcBackend()            # or HttpBackend()
    await backend.start()              # backend.endpoint: "127.0.0.1:PORT" (gRPC) / "http://127.0.0.1:PORT"
    backend.script(Reply.fail_grpc(grpc.StatusCode.UNAVAILABLE), Reply.ok())   # then OK for the rest
    ...
    await backend.wait_requests(2)
    backend.received[0].body           # the request's protobuf bytes (decompressed)
    await backend.stop()

Replies follow the OTLP specs: failures carry a google.rpc.Status (gRPC: RetryInfo in
grpc-status-details-bin; HTTP: a protobuf Status body and Retry-After), success may carry partial_success.
"""

from __future__ import annotations

import asyncio
import gzip
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from aiohttp import web
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from pipeline.model import Signal

SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
}
_REJECTED_FIELD = {
    Signal.TRACES: "rejected_spans",
    Signal.LOGS: "rejected_log_records",
    Signal.METRICS: "rejected_data_points",
}


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    grpc_code: grpc.StatusCode | None = None  # None: OK
    http_status: int = 200
    message: str = ""
    retry_delay_s: float | None = None  # gRPC: RetryInfo.retry_delay; HTTP: Retry-After in seconds
    retry_after: str | None = None  # HTTP: a raw Retry-After value (an HTTP-date, ...)
    rejected: int = 0  # partial_success.rejected_*
    partial_message: str = ""
    hang: asyncio.Event | None = None  # answer only once this is set

    @classmethod
    def ok(cls) -> Reply:
        return cls()

    @classmethod
    def partial(cls, rejected: int, message: str) -> Reply:
        return cls(rejected=rejected, partial_message=message)

    @classmethod
    def fail_grpc(cls, code: grpc.StatusCode, message: str = "", retry_delay_s: float | None = None) -> Reply:
        return cls(grpc_code=code, message=message or code.name.lower(), retry_delay_s=retry_delay_s)

    @classmethod
    def fail_http(
        cls, status: int, message: str = "", retry_delay_s: float | None = None, retry_after: str | None = None
    ) -> Reply:
        return cls(http_status=status, message=message, retry_delay_s=retry_delay_s, retry_after=retry_after)

    @classmethod
    def hanging(cls, release: asyncio.Event) -> Reply:
        return cls(hang=release)

    def response_bytes(self, signal: Signal) -> bytes:
        response = signal.response_type()
        if self.rejected or self.partial_message:
            ps = response.partial_success
            setattr(ps, _REJECTED_FIELD[signal], self.rejected)
            ps.error_message = self.partial_message
        return response.SerializeToString()

    def status(self, code: int) -> status_pb2.Status:
        status = status_pb2.Status(code=code, message=self.message)
        if self.retry_delay_s is not None:
            info = error_details_pb2.RetryInfo()
            info.retry_delay.FromNanoseconds(int(self.retry_delay_s * 1e9))
            detail = any_pb2.Any()
            detail.Pack(info)
            status.details.append(detail)
        return status


@dataclass
class Received:
    signal: Signal
    body: bytes  # protobuf bytes, decompressed
    headers: dict[str, str]  # gRPC metadata or HTTP headers, lower-case keys
    path: str = ""
    raw_body: bytes = b""  # HTTP: as sent on the wire (compressed when Content-Encoding says so)


@dataclass
class _Script:
    replies: deque[Reply] = field(default_factory=deque)
    default: Reply = field(default_factory=Reply)


class _Backend:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._script = _Script()
        self._changed = asyncio.Event()
        self.endpoint = ""

    def script(self, *replies: Reply, then: Reply | None = None) -> None:
        """Answer the next requests with ``replies`` in order, then with ``then`` (default: OK)."""
        self._script.replies.extend(replies)
        if then is not None:
            self._script.default = then

    def _next_reply(self) -> Reply:
        return self._script.replies.popleft() if self._script.replies else self._script.default

    def _record(self, received: Received) -> None:
        self.received.append(received)
        self._changed.set()

    async def wait_requests(self, n: int, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.received) < n:
                self._changed.clear()
                await self._changed.wait()


class GrpcBackend(_Backend):
    """OTLP/gRPC: the three Export services, raw bytes in and out."""

    def __init__(self, tls: tuple[bytes, bytes] | None = None) -> None:
        """``tls``: (private key PEM, certificate chain PEM) to serve TLS instead of plaintext."""
        super().__init__()
        self._tls = tls
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handlers = [
            grpc.method_handlers_generic_handler(
                service,
                {
                    "Export": grpc.unary_unary_rpc_method_handler(
                        self._handler(signal), request_deserializer=None, response_serializer=None
                    )
                },
            )
            for signal, service in SERVICES.items()
        ]
        server.add_generic_rpc_handlers(tuple(handlers))
        if self._tls is None:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([self._tls]))
        await server.start()
        self._server = server
        self.endpoint = f"127.0.0.1:{port}"

    def _handler(self, signal: Signal) -> Callable[[bytes, Any], Awaitable[bytes]]:
        async def export(request: bytes, context: Any) -> bytes:
            headers = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            self._record(Received(signal, request, headers))
            reply = self._next_reply()
            if reply.hang is not None:
                await reply.hang.wait()
            if reply.grpc_code is not None:
                trailing: tuple[tuple[str, bytes], ...] = ()
                if reply.retry_delay_s is not None:
                    details = reply.status(reply.grpc_code.value[0]).SerializeToString()
                    trailing = (("grpc-status-details-bin", details),)
                await context.abort(reply.grpc_code, reply.message, trailing_metadata=trailing)
            return reply.response_bytes(signal)

        return export

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None


class HttpBackend(_Backend):
    """OTLP/HTTP protobuf on any POST path; the signal is read from the path (/v1/traces, .../logs, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        # Keep the body as sent, so tests see the compressed bytes too.
        runner = web.AppRunner(app, auto_decompress=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.endpoint = f"http://{host}:{port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = gzip.decompress(raw) if request.headers.get("Content-Encoding") == "gzip" else raw
        signal = next(s for s in Signal if s.value in request.path)
        headers = {k.lower(): v for k, v in request.headers.items()}
        self._record(Received(signal, body, headers, request.path, raw))
        reply = self._next_reply()
        if reply.hang is not None:
            await reply.hang.wait()
        if reply.http_status == 200:
            return web.Response(body=reply.response_bytes(signal), content_type="application/x-protobuf")
        resp_headers = {}
        if reply.retry_after is not None:
            resp_headers["Retry-After"] = reply.retry_after
        elif reply.retry_delay_s is not None:
            resp_headers["Retry-After"] = str(int(reply.retry_delay_s))
        # gRPC code 14 UNAVAILABLE for 5xx/429, 3 INVALID_ARGUMENT otherwise; clients do not act on it.
        code = 14 if reply.http_status in (429, 502, 503, 504) else 3
        return web.Response(
            status=reply.http_status,
            body=reply.status(code).SerializeToString(),
            content_type="application/x-protobuf",
            headers=resp_headers,
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
