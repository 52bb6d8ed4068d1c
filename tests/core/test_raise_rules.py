"""A code rule the linters do not have: product code never raises an exception held in a local variable.

``refused = Refused(...); raise refused`` makes a reference cycle: the exception's traceback holds the raising
frame, and the frame's locals hold the exception. Everything else the frame holds (on the refusal paths, the
whole parsed request) then waits for the cyclic garbage collector. The memory queue, the disk store and
memory_limiter once held refused requests that way (fixed in d1ebeaa and a55b1a7; this rule finds all four
places in a55b1a7^). tests/support/cycles.py checks those paths at run time. ``raise Error(...)``
and a bare ``raise`` make no cycle. ``except E as exc: raise exc`` makes none either, because Python deletes
the handler's name when the handler ends.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("pipeline", "processors")


def _bound_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names the function binds as locals other than through ``except ... as``: parameters, assignments, loop
    and ``with`` targets, walrus."""
    args = fn.args
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    names.update(a.arg for a in (args.vararg, args.kwarg) if a is not None)
    targets: list[ast.expr] = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign):
            targets.extend(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr, ast.For, ast.AsyncFor, ast.comprehension)):
            targets.append(node.target)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets.extend(item.optional_vars for item in node.items if item.optional_vars is not None)
    for target in targets:
        names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def raises_of_locals(source: str, filename: str = "<source>") -> list[str]:
    """``file:line name`` for every ``raise NAME`` (or ``raise NAME from ...``) where NAME is a local of the
    function around it."""
    found = []
    for fn in ast.walk(ast.parse(source, filename)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        bound = _bound_names(fn)
        for node in ast.walk(fn):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Name) and node.exc.id in bound:
                found.append(f"{filename}:{node.lineno} {node.exc.id}")
    return found


def test_the_rule_finds_a_local_raise() -> None:
    source = (
        "def f(queue):\n"
        "    refused = queue.refusal()\n"
        "    if refused:\n"
        "        raise refused\n"
        "def g(err):\n"
        "    raise err from None\n"
        "def h():\n"
        "    try:\n"
        "        pass\n"
        "    except ValueError as exc:\n"
        "        raise exc\n"
        "    raise RuntimeError('x')\n"
    )
    assert raises_of_locals(source) == ["<source>:4 refused", "<source>:6 err"]


@pytest.mark.parametrize("package", PRODUCT)
def test_product_code_raises_no_local(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    found = [hit for path in files for hit in raises_of_locals(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "raise a new exception where it is made, not one held in a local: " + ", ".join(found)
