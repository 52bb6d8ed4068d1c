"""OTLP/HTTP on aiohttp's low-level server: POST protobuf or JSON to the signal paths, reply in the same type.

aiohttp's own body handling is bypassed on purpose: it inflates gzip bodies without bound and answers an
oversized body with a text page. This handler reads the body itself up to ``max_recv_bytes``, inflates with
a bounded inflater, and answers every failure with a google.rpc.Status in the request's content type.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf.message import Message

from pipeline import otlpjson
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
from pipeline.receivers.otlp.cors import CorsPolicy
from pipeline.receivers.otlp.decompress import CorruptBody, TooLarge, UnsupportedEncoding, decode_body
from pipeline.receivers.otlp.drain import DrainGate

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class _Codec:
    content_type: str
    success: bytes  # the full-success response, pre-encoded
    encode: Callable[[Signal, Message], bytes]


_PROTOBUF_CODEC = _Codec(PROTOBUF, b"", lambda _signal, message: message.SerializeToString())
_JSON_CODEC = _Codec(JSON, b"{}", otlpjson.encode)
_CODECS = {PROTOBUF: _PROTOBUF_CODEC, JSON: _JSON_CODEC}

_HTTP_STATUS = {
    Outcome.OK: 200,
    Outcome.PARTIAL: 200,
    Outcome.INVALID: 400,
    Outcome.TOO_LARGE: 413,
    Outcome.UNSUPPORTED: 415,
    Outcome.REFUSED: 503,
    Outcome.ERROR: 503,
    Outcome.DRAINING: 503,
}
_NOT_FOUND = 5  # google.rpc.Code
_UNIMPLEMENTED = 12


def _content_type(value: str) -> str:
    """The media type without parameters (charset and the like are ignored)."""
    return value.partition(";")[0].strip().lower()


def _metadata(request: web.BaseRequest) -> Metadata:
    grouped: dict[str, tuple[str, ...]] = {}
    for key, value in request.headers.items():
        name = key.lower()
        grouped[name] = (*grouped.get(name, ()), value)
    return grouped


class _IncompleteBody(Exception):
    """The client went away, or broke the framing, before the body was complete."""


async def _read_body(request: web.BaseRequest, limit: int) -> bytes | None:
    """The raw body, or None as soon as it grows past ``limit`` (the rest is never read)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = await request.content.readany()
        except (ConnectionError, HttpProcessingError) as exc:
            # Expected on real networks: answered (to nobody, usually) and counted, not logged per request.
            raise _IncompleteBody(f"incomplete request body: {exc}") from None
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class HttpServer:
    def __init__(
        self,
        component: str,
        host: str,
        port: int,
        routes: Mapping[str, Ingest],
        unrouted: frozenset[str],
        gate: DrainGate,
        max_recv_bytes: int,
        include_metadata: bool,
        cors: CorsPolicy,
        logger: logging.Logger,
    ) -> None:
        self._component = component
        self._host = host
        self._routes = dict(routes)
        self._unrouted = unrouted  # configured paths of signals that feed no pipeline: 404
        self._gate = gate
        self._limit = max_recv_bytes
        self._include_metadata = include_metadata
        self._cors = cors
        self._logger = logger
        self._requested_port = port
        self._web: web.Server | None = None
        self._listener: asyncio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        web_server = web.Server(
            self._handle,
            access_log=None,  # one log line per request is a cost the hot path does not pay
            auto_decompress=False,  # we inflate ourselves, bounded (see the module docstring)
            logger=self._logger,
        )
        loop = asyncio.get_running_loop()
        try:
            listener = await loop.create_server(
                web_server, self._host, self._requested_port, reuse_address=True, backlog=1024
            )
        except OSError as exc:
            await web_server.shutdown(0)
            endpoint = f"{self._host}:{self._requested_port}"
            raise StartError(f"{self._component}: cannot listen on HTTP endpoint {endpoint}: {exc}") from exc
        self._web, self._listener = web_server, listener
        self.port = listener.sockets[0].getsockname()[1]

    async def stop(self, grace_s: float) -> None:
        """Stop listening, close idle connections, give running handlers ``grace_s``, then cancel them."""
        web_server, listener = self._web, self._listener
        self._web = self._listener = None
        if listener is not None:
            listener.close()
        if web_server is not None:
            web_server.pre_shutdown()
            await web_server.shutdown(max(0.0, grace_s))
        if listener is not None:
            await listener.wait_closed()

    # -- request handling ------------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        ingest = self._routes.get(request.path)
        ctype = _content_type(request.headers.get("Content-Type", ""))
        codec = _CODECS.get(ctype)
        reply_codec = codec or _JSON_CODEC  # unknown types get readable JSON
        cors = self._cors.response_headers(request.headers.get("Origin")) if self._cors.enabled else None
        if ingest is None:
            what = "is not wired to a pipeline" if request.path in self._unrouted else "is not an OTLP path"
            status = rpc_status(_NOT_FOUND, f"{request.path[:200]} {what}")
            # A Status has no ids, so the signal given to the JSON codec does not matter.
            return self._respond(404, reply_codec, reply_codec.encode(Signal.TRACES, status), cors)
        if request.method != "POST":
            return self._not_post(request, ingest, reply_codec, cors)
        if codec is None:
            message = f"unsupported Content-Type {ctype[:64]!r}: use {PROTOBUF} or {JSON}"
            return self._render(ingest.signal, ingest.reject(Outcome.UNSUPPORTED, message), reply_codec, cors)
        if not self._gate.enter():
            return self._render(ingest.signal, ingest.reject(Outcome.DRAINING, ""), codec, cors)
        try:
            early = ingest.admit()
            result = early or await self._export(request, ingest, codec)
        finally:
            self._gate.leave()
        response = self._render(ingest.signal, result, codec, cors)
        if early is not None or result.outcome is Outcome.TOO_LARGE:
            response.force_close()  # the body (or the rest of it) was never read
        return response

    async def _export(self, request: web.BaseRequest, ingest: Ingest, codec: _Codec) -> Result:
        too_large = f"request body larger than max_recv_bytes ({self._limit} bytes, after decompression)"
        length = request.content_length
        if length is not None and length > self._limit:
            return ingest.reject(Outcome.TOO_LARGE, too_large)
        if request.headers.get("Expect", "").lower() == "100-continue":
            # The low-level server has no router to do this for us.
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = await _read_body(request, self._limit)
        except _IncompleteBody as exc:
            return ingest.reject(Outcome.INVALID, str(exc))
        if body is None:
            return ingest.reject(Outcome.TOO_LARGE, too_large)
        try:
            data = decode_body(body, request.headers.get("Content-Encoding", ""), self._limit)
        except TooLarge:
            return ingest.reject(Outcome.TOO_LARGE, too_large)
        except UnsupportedEncoding as exc:
            return ingest.reject(Outcome.UNSUPPORTED, str(exc))
        except CorruptBody as exc:
            return ingest.reject(Outcome.INVALID, str(exc))
        metadata = _metadata(request) if self._include_metadata else EMPTY_METADATA
        if codec is _PROTOBUF_CODEC:
            return await ingest.raw(data, metadata)
        try:
            message = otlpjson.decode(ingest.signal, data)
        except otlpjson.JsonDecodeError as exc:
            return ingest.reject(Outcome.INVALID, str(exc))
        except RecursionError:  # json.loads on "[[[[..." nested deeper than the interpreter's stack
            return ingest.reject(Outcome.INVALID, "invalid JSON: nested too deeply")
        return await ingest.message(message, metadata)

    def _not_post(
        self, request: web.BaseRequest, ingest: Ingest, codec: _Codec, cors: dict[str, str] | None
    ) -> web.Response:
        if request.method == "OPTIONS" and self._cors.enabled:
            preflight = self._cors.preflight(request.headers)
            if preflight is not None:
                return web.Response(status=204, headers=preflight)
        ingest.reject(Outcome.UNSUPPORTED, "")
        status = rpc_status(_UNIMPLEMENTED, f"method {request.method[:16]} not allowed: use POST")
        response = self._respond(405, codec, codec.encode(ingest.signal, status), cors)
        response.headers["Allow"] = "POST, OPTIONS" if self._cors.enabled else "POST"
        return response

    def _render(self, signal: Signal, result: Result, codec: _Codec, cors: dict[str, str] | None) -> web.Response:
        if result is ACCEPTED:
            return self._respond(200, codec, codec.success, cors)
        if result.outcome is Outcome.PARTIAL:
            return self._respond(200, codec, codec.encode(signal, partial_response(signal, result)), cors)
        body = codec.encode(signal, rpc_status(STATUS_CODE[result.outcome], result.message))
        response = self._respond(_HTTP_STATUS[result.outcome], codec, body, cors)
        if result.outcome.retryable:
            response.headers["Retry-After"] = str(max(0, math.ceil(result.retry_after_s)))
        return response

    @staticmethod
    def _respond(status: int, codec: _Codec, body: bytes, cors: dict[str, str] | None) -> web.Response:
        return web.Response(status=status, body=body, content_type=codec.content_type, headers=cors)
