"""The ``otlp`` exporter: OTLP/gRPC to any OTLP backend (Jaeger, Tempo, another collector), all signals.

The batch goes out as the bytes it already has (``batch.serialize()``: the received request while unmodified)
through a raw-bytes unary call, so forwarding costs no decode and no re-encode.

Failures follow the OTLP client table (PROTOCOLS.md 12): UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED, ABORTED,
OUT_OF_RANGE and DATA_LOSS are retried; RESOURCE_EXHAUSTED only when the server attached a google.rpc.RetryInfo
(without it, the request itself is too large and will never fit); everything else is permanent. A RetryInfo
delay is the floor of the next backoff wait.

Config (``[exporters.otlp]``): endpoint = "host:port" (required), insecure = false (TLS with the system roots,
or ca_file), compression = "gzip" | "none", headers = {...} (gRPC metadata), plus the helper options
(timeout_ms, sending_queue, retry_on_failure).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import msgspec
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from pipeline import __version__
from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.errors import ExportError, PermanentExportError, RetryableExportError, StartError
from pipeline.exporters.helper import ExporterHelperConfig, PartialSuccess, QueuedExporter, SleepFn
from pipeline.model import Batch, Signal

METHODS = {
    Signal.TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    Signal.LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    Signal.METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}

RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.DATA_LOSS,
    }
)
STATUS_DETAILS_KEY = "grpc-status-details-bin"
COMPRESSIONS = {"gzip": grpc.Compression.Gzip, "none": grpc.Compression.NoCompression}

# gRPC metadata keys (once lower-cased): token characters. "grpc-" is reserved for the library, and "-bin" keys carry
# bytes, which a TOML string cannot.
_METADATA_KEY = re.compile(r"^[0-9a-z_.\-]+$")


def validate_host_port(endpoint: str, example: str = "jaeger:4317") -> None:
    """Raise ValueError naming ``endpoint`` unless it is ``host:port`` (IPv6 hosts in brackets)."""
    if "://" in endpoint:
        raise ValueError(f"endpoint: expected host:port (for example {example!r}), not a URL: {endpoint!r}")
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or ("[" in host and not (host.startswith("[") and host.endswith("]"))):
        raise ValueError(f"endpoint: expected host:port (for example {example!r}), got {endpoint!r}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"endpoint: the port must be a number from 1 to 65535, got {port!r}")


class OtlpConfig(ExporterHelperConfig, frozen=True, forbid_unknown_fields=True, kw_only=True):
    endpoint: str
    # The collector's default is TLS too: plaintext has to be asked for.
    insecure: bool = False
    # PEM roots to trust instead of the system's (SSL_CERT_FILE, else OpenSSL's default bundle); only with TLS.
    ca_file: str = ""
    compression: str = "gzip"
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_host_port(self.endpoint)
        if self.compression not in COMPRESSIONS:
            raise ValueError(f'compression: expected "gzip" or "none", got {self.compression!r}')
        if self.insecure and self.ca_file:
            raise ValueError("ca_file: set, but insecure = true turns TLS off")
        for key, value in self.headers.items():
            # gRPC metadata keys are lower case; accept "X-Scope-OrgID" as written for HTTP and lower it.
            lower = key.lower()
            if not _METADATA_KEY.match(lower):
                raise ValueError(f"headers.{key}: gRPC metadata keys are letters, digits, '-', '_' and '.'")
            if lower.startswith("grpc-") or lower.endswith("-bin"):
                raise ValueError(f"headers.{key}: 'grpc-' keys are reserved and '-bin' keys carry bytes")
            if not value.isascii() or not value.isprintable():
                raise ValueError(f"headers.{key}: the value must be printable ASCII")


def retry_delay_s(trailing_metadata: Iterable[Any] | None) -> float | None:
    """The google.rpc.RetryInfo delay in ``grpc-status-details-bin``; None when the server sent none.

    ``trailing_metadata`` is what grpc gives: (key, value) pairs.
    """
    for key, value in trailing_metadata or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return max(0.0, float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9))
    return None


def classify(code: grpc.StatusCode, details: str | None, trailing_metadata: Iterable[Any] | None) -> ExportError:
    """Translate a failed call into the helper's retryable / permanent errors (PROTOCOLS.md 12)."""
    reason = f"{code.name}: {details or 'no details'}"
    delay = retry_delay_s(trailing_metadata)
    if code in RETRYABLE_CODES:
        return RetryableExportError(reason, delay)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        if delay is not None:
            return RetryableExportError(reason, delay)
        return PermanentExportError(f"{reason} (no RetryInfo: the request will never fit)")
    return PermanentExportError(reason)


def _read_roots(ca_file: str) -> bytes | None:
    """PEM roots: ca_file, else the system's bundle (grpc would otherwise use the roots it ships with)."""
    if ca_file:
        return Path(ca_file).read_bytes()
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get(paths.openssl_cafile_env), paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return Path(candidate).read_bytes()
    return None


class OtlpGrpcSender:
    """One gRPC channel; each signal's Export method called with the batch's bytes."""

    def __init__(self, cfg: OtlpConfig, exporter_id: str) -> None:
        self._cfg = cfg
        self._id = exporter_id
        self._timeout_s = cfg.timeout_ms / 1000.0
        self._metadata = tuple((k.lower(), v) for k, v in cfg.headers.items())
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[Signal, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}

    async def start(self) -> None:
        cfg = self._cfg
        options = [("grpc.primary_user_agent", f"otelpipe/{__version__}")]
        compression = COMPRESSIONS[cfg.compression]
        if cfg.insecure:
            channel = grpc.aio.insecure_channel(cfg.endpoint, options=options, compression=compression)
        else:
            try:
                roots = await asyncio.to_thread(_read_roots, cfg.ca_file)
            except OSError as exc:
                what = f"ca_file {cfg.ca_file!r}" if cfg.ca_file else "the system CA bundle"
                raise StartError(f"exporter {self._id}: cannot read {what}: {exc}") from exc
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            channel = grpc.aio.secure_channel(cfg.endpoint, credentials, options=options, compression=compression)
        self._channel = channel
        # Serializers None: the request is already bytes and the reply is read only for partial_success.
        self._calls = {
            signal: channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            for signal, method in METHODS.items()
        }

    async def send(self, batch: Batch) -> PartialSuccess | None:
        call = self._calls[batch.signal]
        try:
            reply = await call(batch.serialize(), timeout=self._timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise classify(exc.code(), exc.details(), exc.trailing_metadata()) from exc
        except grpc.aio.UsageError as exc:  # the channel was closed under us: another attempt may find it open
            raise RetryableExportError(f"gRPC channel unusable: {exc}") from exc
        return PartialSuccess.from_otlp_response(batch.signal, reply)

    async def close(self) -> None:
        if self._channel is not None:
            # The helper has drained by now; whatever is still in flight was given up at the deadline.
            await self._channel.close(grace=None)
            self._channel = None


class OtlpExporter(QueuedExporter):
    def __init__(
        self,
        settings: CreateSettings,
        cfg: OtlpConfig,
        *,
        sleep: SleepFn = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(settings, cfg, OtlpGrpcSender(cfg, str(settings.id)), sleep=sleep, rng=rng)


def _create(settings: CreateSettings, cfg: OtlpConfig, nexts: Mapping[Signal, Consumer]) -> OtlpExporter:
    return OtlpExporter(settings, cfg)


FACTORY = Factory(kind=Kind.EXPORTER, type="otlp", config_type=OtlpConfig, create=_create, signals=frozenset(Signal))
