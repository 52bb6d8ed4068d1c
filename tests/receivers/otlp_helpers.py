"""Helpers for the otlp receiver tests: a running receiver on ephemeral ports, raw gRPC and HTTP clients."""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
from grpc import aio

from pipeline.component import CreateSettings, Kind
from pipeline.consumer import Consumer
from pipeline.model import Batch, Signal
from pipeline.receivers.otlp import FACTORY, OtlpReceiver, OtlpReceiverConfig
from tests.support.settings import make_settings

TEST_TIMEOUT_S = 30.0
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
GRPC_METHODS = {
    Signal.TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    Signal.LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    Signal.METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
HTTP_PATHS = {Signal.TRACES: "/v1/traces", Signal.LOGS: "/v1/logs", Signal.METRICS: "/v1/metrics"}


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop, with a deadline (the suite has no asyncio plugin)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(TEST_TIMEOUT_S):
                await fn(*args, **kwargs)

        asyncio.run(bounded())

    return wrapper


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` between event-loop turns until it holds; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    for _ in itertools.count():
        if condition():
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0)
    raise AssertionError("condition not reached before the deadline")


def receiver_settings() -> CreateSettings:
    return make_settings(Kind.RECEIVER, "otlp")


@asynccontextmanager
async def running(
    nexts: Mapping[Signal, Consumer], settings: CreateSettings | None = None, **config: Any
) -> AsyncIterator[OtlpReceiver]:
    """A started receiver on ephemeral loopback ports; shut down on exit."""
    config.setdefault("grpc_endpoint", "127.0.0.1:0")
    config.setdefault("http_endpoint", "127.0.0.1:0")
    receiver = FACTORY.create(settings or receiver_settings(), OtlpReceiverConfig(**config), nexts)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.shutdown(time.monotonic() + 10)


@dataclass
class GrpcReply:
    code: grpc.StatusCode
    details: str | None
    trailing: tuple[tuple[str, str | bytes], ...]
    body: bytes

    def trailer(self, key: str) -> str | bytes | None:
        return next((v for k, v in self.trailing if k == key), None)


async def grpc_export(
    port: int | None,
    signal: Signal,
    body: bytes,
    metadata: tuple[tuple[str, str | bytes], ...] = (),
    compression: grpc.Compression | None = None,
) -> GrpcReply:
    """One raw unary Export call; returns the status instead of raising."""
    async with aio.insecure_channel(f"127.0.0.1:{port}", compression=compression) as channel:
        call = channel.unary_unary(GRPC_METHODS[signal])(body, metadata=metadata, timeout=10)
        try:
            response: bytes = await call
        except aio.AioRpcError as exc:
            return GrpcReply(exc.code(), exc.details(), tuple(exc.trailing_metadata() or ()), b"")
        return GrpcReply(grpc.StatusCode.OK, None, tuple(await call.trailing_metadata() or ()), response)


@dataclass
class HttpReply:
    status: int
    headers: Mapping[str, str]
    body: bytes


async def http_request(
    port: int | None,
    path: str,
    body: bytes = b"",
    content_type: str | None = PROTOBUF,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
) -> HttpReply:
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.request(method, f"http://127.0.0.1:{port}{path}", data=body, headers=all_headers) as response,
    ):
        return HttpReply(response.status, dict(response.headers), await response.read())


def gzip_bytes(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@functools.cache
def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip stream of ``inflated_mib`` MiB of zeros (about 1 KiB per MiB), built without holding it inflated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(inflated_mib)]
    parts.append(compressor.flush())
    return b"".join(parts)


class BlockingConsumer:
    """Holds every consume() until ``release`` is set; ``entered`` is set when the first call arrives."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.batches: list[Batch] = []

    @property
    def mutates_data(self) -> bool:
        return False

    async def consume(self, batch: Batch) -> None:
        self.entered.set()
        await self.release.wait()
        self.batches.append(batch)


class RaisingConsumer:
    """A consumer with a bug."""

    def __init__(self) -> None:
        self.calls = 0

    @property
    def mutates_data(self) -> bool:
        return False

    async def consume(self, batch: Batch) -> None:
        self.calls += 1
        raise RuntimeError("bug in a processor")
