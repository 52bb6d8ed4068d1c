"""The ``otlphttp`` exporter: OTLP/HTTP with protobuf bodies, all signals.

The batch's bytes are posted as they are (gzip-compressed unless compression = "none"). Replies follow the
OTLP/HTTP spec (PROTOCOLS.md 18-20): 2xx is success (a 200 body may carry partial_success, never retried);
429, 502, 503 and 504 and connection failures are retried, with Retry-After (seconds or an HTTP-date) as the
floor of the next wait; every other status is permanent, and the google.rpc.Status message of its body goes
into the (rate-limited) drop log.

Config (``[exporters.otlphttp]``): endpoint = base URL ("http://host:4318"; /v1/traces, /v1/logs, /v1/metrics
are appended), traces_endpoint / logs_endpoint / metrics_endpoint = full URLs that override it per signal,
compression = "gzip" | "none", headers = {...}, plus the helper options (timeout_ms, sending_queue,
retry_on_failure).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp
import msgspec
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from pipeline import __version__
from pipeline.clock import Clock
from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.errors import ConfigError, PermanentExportError, RetryableExportError
from pipeline.exporters.helper import (
    ExporterHelperConfig,
    PartialSuccess,
    QueuedExporter,
    SleepFn,
    parse_retry_after,
)
from pipeline.model import Batch, Signal

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
COMPRESSIONS = ("gzip", "none")
PROTOBUF = "application/x-protobuf"
# Headers the exporter owns: a user value would make the body unreadable to the backend.
_RESERVED_HEADERS = frozenset({"content-type", "content-encoding", "content-length", "transfer-encoding", "host"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Failure bodies are for a log line; keep them short.
_MAX_MESSAGE_CHARS = 512
# gzip level 1: ~2x faster than the default 6 for a few percent more bytes (DESIGN.md section 4).
_GZIP_LEVEL = 1


def _validate_url(key: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{key}: expected an http:// or https:// URL, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{key}: a query or fragment is not allowed in {url!r}")


class OtlpHttpConfig(ExporterHelperConfig, frozen=True, forbid_unknown_fields=True, kw_only=True):
    endpoint: str = ""
    traces_endpoint: str = ""
    logs_endpoint: str = ""
    metrics_endpoint: str = ""
    compression: str = "gzip"
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (self.endpoint or self.traces_endpoint or self.logs_endpoint or self.metrics_endpoint):
            raise ValueError('endpoint: required, a base URL such as "http://otel-collector:4318"')
        for key in ("endpoint", "traces_endpoint", "logs_endpoint", "metrics_endpoint"):
            value: str = getattr(self, key)
            if value:
                _validate_url(key, value)
        if self.compression not in COMPRESSIONS:
            raise ValueError(f'compression: expected "gzip" or "none", got {self.compression!r}')
        for name, value in self.headers.items():
            if not _TOKEN.match(name):
                raise ValueError(f"headers.{name}: not a valid HTTP header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"headers.{name}: set by the exporter itself")
            if "\r" in value or "\n" in value:
                raise ValueError(f"headers.{name}: the value must be a single line")

    def url(self, signal: Signal) -> str | None:
        """Where ``signal`` is posted: its override, else the base endpoint plus /v1/<signal>."""
        override: str = getattr(self, f"{signal.value}_endpoint")
        if override:
            return override
        if self.endpoint:
            return f"{self.endpoint.rstrip('/')}/v1/{signal.value}"
        return None


def status_message(payload: bytes, content_type: str) -> str:
    """The developer-facing message of a failure body: a google.rpc.Status (protobuf or JSON), else its text."""
    if not payload:
        return ""
    if content_type == "application/json":
        try:
            doc = json.loads(payload)
        except ValueError:
            pass
        else:
            if isinstance(doc, dict) and isinstance(doc.get("message"), str):
                return str(doc["message"])[:_MAX_MESSAGE_CHARS]
    elif content_type == PROTOBUF:
        status = status_pb2.Status()
        try:
            status.ParseFromString(payload)
        except DecodeError:
            pass
        else:
            return str(status.message)[:_MAX_MESSAGE_CHARS]
    return payload[:_MAX_MESSAGE_CHARS].decode("utf-8", "replace")


class OtlpHttpSender:
    """One aiohttp ClientSession (connection pool), opened in start() and closed after the drain."""

    def __init__(self, cfg: OtlpHttpConfig, urls: Mapping[Signal, str], clock: Clock) -> None:
        self._urls = dict(urls)
        self._gzip = cfg.compression == "gzip"
        self._clock = clock
        headers = {"User-Agent": f"otelpipe/{__version__}", **cfg.headers, "Content-Type": PROTOBUF}
        if self._gzip:
            headers["Content-Encoding"] = "gzip"
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # No session-wide timeout: the helper bounds each attempt (timeout_ms) and counts its expiry.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def send(self, batch: Batch) -> PartialSuccess | None:
        assert self._session is not None, "send before start"
        url = self._urls[batch.signal]
        body = batch.serialize()
        if self._gzip:
            body = gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)
        try:
            async with self._session.post(url, data=body, headers=self._headers) as resp:
                payload = await resp.read()
                status = resp.status
                content_type = resp.content_type
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # Refused, reset or cut off before a full reply: the spec says retry.
            raise RetryableExportError(f"POST {url}: {type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise PermanentExportError(f"POST {url}: {type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            if content_type != PROTOBUF:
                return None
            return PartialSuccess.from_otlp_response(batch.signal, payload)
        reason = f"HTTP {status} from {url}"
        message = status_message(payload, content_type)
        if message:
            reason = f"{reason}: {message}"
        if status in RETRYABLE_STATUSES:
            retry_after_s = parse_retry_after(retry_after, self._clock.time_ns() / 1e9)
            raise RetryableExportError(reason, retry_after_s)
        raise PermanentExportError(reason)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class OtlpHttpExporter(QueuedExporter):
    def __init__(
        self,
        settings: CreateSettings,
        cfg: OtlpHttpConfig,
        *,
        sleep: SleepFn = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        urls: dict[Signal, str] = {}
        missing = []
        for signal in sorted(settings.signals, key=lambda s: s.value):
            url = cfg.url(signal)
            if url is None:
                missing.append(signal.value)
            else:
                urls[signal] = url
        if missing:
            # The config alone cannot tell: it depends on the pipelines this exporter is used in.
            raise ConfigError(
                [
                    f"exporters.{settings.id}.endpoint: required for the {s} pipeline (or set {s}_endpoint)"
                    for s in missing
                ]
            )
        super().__init__(settings, cfg, OtlpHttpSender(cfg, urls, settings.clock), sleep=sleep, rng=rng)


def _create(settings: CreateSettings, cfg: OtlpHttpConfig, nexts: Mapping[Signal, Consumer]) -> OtlpHttpExporter:
    return OtlpHttpExporter(settings, cfg)


FACTORY = Factory(
    kind=Kind.EXPORTER, type="otlphttp", config_type=OtlpHttpConfig, create=_create, signals=frozenset(Signal)
)
