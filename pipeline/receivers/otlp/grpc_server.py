"""OTLP/gRPC: the three ``Export`` services on a grpc.aio server, handling raw bytes.

The handlers take and return ``bytes`` (no (de)serializer): the request is parsed once by ``Batch.parse`` and
kept as ``Batch.raw``, and success is answered with the empty response, pre-serialized (``b""``). Services of
signals that feed no pipeline are not registered, so gRPC answers them UNIMPLEMENTED.

Size limit: ``grpc.max_receive_message_length`` is enforced by gRPC's core on the wire size and again while it
inflates a compressed message (grpcio 1.85 stops at the limit, "Decompressed message larger than max"; older
cores inflated first and checked after, which tests/receivers guards against). The core answers
RESOURCE_EXHAUSTED without RetryInfo before our handler runs, so such requests are not in our counters.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import grpc
from grpc import aio

from pipeline.errors import StartError
from pipeline.model import EMPTY_METADATA, Metadata, Signal
from pipeline.receivers.otlp.common import (
    ACCEPTED,
    STATUS_CODE,
    Ingest,
    Outcome,
    Result,
    partial_response,
    rpc_status,
)
from pipeline.receivers.otlp.drain import DrainGate

_SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
}
_EMPTY_RESPONSE = b""  # Export*ServiceResponse with partial_success unset
_GRPC_CODE = {
    Outcome.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Outcome.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Outcome.UNSUPPORTED: grpc.StatusCode.UNIMPLEMENTED,
    Outcome.REFUSED: grpc.StatusCode.UNAVAILABLE,
    Outcome.ERROR: grpc.StatusCode.UNAVAILABLE,
    Outcome.DRAINING: grpc.StatusCode.UNAVAILABLE,
}

Context = aio.ServicerContext[bytes, bytes]
Handler = Callable[[bytes, Context], Coroutine[Any, Any, bytes]]


def _metadata(context: Context) -> Metadata:
    grouped: dict[str, tuple[str, ...]] = {}
    for key, value in context.invocation_metadata() or ():
        # Binary (-bin) values are bytes; Batch.metadata holds text only.
        if isinstance(value, str):
            grouped[key] = (*grouped.get(key, ()), value)
    return grouped


def _answer(context: Context, signal: Signal, result: Result) -> bytes:
    """Render a non-OK result: partial_success, or a status code with details (RetryInfo when retryable)."""
    if result.outcome is Outcome.PARTIAL:
        return partial_response(signal, result).SerializeToString()
    code = _GRPC_CODE[result.outcome]
    context.set_code(code)
    context.set_details(result.message)
    if result.outcome.retryable:
        status = rpc_status(STATUS_CODE[result.outcome], result.message, result.retry_after_s)
        context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    # grpc.aio drops the response message of a call whose code is not OK.
    return _EMPTY_RESPONSE


def _handler(ingest: Ingest, gate: DrainGate, include_metadata: bool) -> Handler:
    signal = ingest.signal

    async def export(request: bytes, context: Context) -> bytes:
        if not gate.enter():
            return _answer(context, signal, ingest.reject(Outcome.DRAINING, ""))
        try:
            result = ingest.admit() or await ingest.raw(
                request, _metadata(context) if include_metadata else EMPTY_METADATA
            )
        finally:
            gate.leave()
        if result is ACCEPTED:
            return _EMPTY_RESPONSE
        return _answer(context, signal, result)

    return export


class GrpcServer:
    def __init__(
        self,
        component: str,
        endpoint: str,
        ingests: Mapping[Signal, Ingest],
        gate: DrainGate,
        max_recv_bytes: int,
        include_metadata: bool,
    ) -> None:
        self._component = component
        self._endpoint = endpoint
        self._ingests = ingests
        self._gate = gate
        self._max_recv_bytes = max_recv_bytes
        self._include_metadata = include_metadata
        self._server: aio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        options = [
            ("grpc.max_receive_message_length", self._max_recv_bytes),
            # The C core sets SO_REUSEPORT by default: a second daemon on this port would silently take half
            # the traffic. Workers that share a port on purpose do it elsewhere.
            ("grpc.so_reuseport", 0),
        ]
        server = aio.server(options=options)
        for signal, ingest in self._ingests.items():
            export = _handler(ingest, self._gate, self._include_metadata)
            # request_deserializer/response_serializer None: the handler sees and returns raw bytes.
            method = grpc.unary_unary_rpc_method_handler(export)
            service = grpc.method_handlers_generic_handler(_SERVICES[signal], {"Export": method})
            server.add_generic_rpc_handlers((service,))
        try:
            port = server.add_insecure_port(self._endpoint)
        except RuntimeError as exc:
            await server.stop(None)
            raise StartError(
                f"{self._component}: cannot listen on gRPC endpoint {self._endpoint}: address in use or not "
                f"available ({exc})"
            ) from exc
        await server.start()
        self._server = server
        self.port = port

    async def stop(self, grace_s: float) -> None:
        """Stop accepting calls; calls still running after ``grace_s`` are cancelled."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(max(0.0, grace_s))
