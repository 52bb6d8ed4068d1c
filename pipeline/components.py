"""The registry of every built-in component. Adding a component = one import and one line here."""

from __future__ import annotations

from pipeline.component import Registry
from pipeline.connectors import forward
from pipeline.exporters import debug, file, nop, otlp, otlphttp
from pipeline.receivers import otlp as otlp_receiver
from processors import batch, memory_limiter, pii, tail_sampling


def default_registry() -> Registry:
    return Registry(
        [
            otlp_receiver.FACTORY,
            otlp.FACTORY,
            otlphttp.FACTORY,
            file.FACTORY,
            debug.FACTORY,
            nop.FACTORY,
            forward.FACTORY,
            pii.FACTORY,
            tail_sampling.FACTORY,
            batch.FACTORY,
            memory_limiter.FACTORY,
        ]
    )
