"""Structured logs on stderr: one JSON object per line for log pipelines, or an aligned line for people.

Components log to ``otelpipe.*`` loggers and pass structured fields as ``extra={"fields": {...}}``. The one
handler sits on the root logger rather than on ``otelpipe``: records keep propagating, so pytest's caplog and
any handler an embedding program adds still see them. Third-party libraries reach the handler from WARNING up
(asyncio's "Task exception was never retrieved", aiohttp's server errors), whatever level they set themselves.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any, TextIO

import msgspec

ROOT = "otelpipe"
_LIBRARY_MIN_LEVEL = logging.WARNING
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_CORE_KEYS = frozenset({"ts", "level", "logger", "msg", "error", "stack"})
_CONSOLE_LEVEL = {"WARNING": "WARN", "CRITICAL": "CRIT"}
# Nested containers in fields are kept as JSON up to this depth; deeper values are str()'d.
_MAX_DEPTH = 4
_encoder = msgspec.json.Encoder()


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Route otelpipe's logs (at ``level``) and libraries' warnings to ``stream`` (stderr) in ``fmt``.

    Idempotent: calling it again (SIGHUP reload) replaces the handler it installed before, never adds one.
    """
    try:
        lvl = _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}") from None
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    elif fmt == "console":
        formatter = ConsoleFormatter()
    else:
        raise ValueError(f"log format {fmt!r} is not one of json, console")

    handler = OtelpipeHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, OtelpipeHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    # Records below a logger's effective level are never created: otelpipe.* follows the configured level,
    # libraries without a level of their own follow root's.
    root.setLevel(_LIBRARY_MIN_LEVEL)
    logging.getLogger(ROOT).setLevel(lvl)


class OtelpipeHandler(logging.StreamHandler[TextIO]):
    """The handler configure_logging installs; its type marks it for replacement on reconfiguration."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.addFilter(_library_warnings_only)


def _library_warnings_only(record: logging.LogRecord) -> bool:
    name = record.name
    return name == ROOT or name.startswith(ROOT + ".") or record.levelno >= _LIBRARY_MIN_LEVEL


def _timestamp(record: logging.LogRecord) -> str:
    # RFC 3339, UTC, milliseconds: what Loki, Elasticsearch and people all parse without configuration.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # bad %-args in a log call must not lose the line
        return f"{_safe_str(record.msg)} (bad log args: {_safe_str(record.args)})"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    if fields is None:
        return {}
    if not isinstance(fields, dict):
        return {"fields": _safe_str(fields)}
    return fields


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _jsonable(value: object, depth: int = 0) -> object:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        # msgspec encodes 64-bit integers only; bigger ones (hash values, say) keep their digits as a string.
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth < _MAX_DEPTH:
        if isinstance(value, (list, tuple)):
            return [_jsonable(v, depth + 1) for v in value]
        if isinstance(value, dict):
            return {_safe_str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    return _safe_str(value)


def _error_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info:
        if not record.exc_text:
            record.exc_text = formatter.formatException(record.exc_info)
        return record.exc_text
    return record.exc_text or None


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", <fields...>, "error"}``, one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as exc:  # a log line must never take down its caller
            fallback = {"ts": _timestamp(record), "level": "error", "logger": __name__}
            fallback["msg"] = f"cannot format a record of {record.name}: {exc!r}"
            return _encoder.encode(fallback).decode()

    def _format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        for key, value in _fields(record).items():
            k = _safe_str(key)
            # A field cannot overwrite the envelope; it keeps its value under a prefixed name instead.
            out[f"field.{k}" if k in _CORE_KEYS else k] = _jsonable(value)
        error = _error_text(self, record)
        if error:
            out["error"] = error
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return _encoder.encode(out).decode()


class ConsoleFormatter(logging.Formatter):
    """``2026-11-26T20:00:00.123Z INFO  otelpipe.receiver.otlp  message  key=value key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as exc:
            return f"{_timestamp(record)} ERROR {__name__}  cannot format a record of {record.name}: {exc!r}"

    def _format(self, record: logging.LogRecord) -> str:
        level = _CONSOLE_LEVEL.get(record.levelname, record.levelname)
        line = f"{_timestamp(record)} {level:<5} {record.name}  {_message(record)}"
        fields = _fields(record)
        if fields:
            line += "  " + " ".join(f"{_safe_str(k)}={_console_value(v)}" for k, v in fields.items())
        error = _error_text(self, record)
        if error:
            line += "\n" + error
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _console_value(value: object) -> str:
    text = _safe_str(value)
    # logfmt quoting: only when the value would otherwise be ambiguous to read back.
    if not text or any(c in text for c in ' ="\n\t'):
        return _encoder.encode(text).decode()
    return text
