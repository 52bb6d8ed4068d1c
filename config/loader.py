"""Load TOML configuration files into a checked ``Config``, or raise ``ConfigError`` with every problem.

Order of work, each step collecting all its errors before the next runs where it can:
1. read and parse each file (a syntax error names file, line and column; nothing else runs after one);
2. deep-merge the files in order, as the collector merges several ``--config`` files;
3. substitute ``${env:NAME}`` in every string value (config.envsubst);
4. decode ``[service]`` and every component table into its factory's Struct, key by key (config.decode);
5. parse ``[pipelines.*]`` and check references, signals, connectors, cycles and ports (config.checks).
Every error message starts with the full TOML key it is about (DESIGN.md section 3).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path as FsPath
from typing import Any

import msgspec

from config.checks import Defined, check_pipelines
from config.decode import Decoder, at, show
from config.envsubst import substitute
from config.model import Config, ServiceConfig
from pipeline.component import ComponentId, Factory, Kind, Registry
from pipeline.errors import ConfigError

TOP_LEVEL_TABLES = ("service", "receivers", "processors", "exporters", "connectors", "pipelines")

_TOML_POSITION = re.compile(r"^(?P<message>.*) \(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)$")


def load_config(
    paths: Sequence[str | os.PathLike[str]], registry: Registry, env: Mapping[str, str] | None = None
) -> Config:
    """Read, merge, substitute, decode and check the given files (later files override earlier ones)."""
    texts: list[tuple[str, str]] = []
    errors: list[str] = []
    for path in paths:
        name = os.fspath(path)
        try:
            texts.append((name, FsPath(path).read_bytes().decode("utf-8")))
        except OSError as exc:
            errors.append(f"{name}: cannot read: {exc.strerror or exc}")
        except UnicodeDecodeError as exc:
            errors.append(f"{name}: not UTF-8 text (invalid byte at offset {exc.start})")
    return _load(texts, registry, os.environ if env is None else env, errors)


def load_config_text(
    texts: Sequence[tuple[str, str]], registry: Registry, env: Mapping[str, str] | None = None
) -> Config:
    """Like ``load_config`` for in-memory documents: ``(name, toml_text)`` pairs, the name used in messages."""
    return _load(list(texts), registry, os.environ if env is None else env, [])


def format_errors(err: ConfigError) -> str:
    """The report printed by ``otelpipe validate`` and at startup: a count, then one problem per line."""
    count = len(err.errors)
    lines = [f"invalid configuration ({count} error{'' if count == 1 else 's'}):"]
    lines += [f"  {message}" for message in err.errors]
    return "\n".join(lines)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge recursively; any other value (scalar, array, array of tables) in ``override`` replaces."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = merge(current, value)
        else:
            merged[key] = value
    return merged


def _load(texts: list[tuple[str, str]], registry: Registry, env: Mapping[str, str], errors: list[str]) -> Config:
    if not texts and not errors:
        raise ConfigError(["no configuration given"])
    documents = []
    for name, text in texts:
        try:
            documents.append(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            errors.append(_syntax_error(name, text, exc))
    if errors:
        # Decoding half of a configuration would only add misleading errors (missing pipelines, ...).
        raise ConfigError(errors)
    tree: dict[str, Any] = {}
    for document in documents:
        tree = merge(tree, document)
    substituted, substitution_errors = substitute(tree, env)
    assert isinstance(substituted, dict)  # substitution keeps the tree's shape
    errors += substitution_errors

    for key in substituted:
        if key not in TOP_LEVEL_TABLES:
            errors.append(at((key,), f"unknown top-level table (known: {', '.join(TOP_LEVEL_TABLES)})"))
    decoder = Decoder()
    service = decoder.struct(substituted.get("service", {}), ServiceConfig, ("service",))
    defined = _decode_components(substituted, registry, decoder)
    errors += decoder.errors
    report = check_pipelines(
        substituted.get("pipelines"), defined, service if isinstance(service, ServiceConfig) else None
    )
    errors += report.errors
    if errors:
        raise ConfigError(_in_file_order(errors))
    assert isinstance(service, ServiceConfig)  # no errors, so it decoded
    components = {kind: dict(defined.configs.get(kind, {})) for kind in Kind}
    return Config(service, components, report.pipelines, tuple(report.warnings))


def _decode_components(tree: Mapping[str, Any], registry: Registry, decoder: Decoder) -> Defined:
    factories: dict[Kind, dict[ComponentId, Factory]] = {kind: {} for kind in Kind}
    configs: dict[Kind, dict[ComponentId, msgspec.Struct]] = {kind: {} for kind in Kind}
    broken: set[tuple[Kind, ComponentId]] = set()
    for kind in Kind:
        section = tree.get(kind.value, {})
        if not isinstance(section, dict):
            decoder.error((kind.value,), f"expected a table (got {show(section)})")
            continue
        for key, table in section.items():
            path = (kind.value, key)
            try:
                cid = ComponentId.parse(key)
            except ValueError as exc:
                decoder.error(path, str(exc))
                continue
            factory = registry.get(kind, cid.type)
            if factory is None:
                known = ", ".join(registry.types(kind)) or "none"
                decoder.error(path, f"unknown {kind.singular} type {cid.type!r} (known: {known})")
                broken.add((kind, cid))
                continue
            factories[kind][cid] = factory
            config = decoder.struct(table, factory.config_type, path)
            if config is not None:
                configs[kind][cid] = config
    return Defined(factories, configs, frozenset(broken))


def _in_file_order(errors: list[str]) -> list[str]:
    """Errors grouped by top-level table in the order a config file is usually written, stable within one."""
    rank = {name: i for i, name in enumerate(TOP_LEVEL_TABLES)}

    def top_level(message: str) -> int:
        head = re.match(r'^(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")', message)
        return rank.get(head.group(0), -1) if head else -1

    return sorted(errors, key=top_level)


def _syntax_error(name: str, text: str, exc: tomllib.TOMLDecodeError) -> str:
    match = _TOML_POSITION.match(str(exc))
    if match is None:
        return f"{name}: invalid TOML: {exc}"
    if match["line"] is None:  # "at end of document": point at the last line
        line, column = text.count("\n") + 1, len(text) - text.rfind("\n")
    else:
        line, column = int(match["line"]), int(match["column"])
    return f"{name}:{line}:{column}: invalid TOML: {match['message']}"
