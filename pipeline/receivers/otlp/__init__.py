"""The ``otlp`` receiver: OTLP/gRPC (4317) and OTLP/HTTP (4318) for traces, logs and metrics.

Modules: ``config`` (options), ``receiver`` (lifecycle), ``grpc_server`` / ``http_server`` (transports),
``common`` (decode, validate, deliver, count; outcomes), ``ids`` (id-length check), ``drain`` (shutdown gate),
``decompress`` (bounded inflate), ``cors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.model import Signal
from pipeline.receivers.otlp.config import OtlpReceiverConfig
from pipeline.receivers.otlp.receiver import OtlpReceiver

__all__ = ["FACTORY", "OtlpReceiver", "OtlpReceiverConfig"]


def _create(settings: CreateSettings, config: Any, nexts: Mapping[Signal, Consumer]) -> OtlpReceiver:
    if not isinstance(config, OtlpReceiverConfig):
        raise TypeError(f"otlp receiver: expected OtlpReceiverConfig, got {type(config).__name__}")
    return OtlpReceiver(settings, config, nexts)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type="otlp",
    config_type=OtlpReceiverConfig,
    create=_create,
    signals=frozenset(Signal),
)
