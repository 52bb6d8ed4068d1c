"""``${env:...}`` expansion of single strings and of the whole tree."""

from __future__ import annotations

import pytest

from config.decode import UNRESOLVED, Lenient
from config.envsubst import expand, substitute

ENV = {"A": "alpha", "EMPTY": "", "N": "3"}


@pytest.mark.parametrize(
    ("text", "expected", "substituted"),
    [
        ("plain", "plain", False),
        ("${env:A}", "alpha", True),
        ("x-${env:A}-${env:N}", "x-alpha-3", True),
        ("${env:MISSING:-fallback}", "fallback", True),
        ("${env:MISSING:-}", "", True),
        ("${env:EMPTY:-fallback}", "fallback", True),  # as in the shell, :- covers set-but-empty
        ("${env:EMPTY}", "", True),
        ("${env:A:-unused}", "alpha", True),
        ("$$", "$", False),
        ("$${env:A}", "${env:A}", False),
        ("$$$${env:A}", "$${env:A}", False),
        ("$$${env:A}", "$alpha", True),
        ("cost $5 or $", "cost $5 or $", False),
        ("${env:A:-a:-b}", "alpha", True),
    ],
)
def test_expand(text: str, expected: str, substituted: bool) -> None:
    assert expand(text, ENV) == (expected, [], substituted)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("${env:MISSING}", "environment variable MISSING is not set (write ${env:MISSING:-default} to give a default)"),
        ("${HOME}", "invalid reference '${HOME}': write ${env:NAME} or ${env:NAME:-default} ($$ for a literal $)"),
        ("${env:1X}", "invalid reference '${env:1X}': write ${env:NAME} or ${env:NAME:-default} ($$ for a literal $)"),
        ("a ${env:A", "invalid reference '${env:A': write ${env:NAME} or ${env:NAME:-default} ($$ for a literal $)"),
    ],
)
def test_expand_problems(text: str, problem: str) -> None:
    assert expand(text, ENV)[1] == [problem]


def test_substitute_walks_tables_and_arrays_and_marks_what_it_changed() -> None:
    tree = {"t": {"a": "${env:A}", "list": ["$$", "${env:N}", 7], "n": 1, "missing": "${env:NOPE}"}}

    result, errors = substitute(tree, ENV)

    assert result == {"t": {"a": "alpha", "list": ["$", "3", 7], "n": 1, "missing": UNRESOLVED}}
    assert isinstance(result, dict)
    assert type(result["t"]["a"]) is Lenient
    assert type(result["t"]["list"][0]) is str  # an escape is a literal, decoded strictly
    assert type(result["t"]["list"][1]) is Lenient
    assert errors == ["t.missing: environment variable NOPE is not set (write ${env:NOPE:-default} to give a default)"]


def test_keys_are_never_substituted() -> None:
    result, errors = substitute({"${env:A}": "x"}, ENV)

    assert result == {"${env:A}": "x"}
    assert errors == []
