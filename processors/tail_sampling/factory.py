"""The ``tail_sampling`` processor factory: shareable, so one instance serves a traces and a logs pipeline and
log records can follow their trace's decision."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.component import CreateSettings, Factory, Kind
from pipeline.consumer import Consumer
from pipeline.model import Signal
from processors.tail_sampling.config import TailSamplingConfig
from processors.tail_sampling.processor import TailSamplingProcessor


def _create(
    settings: CreateSettings, cfg: TailSamplingConfig, nexts: Mapping[Signal, Consumer]
) -> TailSamplingProcessor:
    return TailSamplingProcessor(settings, cfg, nexts)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="tail_sampling",
    config_type=TailSamplingConfig,
    create=_create,
    signals=frozenset({Signal.TRACES, Signal.LOGS}),
    shareable=True,
)
