"""Configuration of the exporter helper: the options every queued exporter shares.

An exporter's config Struct subclasses ``ExporterHelperConfig`` and so takes the collector's blocks with their
option names, units in the keys:

    timeout_ms = 5000                 # per send attempt
    [exporters.x.sending_queue]       # enabled, type ("memory" | "disk"), queue_size (batches), max_bytes,
                                      # num_consumers, when_full ("refuse" | "block"), block_timeout_ms,
                                      # path, fsync ("always" | "interval" | "never"), fsync_interval_ms
    [exporters.x.batch]               # present = batching after the queue: send_batch_size,
                                      # send_batch_max_bytes, timeout_ms
    [exporters.x.retry_on_failure]    # enabled, initial_interval_ms, randomization_factor, multiplier,
                                      # max_interval_ms, max_elapsed_ms

Validation errors name the key relative to the Struct being decoded (msgspec adds the path of nested blocks,
the config loader the ``exporters.<id>`` prefix).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

QueueType = Literal["memory", "disk"]
WhenFull = Literal["refuse", "block"]
# always: acknowledge after fsync (survives power loss); interval: fsync every fsync_interval_ms in the
# background; never: the kernel writes back when it likes. Every policy survives kill -9.
FsyncPolicy = Literal["always", "interval", "never"]


class SendingQueueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the exporter holds between acknowledging a batch and the backend accepting it."""

    enabled: bool = True
    type: QueueType = "memory"
    # In batches (requests), as the collector's default "requests" sizer counts.
    queue_size: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 1000
    # memory: bytes of batches held (queued or being sent), the memory this exporter may pin.
    # disk: bytes of the queue's files on disk.
    max_bytes: Annotated[int, msgspec.Meta(ge=1)] = 268_435_456
    num_consumers: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    # Every buffer says what happens when full: "refuse" answers Refused at once, "block" waits first.
    when_full: WhenFull = "refuse"
    block_timeout_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 1000
    # type = "disk": the queue's directory (created if missing; one exporter per directory).
    path: str = ""
    fsync: FsyncPolicy = "interval"
    fsync_interval_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 1000

    def __post_init__(self) -> None:
        if self.type == "disk" and not self.path:
            raise ValueError('path: required when type = "disk" (the directory that holds the queue)')
        if self.type == "memory" and self.path:
            raise ValueError('path: only used with type = "disk"')


class BatchConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Batching after the queue: requests taken from the queue are merged before they are sent."""

    # Send once this many items (spans, log records, data points) are together.
    send_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 8192
    # Send before the merged request would pass this many bytes; 0 = no byte limit. A single request larger
    # than this is split by items.
    send_batch_max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 0
    # Send what is there this long after its first request was taken from the queue; 0 = no waiting.
    timeout_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)] = 200


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
    """Mixin: subclass it for an exporter's config to get the queue, batch, retry and timeout options."""

    sending_queue: SendingQueueConfig = msgspec.field(default_factory=SendingQueueConfig)
    # Absent = no batching after the queue (each received request is sent as it came).
    batch: BatchConfig | None = None
    retry_on_failure: RetryConfig = msgspec.field(default_factory=RetryConfig)
    # Per send attempt; a hung backend must not hold a queue consumer forever, so there is no "0 = none".
    timeout_ms: Annotated[int, msgspec.Meta(ge=1, le=3_600_000)] = 5000
