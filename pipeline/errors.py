"""The one exception tree of otelpipe.

    OtelpipeError
    ├── ConfigError              configuration is invalid; carries every message at once
    ├── StartError               a component could not start (port in use, unreadable file, ...)
    ├── ConsumeError             raised by ``Consumer.consume`` back towards the receiver
    │   ├── Refused              not accepted now, try later (retryable; carries a retry hint)
    │   └── Permanent            bad data, never retry (may be partial: ``rejected`` items)
    └── ExportError              raised by an exporter's send function inside the exporter helper
        ├── RetryableExportError transient (5xx, UNAVAILABLE, connection errors); may carry retry_after_s
        └── PermanentExportError the backend will never take this data (4xx, INVALID_ARGUMENT)

Third-party errors (grpc.RpcError, aiohttp.ClientError, OSError, DecodeError) are translated into this tree at
the edge where they occur, with ``raise ... from``; nothing else crosses a component boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

# Refusals carry a short hint: OTLP clients (the Python SDK: 10 s export timeout) give up on a longer one and
# drop data meanwhile (DESIGN.md section 1).
DEFAULT_RETRY_AFTER_S = 1.0


class OtelpipeError(Exception):
    """Base of every error otelpipe raises on purpose."""


class ConfigError(OtelpipeError):
    """Invalid configuration. ``errors`` holds every problem found, each naming its full TOML key."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__("\n".join(self.errors) if self.errors else "invalid configuration")


class StartError(OtelpipeError):
    """A component could not start; the message names the component and the cause."""


class ConsumeError(OtelpipeError):
    """Raised by ``Consumer.consume``; the receiver translates it into the OTLP status for the client."""


class Refused(ConsumeError):
    """The pipeline cannot hold the data now; the sender should retry after ``retry_after_s``."""

    def __init__(self, reason: str, retry_after_s: float = DEFAULT_RETRY_AFTER_S) -> None:
        self.reason = reason
        self.retry_after_s = retry_after_s
        super().__init__(reason)


class Permanent(ConsumeError):
    """The data is bad and must not be retried.

    ``rejected`` is the number of items refused when only part of the batch was bad (the rest was accepted:
    the receiver answers with partial_success); ``None`` means the whole batch was refused.
    """

    def __init__(self, reason: str, rejected: int | None = None) -> None:
        self.reason = reason
        self.rejected = rejected
        super().__init__(reason)


class ExportError(OtelpipeError):
    """Raised by an exporter's send step; the exporter helper decides whether to retry."""


class RetryableExportError(ExportError):
    """A transient failure; ``retry_after_s`` is the server's hint (Retry-After / RetryInfo) when it gave one."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        self.reason = reason
        self.retry_after_s = retry_after_s
        super().__init__(reason)


class PermanentExportError(ExportError):
    """The backend will never accept this data; it is counted as dropped and not retried."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
