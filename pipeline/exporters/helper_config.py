"""Configuration of the exporter helper: the options every queued exporter shares.

An exporter's config Struct subclasses ``ExporterHelperConfig`` and so takes the collector's three blocks with
their option names, units in the keys:

    timeout_ms = 5000                 # per send attempt
    [exporters.x.sending_queue]       # enabled, type, queue_size (batches), max_bytes, num_consumers,
                                      # when_full ("refuse" | "block"), block_timeout_ms
    [exporters.x.retry_on_failure]    # enabled, initial_interval_ms, randomization_factor, multiplier,
                                      # max_interval_ms, max_elapsed_ms

Validation errors name the key relative to the Struct being decoded (msgspec adds the path of nested blocks,
the config loader the ``exporters.<id>`` prefix).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

QUEUE_TYPES = ("memory",)
WHEN_FULL = ("refuse", "block")


class SendingQueueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the exporter holds between acknowledging a batch and the backend accepting it."""

    enabled: bool = True
    type: str = "memory"
    # In batches, as the collector's default "requests" sizer counts.
    queue_size: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 1000
    # Bytes of batches held (queued or being sent): the memory this exporter may pin.
    max_bytes: Annotated[int, msgspec.Meta(ge=1)] = 268_435_456
    num_consumers: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    # Every buffer says what happens when full: "refuse" answers Refused at once, "block" waits first.
    when_full: str = "refuse"
    block_timeout_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 1000

    def __post_init__(self) -> None:
        if self.type == "disk":
            raise ValueError('type: "disk" is not available yet (the persistent queue comes later); use "memory"')
        if self.type not in QUEUE_TYPES:
            raise ValueError(f'type: expected "memory", got {self.type!r}')
        if self.when_full not in WHEN_FULL:
            raise ValueError(f'when_full: expected "refuse" or "block", got {self.when_full!r}')


class RetryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Exponential backoff with jitter, as the collector's ``retry_on_failure``."""

    enabled: bool = True
    initial_interval_ms: Annotated[int, msgspec.Meta(ge=1)] = 5000
    # Each wait is drawn uniformly from interval * [1 - f, 1 + f].
    randomization_factor: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5
    multiplier: Annotated[float, msgspec.Meta(ge=1.0, le=100.0)] = 1.5
    max_interval_ms: Annotated[int, msgspec.Meta(ge=1)] = 30_000
    # Give up (counted as dropped) once the next wait would pass this; 0 retries until shutdown.
    max_elapsed_ms: Annotated[int, msgspec.Meta(ge=0)] = 300_000

    def __post_init__(self) -> None:
        if self.max_interval_ms < self.initial_interval_ms:
            raise ValueError(
                f"max_interval_ms: {self.max_interval_ms} is below initial_interval_ms ({self.initial_interval_ms})"
            )


class ExporterHelperConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Mixin: subclass it for an exporter's config to get the queue, retry and timeout options."""

    sending_queue: SendingQueueConfig = msgspec.field(default_factory=SendingQueueConfig)
    retry_on_failure: RetryConfig = msgspec.field(default_factory=RetryConfig)
    # Per send attempt; a hung backend must not hold a queue consumer forever, so there is no "0 = none".
    timeout_ms: Annotated[int, msgspec.Meta(ge=1, le=3_600_000)] = 5000
