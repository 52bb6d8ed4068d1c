"""Structured log lines: JSON fields, console layout, handler replacement, and formatters that never raise."""

from __future__ import annotations

import io
import logging
import re
import sys
from typing import Any

import msgspec
import pytest

from pipeline.telemetry.logging import ConsoleFormatter, JsonFormatter, OtelpipeHandler, configure_logging

# 2026-11-26T20:00:00.123Z
CREATED = 1795723200.123


pytestmark = pytest.mark.usefixtures("restore_logging")


def record(msg: str = "hello", *, fields: Any = None, args: Any = (), level: int = logging.INFO) -> logging.LogRecord:
    r = logging.LogRecord("otelpipe.receiver.otlp", level, __file__, 1, msg, args, None)
    r.created, r.msecs = CREATED, 123.0
    if fields is not None:
        r.fields = fields
    return r


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def ours() -> list[OtelpipeHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, OtelpipeHandler)]


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_json_line_has_envelope_then_fields() -> None:
    line = JsonFormatter().format(record("accepted %d spans", args=(3,), fields={"receiver": "otlp", "n": 3}))
    assert msgspec.json.decode(line) == {
        "ts": "2026-11-26T20:00:00.123Z",
        "level": "info",
        "logger": "otelpipe.receiver.otlp",
        "msg": "accepted 3 spans",
        "receiver": "otlp",
        "n": 3,
    }
    assert list(msgspec.json.decode(line)) == ["ts", "level", "logger", "msg", "receiver", "n"]


def test_json_values_that_are_not_json_are_stringified() -> None:
    class Endpoint:
        def __str__(self) -> str:
            return "http://loki:3100"

    fields = {
        "endpoint": Endpoint(),
        "nested": {"ids": [1, b"\x01"], "ok": True},
        "huge": 2**70,
        "nan": float("nan"),
        "none": None,
        "ratio": 0.5,
        "bad": Unprintable(),
    }
    out = msgspec.json.decode(JsonFormatter().format(record(fields=fields)))
    assert out["endpoint"] == "http://loki:3100"
    assert out["nested"] == {"ids": [1, "b'\\x01'"], "ok": True}
    assert out["huge"] == str(2**70)
    assert out["nan"] == "nan"
    assert (out["none"], out["ratio"]) == (None, 0.5)
    assert out["bad"] == "<unprintable Unprintable>"


def test_json_field_cannot_overwrite_the_envelope() -> None:
    out = msgspec.json.decode(JsonFormatter().format(record("real", fields={"msg": "fake", "level": "x"})))
    assert (out["msg"], out["level"]) == ("real", "info")
    assert (out["field.msg"], out["field.level"]) == ("fake", "x")


def test_json_exception_goes_under_error() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        raise ValueError("bad frame")
    except ValueError:
        logging.getLogger("otelpipe.exporter.loki").exception("send failed", extra={"fields": {"status": 400}})
    [line] = lines(stream)
    out = msgspec.json.decode(line)
    assert (out["level"], out["msg"], out["status"]) == ("error", "send failed", 400)
    assert out["error"].startswith("Traceback")
    assert "ValueError: bad frame" in out["error"]


def test_formatters_never_raise() -> None:
    broken = record("%d items", args=("not a number",), fields={"k": Unprintable()})
    out = msgspec.json.decode(JsonFormatter().format(broken))
    assert "%d items" in out["msg"]
    assert "bad log args" in out["msg"]
    console = ConsoleFormatter().format(broken)
    assert "%d items" in console
    assert 'k="<unprintable Unprintable>"' in console
    # fields that are not a dict are kept, not dropped
    assert msgspec.json.decode(JsonFormatter().format(record(fields=["a"])))["fields"] == "['a']"


def test_a_failing_record_still_yields_a_line() -> None:
    class Hostile(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("hostile")

    r = record("lost", fields=Hostile(a=1))
    out = msgspec.json.decode(JsonFormatter().format(r))
    assert out["level"] == "error"
    assert "otelpipe.receiver.otlp" in out["msg"]
    assert "hostile" in out["msg"]
    assert "cannot format" in ConsoleFormatter().format(r)


def test_console_layout() -> None:
    line = ConsoleFormatter().format(record("accepted", fields={"spans": 3, "peer": "10.0.0.1:5000", "why": "a b"}))
    assert (
        line == '2026-11-26T20:00:00.123Z INFO  otelpipe.receiver.otlp  accepted  spans=3 peer=10.0.0.1:5000 why="a b"'
    )
    warn = ConsoleFormatter().format(record("slow", level=logging.WARNING))
    assert warn == "2026-11-26T20:00:00.123Z WARN  otelpipe.receiver.otlp  slow"


def test_console_through_configure_logging_with_traceback() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    try:
        raise KeyError("x")
    except KeyError:
        logging.getLogger("otelpipe.graph").error("boom", exc_info=True)
    text = stream.getvalue()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ERROR otelpipe\.graph  boom\n", text)
    assert "KeyError: 'x'" in text


def test_json_timestamp_is_rfc3339_utc_with_ms() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    logging.getLogger("otelpipe").info("up")
    [line] = lines(stream)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", msgspec.json.decode(line)["ts"])


def test_level_applies_to_otelpipe_and_libraries_only_warn() -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    chatty = logging.getLogger("some.library")
    chatty.setLevel(logging.DEBUG)  # a library that lowers its own level still only reaches us from WARNING
    try:
        logging.getLogger("otelpipe.processor.pii").debug("detail")
        logging.getLogger("asyncio").info("asyncio info")
        chatty.info("library info")
        logging.getLogger("asyncio").warning("asyncio warning")
    finally:
        chatty.setLevel(logging.NOTSET)
    assert [(o["logger"], o["msg"]) for o in map(msgspec.json.decode, lines(stream))] == [
        ("otelpipe.processor.pii", "detail"),
        ("asyncio", "asyncio warning"),
    ]


def test_info_level_drops_debug() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    log = logging.getLogger("otelpipe.x")
    log.debug("hidden")
    log.info("shown")
    assert [msgspec.json.decode(line)["msg"] for line in lines(stream)] == ["shown"]


def test_reconfigure_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", first)
    configure_logging("info", "console", second)
    assert len(ours()) == 1
    logging.getLogger("otelpipe.service").info("reloaded")
    assert first.getvalue() == ""
    [line] = lines(second)
    assert line.endswith("otelpipe.service  reloaded")


def test_default_stream_is_stderr_and_other_root_handlers_are_kept() -> None:
    sentinel = logging.NullHandler()
    logging.getLogger().addHandler(sentinel)
    configure_logging("warning", "json")
    [handler] = ours()
    assert handler.stream is sys.stderr
    assert sentinel in logging.getLogger().handlers
    assert logging.getLogger("otelpipe").level == logging.WARNING


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "text")])
def test_rejects_unknown_level_or_format(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match=level if level == "verbose" else fmt):
        configure_logging(level, fmt, io.StringIO())
    assert ours() == []
