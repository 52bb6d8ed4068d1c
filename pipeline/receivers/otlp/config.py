"""Configuration of the ``otlp`` receiver (``[receivers.otlp]``), named after the collector's options."""

from __future__ import annotations

from typing import Annotated

import msgspec

# 64 MiB, the OTLP recommendation; grpc's own default would be 4 MiB.
DEFAULT_MAX_RECV_BYTES = 64 * 1024 * 1024
# grpc's max_receive_message_length is a C int.
_MAX_RECV_LIMIT = 2**31 - 1


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host without brackets, port); raises ValueError when malformed."""
    host, sep, port_text = endpoint.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port, got {endpoint!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port must be 0..65535, got {endpoint!r}")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"unbalanced brackets in {endpoint!r}")
    host = host.strip("[]")
    if not host or (":" in host and not endpoint.startswith("[")):
        raise ValueError(f"expected host:port (IPv6 hosts in brackets), got {endpoint!r}")
    return host, port


class OtlpReceiverConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # "" turns a transport off. Loopback by default, as the collector: exposing the receiver is a decision.
    # Port 0 binds an ephemeral port (tests).
    grpc_endpoint: str = "127.0.0.1:4317"
    http_endpoint: str = "127.0.0.1:4318"
    # Request size limit after decompression, both transports (413 / RESOURCE_EXHAUSTED beyond it).
    max_recv_bytes: Annotated[int, msgspec.Meta(ge=1, le=_MAX_RECV_LIMIT)] = DEFAULT_MAX_RECV_BYTES
    # Copy gRPC metadata / HTTP headers into Batch.metadata (lower-case keys), e.g. for tenant routing.
    include_metadata: bool = False
    # CORS for browser senders: exact origins or globs ("https://*.example.com", "*"); empty = CORS off.
    cors_allowed_origins: list[str] = msgspec.field(default_factory=list)
    # Request headers allowed beyond the CORS-safelisted ones; "*" allows any.
    cors_allowed_headers: list[str] = msgspec.field(default_factory=list)
    traces_url_path: str = "/v1/traces"
    logs_url_path: str = "/v1/logs"
    metrics_url_path: str = "/v1/metrics"

    def __post_init__(self) -> None:
        # msgspec turns ValueError raised here into a ValidationError; each message names its key.
        if not self.grpc_endpoint and not self.http_endpoint:
            raise ValueError("grpc_endpoint and http_endpoint are both empty: the receiver would serve nothing")
        bound: dict[tuple[str, int], str] = {}
        for key in ("grpc_endpoint", "http_endpoint"):
            value: str = getattr(self, key)
            if not value:
                continue
            try:
                host, port = split_endpoint(value)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
            if port and (host, port) in bound:
                raise ValueError(f"{key}: {value!r} is already used by {bound[host, port]}")
            bound[host, port] = key
        paths: dict[str, str] = {}
        for key in ("traces_url_path", "logs_url_path", "metrics_url_path"):
            path: str = getattr(self, key)
            if not path.startswith("/"):
                raise ValueError(f"{key}: must start with '/', got {path!r}")
            if path in paths:
                raise ValueError(f"{key}: {path!r} is already used by {paths[path]}")
            paths[path] = key
        for origin in self.cors_allowed_origins:
            if not origin:
                raise ValueError("cors_allowed_origins: empty origin")
