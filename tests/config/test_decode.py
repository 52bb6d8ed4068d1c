"""The key-by-key decoder on shapes the fake components do not cover, and how keys and types are spelt."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import msgspec
import pytest

from config.decode import INVALID, Decoder, Lenient, describe, format_path
from tests.config import fakes


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("receivers", "otlp"), "receivers.otlp"),
        (("processors", "batch/fast", "timeout_ms"), 'processors."batch/fast".timeout_ms'),
        (("processors", "tail_sampling", "policies", 1, "name"), "processors.tail_sampling.policies[1].name"),
        (("a", "http.method", "x y", 'q"', "ü", "9-x_Y"), 'a."http.method"."x y"."q\\""."ü".9-x_Y'),
        (("a", 0, 2), "a[0][2]"),
        (("",), '""'),
    ],
)
def test_format_path_quotes_keys_as_toml_does(path: tuple[str | int, ...], expected: str) -> None:
    assert format_path(path) == expected


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (int, "an integer"),
        (Annotated[int, msgspec.Meta(gt=0, lt=10)], "an integer > 0 and < 10"),
        (Annotated[int, msgspec.Meta(multiple_of=4)], "an integer a multiple of 4"),
        (Annotated[float, msgspec.Meta(ge=0.5)], "a number >= 0.5"),
        (bool, "a boolean (true or false)"),
        (Annotated[str, msgspec.Meta(max_length=1)], "a string of at most 1 character"),
        (Colour, "one of: red, green"),
        (Literal["a", "b"], "one of: a, b"),
        (Annotated[list[int], msgspec.Meta(min_length=2)], "an array of at least 2 items"),
        (dict[str, int], "a table"),
        (fakes.TlsConfig, "a table"),
        (int | str, "an integer or a string"),
        (int | None, "an integer"),
        (Any, "any value"),
    ],
)
def test_describe_speaks_toml(annotation: Any, expected: str) -> None:
    assert describe(annotation) == expected


class Shapes(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    tls: fakes.TlsConfig | None = None
    by_port: dict[int, Colour] = {}
    pair: tuple[int, str] = (1, "a")
    tags: frozenset[str] = frozenset()
    renamed: int = msgspec.field(default=0, name="renamed-key")


def test_optional_struct_int_keyed_dict_set_and_renamed_field_decode() -> None:
    decoder = Decoder()

    shapes = decoder.struct(
        {
            "tls": {"min_version": "1.3"},
            "by_port": {"4317": "red"},
            "pair": [2, "b"],
            "tags": ["x", "y"],
            "renamed-key": 5,
        },
        Shapes,
        ("s",),
    )

    assert decoder.errors == []
    assert shapes == Shapes(
        tls=fakes.TlsConfig(min_version="1.3"),
        by_port={4317: Colour.RED},
        pair=(2, "b"),
        tags=frozenset({"x", "y"}),
        renamed=5,
    )


def test_errors_in_shapes_name_the_key_inside_the_value() -> None:
    decoder = Decoder()

    result = decoder.struct(
        {"tls": 5, "by_port": {"http": "red", "80": "blue"}, "pair": [2, 3], "renamed": 1}, Shapes, ("s",)
    )

    assert result is None
    assert decoder.errors == [
        "s.tls: expected a table (got 5)",
        "s.by_port.http: invalid key: expected an integer (got 'http')",
        "s.by_port.80: expected one of: red, green (got 'blue')",
        # Fixed-length tuples are left to msgspec: its words, our key.
        "s.pair[1]: expected `str`, got `int`",
        "s.renamed: unknown key (known: by_port, pair, renamed-key, tags, tls)",
    ]


def test_lenient_strings_convert_to_numbers_and_booleans_but_literals_do_not() -> None:
    decoder = Decoder()

    assert decoder.value(Lenient("42"), int, ("n",)) == 42
    assert decoder.value(Lenient("true"), bool, ("b",)) is True
    assert decoder.value([Lenient("1.5"), 2], list[float], ("l",)) == [1.5, 2.0]
    assert decoder.value("42", int, ("strict",)) is INVALID
    assert decoder.errors == ["strict: expected an integer (got '42')"]


def test_a_standalone_tagged_struct_checks_its_tag() -> None:
    decoder = Decoder()

    assert decoder.struct({"type": "latency", "name": "x", "threshold_ms": 1}, fakes.LatencyPolicy, ("p",)) == (
        fakes.LatencyPolicy(name="x", threshold_ms=1)
    )
    assert decoder.struct({"type": "other", "name": "x", "threshold_ms": 1}, fakes.LatencyPolicy, ("p",)) is None
    assert decoder.errors == ["p.type: expected 'latency' (got 'other')"]


def test_post_init_runs_only_once_fields_are_clean() -> None:
    decoder = Decoder()

    # send_batch_size is wrong, so the cross-field check (which would also fail) is not run on a guess.
    assert decoder.struct({"send_batch_size": 0, "send_batch_max_size": 1}, fakes.BatchConfig, ("b",)) is None
    assert decoder.errors == ["b.send_batch_size: expected an integer >= 1 (got 0)"]
