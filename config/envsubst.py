"""``${env:NAME}`` substitution in every string value of the merged TOML tree, before decoding.

Syntax, as the collector's env provider: ``${env:NAME}``, ``${env:NAME:-default}``; ``$$`` is a literal ``$``;
a ``$`` followed by anything else stays as written. Unlike the collector, whose unset variables silently
become empty strings, an unset variable without a default is an error: a missing API key or port should stop
the daemon before it starts, not surface as a confusing backend error later. As in the shell, ``:-`` also
applies when the variable is set but empty.

Only values are substituted, never keys: component ids and pipeline names must be readable in the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from config.decode import UNRESOLVED, Lenient, Path, at

_REFERENCE = re.compile(r"\$\{env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def substitute(tree: object, env: Mapping[str, str], path: Path = ()) -> tuple[object, list[str]]:
    """Return the tree with every string expanded, and one error per failed reference.

    A string that contained a reference becomes a ``Lenient`` string (decoded with msgspec ``strict=False``,
    so ``"${env:PORT}"`` can fill an integer); a string whose expansion failed becomes ``UNRESOLVED`` so the
    decoder does not report it a second time.
    """
    errors: list[str] = []
    return _walk(tree, env, path, errors), errors


def _walk(value: object, env: Mapping[str, str], path: Path, errors: list[str]) -> object:
    if isinstance(value, dict):
        return {key: _walk(item, env, (*path, key), errors) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, env, (*path, i), errors) for i, item in enumerate(value)]
    if isinstance(value, str) and "$" in value:
        expanded, problems, substituted = expand(value, env)
        if problems:
            errors.extend(at(path, problem) for problem in problems)
            return UNRESOLVED
        return Lenient(expanded) if substituted else expanded
    return value


def expand(text: str, env: Mapping[str, str]) -> tuple[str, list[str], bool]:
    """Expand one string: (result, problems, whether any reference was substituted)."""
    out: list[str] = []
    problems: list[str] = []
    substituted = False
    pos = 0
    while (dollar := text.find("$", pos)) >= 0:
        out.append(text[pos:dollar])
        if text.startswith("$$", dollar):
            out.append("$")
            pos = dollar + 2
        elif text.startswith("${", dollar):
            match = _REFERENCE.match(text, dollar)
            if match is None:
                end = text.find("}", dollar)
                written = text[dollar:] if end < 0 else text[dollar : end + 1]
                problems.append(
                    f"invalid reference {written!r}: write ${{env:NAME}} or ${{env:NAME:-default}} ($$ for a literal $)"
                )
                pos = dollar + 2
                continue
            name, default = match["name"], match["default"]
            found = env.get(name)
            if found is None or (found == "" and default is not None):
                if default is None:
                    problems.append(
                        f"environment variable {name} is not set (write ${{env:{name}:-default}} to give a default)"
                    )
                found = default or ""
            out.append(found)
            substituted = True
            pos = match.end()
        else:
            out.append("$")
            pos = dollar + 1
    out.append(text[pos:])
    return "".join(out), problems, substituted
