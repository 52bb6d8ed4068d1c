"""What both transports share: decode, validate, deliver, count; and the OTLP answers built from the outcome.

The transports only move bytes: each request ends in one ``Result``, which the gRPC and HTTP servers render in
their own way (status code, Retry-After or RetryInfo, partial_success body).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2

from pipeline.consumer import Consumer
from pipeline.errors import DEFAULT_RETRY_AFTER_S, Permanent, Refused
from pipeline.model import Batch, Metadata, Request, Response, Signal
from pipeline.receivers.otlp.ids import check_ids
from pipeline.telemetry.metrics import ReceiverMetrics
from pipeline.telemetry.ratelimit import RateLimitedLog

# Error texts travel in gRPC trailers (clients cap those at 8 KiB, and grpc-status-details-bin repeats the
# message) and in response bodies (4 MiB cap): keep them short.
MAX_MESSAGE_CHARS = 1024


class Outcome(enum.Enum):
    """How an export request ended; the value is the ``outcome`` label of otelpipe_receiver_requests_total."""

    OK = "ok"
    PARTIAL = "partial"  # Permanent(rejected=n) downstream: 200 / OK with partial_success
    INVALID = "invalid"  # bad data: 400 / INVALID_ARGUMENT
    TOO_LARGE = "too_large"  # over max_recv_bytes after decompression: 413 (gRPC's core answers it itself)
    UNSUPPORTED = "unsupported"  # content type, encoding, method, or a signal not wired to a pipeline
    REFUSED = "refused"  # Refused downstream: 503 / UNAVAILABLE with a retry hint
    ERROR = "error"  # unexpected exception downstream; the data was not held, so: retryable
    DRAINING = "draining"  # the receiver is shutting down: retryable

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset((Outcome.REFUSED, Outcome.ERROR, Outcome.DRAINING))


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    message: str = ""
    retry_after_s: float = 0.0  # for retryable outcomes
    rejected: int = 0  # for PARTIAL


ACCEPTED = Result(Outcome.OK)
DRAINING = Result(Outcome.DRAINING, "the receiver is shutting down", DEFAULT_RETRY_AFTER_S)


Admission = Callable[[], Refused | None]


def _admit_all() -> Refused | None:
    return None


class Ingest:
    """Decode, validate, deliver and count the export requests of one signal arriving on one transport."""

    __slots__ = ("_admission", "_errors", "_metrics", "_next", "_signal", "_what")

    def __init__(
        self,
        signal: Signal,
        next_: Consumer,
        metrics: ReceiverMetrics,
        errors: RateLimitedLog,
        admission: Admission = _admit_all,
    ) -> None:
        self._signal = signal
        self._next = next_
        self._metrics = metrics
        self._errors = errors
        # Asked before a request is read: the memory limiters' verdict (pipeline/delivery/ledger.py).
        self._admission = admission
        self._what = signal.request_type.DESCRIPTOR.name

    @property
    def signal(self) -> Signal:
        return self._signal

    async def raw(self, raw: bytes, metadata: Metadata) -> Result:
        """A serialized export request (protobuf, decompressed)."""
        try:
            batch = Batch.parse(self._signal, raw, metadata)
        except DecodeError:
            return self.reject(Outcome.INVALID, f"cannot decode the body as an OTLP {self._what}", 0)
        problem = check_ids(self._signal, raw)
        if problem is not None:
            return self.reject(Outcome.INVALID, problem, batch.items)
        return await self.deliver(batch)

    async def message(self, message: Request, metadata: Metadata) -> Result:
        """An export request decoded elsewhere (OTLP/JSON)."""
        batch = Batch.from_message(self._signal, message, metadata)
        problem = check_ids(self._signal, batch.serialize())
        if problem is not None:
            return self.reject(Outcome.INVALID, problem, batch.items)
        return await self.deliver(batch)

    def admit(self) -> Result | None:
        """None when the pipeline may take a request now; otherwise the refusal to answer without reading or
        decoding it (admission control: an over-limit daemon spends no memory on data it cannot hold). The
        items are unknown, so only the request is counted (outcome "refused")."""
        refused = self._admission()
        if refused is None:
            return None
        self._metrics.request(self._signal, Outcome.REFUSED.value)
        return Result(Outcome.REFUSED, refused.reason[:MAX_MESSAGE_CHARS], max(0.0, refused.retry_after_s))

    def reject(self, outcome: Outcome, message: str, items: int = 0) -> Result:
        """Count a request answered without reaching the pipeline (bad data, wrong content type, draining...)."""
        if items:
            self._metrics.refused(self._signal, items)
        self._metrics.request(self._signal, outcome.value)
        if outcome is Outcome.DRAINING:
            return DRAINING
        return Result(outcome, message[:MAX_MESSAGE_CHARS])

    async def deliver(self, batch: Batch) -> Result:
        signal, n, metrics = self._signal, batch.items, self._metrics
        if n == 0:
            # An empty request succeeds without bothering the pipeline (OTLP allows it; the collector does it).
            metrics.request(signal, Outcome.OK.value)
            return ACCEPTED
        try:
            await self._next.consume(batch)
        except Refused as exc:
            metrics.refused(signal, n)
            metrics.request(signal, Outcome.REFUSED.value)
            return Result(Outcome.REFUSED, exc.reason[:MAX_MESSAGE_CHARS], max(0.0, exc.retry_after_s))
        except Permanent as exc:
            if exc.rejected is None:
                return self.reject(Outcome.INVALID, exc.reason, n)
            rejected = min(max(exc.rejected, 0), n)
            metrics.accepted(signal, n - rejected)
            metrics.refused(signal, rejected)
            metrics.request(signal, Outcome.PARTIAL.value)
            return Result(Outcome.PARTIAL, exc.reason[:MAX_MESSAGE_CHARS], rejected=rejected)
        except Exception as exc:  # a bug downstream must not take the server down; CancelledError passes
            metrics.refused(signal, n)
            metrics.request(signal, Outcome.ERROR.value)
            self._errors.log(
                logging.ERROR,
                f"consume:{signal.value}",
                f"unexpected error while delivering {signal.value}; answered as retryable",
                error=f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE_CHARS],
            )
            return Result(Outcome.ERROR, "internal error in the pipeline", DEFAULT_RETRY_AFTER_S)
        metrics.accepted(signal, n)
        metrics.request(signal, Outcome.OK.value)
        return ACCEPTED


# Partial-success field for each signal (opentelemetry-proto *_service.proto).
_REJECTED_FIELD = {
    Signal.TRACES: "rejected_spans",
    Signal.LOGS: "rejected_log_records",
    Signal.METRICS: "rejected_data_points",
}


def partial_response(signal: Signal, result: Result) -> Response:
    response = signal.response_type()
    setattr(response.partial_success, _REJECTED_FIELD[signal], result.rejected)
    response.partial_success.error_message = result.message
    return response


def rpc_status(code: int, message: str, retry_after_s: float | None = None) -> status_pb2.Status:
    """A google.rpc.Status; with a retry hint it carries a google.rpc.RetryInfo detail."""
    status = status_pb2.Status(code=code, message=message[:MAX_MESSAGE_CHARS])
    if retry_after_s is not None:
        info = error_details_pb2.RetryInfo()
        seconds = int(retry_after_s)
        info.retry_delay.seconds = seconds
        info.retry_delay.nanos = round((retry_after_s - seconds) * 1e9)
        status.details.add().Pack(info)
    return status


# google.rpc.Code for each failing outcome (HTTP bodies carry it too; clients do not act on it).
STATUS_CODE = {
    Outcome.INVALID: code_pb2.INVALID_ARGUMENT,
    Outcome.TOO_LARGE: code_pb2.RESOURCE_EXHAUSTED,
    Outcome.UNSUPPORTED: code_pb2.INVALID_ARGUMENT,
    Outcome.REFUSED: code_pb2.UNAVAILABLE,
    Outcome.ERROR: code_pb2.UNAVAILABLE,
    Outcome.DRAINING: code_pb2.UNAVAILABLE,
}
