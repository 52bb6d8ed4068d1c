"""Helpers for the pii tests: build engines from config tables, run requests through them, read strings back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
from google.protobuf.message import Message

from pipeline.model import Request, Signal
from processors.pii.config import PiiConfig
from processors.pii.engine import Engine, Outcome

HASH_KEY = "0123456789abcdef-test-key"


def config(**table: Any) -> PiiConfig:
    return msgspec.convert(table, PiiConfig)


def engine(**table: Any) -> Engine:
    return Engine(config(**table))


def mask(text: str, **table: Any) -> str | None:
    """A string masked as a span attribute value would be (None: the attribute was dropped)."""
    return engine(**table).mask_text(text)


def process(eng: Engine, signal: Signal, message: Request) -> Outcome:
    """Run one request through the engine the way the processor does (bytes from the message); the message
    is replaced by the masked request, as the batch passed on would hold it."""
    out = eng.process(signal, message.SerializeToString())
    if out.raw is not None:
        message.Clear()
        message.ParseFromString(out.raw)
    return out


def strings(message: Message) -> Iterator[str]:
    """Every string field anywhere in a protobuf message (keys included)."""
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            items = value if field.is_repeated else [value]
            for item in items:
                yield from strings(item)
        elif field.type == field.TYPE_STRING:
            yield from (value if field.is_repeated else [value])
