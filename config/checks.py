"""Pipeline tables and the checks that span tables: references, signals, connectors, cycles, ports.

Each check reports on the key an operator has to edit (usually the pipeline list entry, e.g.
``pipelines.logs.exporters[0]``) and every problem is collected. A reference to a component whose own table was
already reported (unknown type, ambiguous id) is skipped quietly, so one mistake gives one message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import msgspec

from config.decode import UNRESOLVED, Path, at, format_path, show
from config.model import PipelineConfig, PipelineId, ServiceConfig
from pipeline.component import ComponentId, Factory, Kind
from pipeline.model import Signal

# The pipeline lists and which kinds of component each may name, in the order they are looked up.
_ROLES: dict[str, tuple[Kind, ...]] = {
    "receivers": (Kind.RECEIVER, Kind.CONNECTOR),
    "processors": (Kind.PROCESSOR,),
    "exporters": (Kind.EXPORTER, Kind.CONNECTOR),
}
_PIPELINE_NAME = re.compile(r"[^/\s]+")
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})
# "localhost" may bind either loopback address, so it overlaps with both.
_LOCALHOST = frozenset({"127.0.0.1", "::1"})


@dataclass(frozen=True, slots=True)
class Defined:
    """The component tables of the file, as the cross-checks need them."""

    # Every component whose type is known, whether or not its config decoded.
    factories: Mapping[Kind, Mapping[ComponentId, Factory]]
    # Decoded configs (only the components whose table decoded cleanly).
    configs: Mapping[Kind, Mapping[ComponentId, msgspec.Struct]]
    # Declared but unusable (unknown type): already reported, so references to them are not.
    broken: frozenset[tuple[Kind, ComponentId]] = frozenset()


@dataclass(slots=True)
class Report:
    pipelines: dict[PipelineId, PipelineConfig] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Ref:
    """One entry of a pipeline list, resolved to the component it names."""

    id: ComponentId
    path: Path
    kind: Kind
    factory: Factory


@dataclass(slots=True)
class _Pipeline:
    id: PipelineId
    path: Path
    # role ("receivers", ...) -> the ids as listed, and the entries that resolved to a defined component
    ids: dict[str, list[ComponentId]]
    refs: dict[str, list[_Ref]]


def check_pipelines(raw: object, defined: Defined, service: ServiceConfig | None) -> Report:
    """Parse ``[pipelines.*]`` and run every cross-table check; ``service`` is None if it did not decode."""
    checker = _Checker(defined)
    checker.ambiguous_ids()
    pipelines = checker.parse(raw)
    checker.signals(pipelines)
    checker.connectors(pipelines)
    checker.shareable(pipelines)
    checker.cycles(pipelines)
    checker.endpoints(pipelines, service)
    report = Report(errors=checker.errors, warnings=checker.unused(pipelines))
    for p in pipelines:
        report.pipelines[p.id] = PipelineConfig(
            p.id, tuple(p.ids["receivers"]), tuple(p.ids["processors"]), tuple(p.ids["exporters"])
        )
    return report


class _Checker:
    def __init__(self, defined: Defined) -> None:
        self.defined = defined
        self.errors: list[str] = []

    def error(self, path: Path, message: str) -> None:
        self.errors.append(at(path, message))

    def ambiguous_ids(self) -> None:
        # A pipeline's receivers list may name a receiver or a connector: the same id for both is unresolvable.
        for cid in self.defined.factories.get(Kind.CONNECTOR, {}):
            for kind in (Kind.RECEIVER, Kind.EXPORTER):
                if cid in self.defined.factories.get(kind, {}):
                    self.error(
                        (Kind.CONNECTOR.value, str(cid)),
                        f"ambiguous id: [{format_path((kind.value, str(cid)))}] is also defined, "
                        "so pipelines could not tell them apart (rename one)",
                    )

    # -- parsing -------------------------------------------------------------------------------------------

    def parse(self, raw: object) -> list[_Pipeline]:
        if raw is None or raw == {}:
            self.error(
                ("pipelines",),
                "no pipelines defined (add at least one [pipelines.traces], [pipelines.logs] "
                "or [pipelines.metrics] table)",
            )
            return []
        if not isinstance(raw, dict):
            self.error(("pipelines",), f"expected a table (got {show(raw)})")
            return []
        pipelines = []
        for key, table in raw.items():
            path: Path = ("pipelines", key)
            pid = self._pipeline_id(key, path)
            if not isinstance(table, dict):
                self.error(path, f"expected a table (got {show(table)})")
                continue
            for unknown in (k for k in table if k not in _ROLES):
                self.error((*path, unknown), f"unknown key (known: {', '.join(sorted(_ROLES))})")
            ids = {role: self._ids(table.get(role, []), (*path, role)) for role in _ROLES}
            for role in ("receivers", "exporters"):
                if table.get(role, []) == []:
                    self.error((*path, role), f"a pipeline needs at least one {role[:-1]}")
            refs = {role: self._resolve(ids[role], kinds) for role, kinds in _ROLES.items()}
            if pid is not None:
                pipelines.append(_Pipeline(pid, path, {r: [cid for cid, _ in ids[r]] for r in ids}, refs))
        return pipelines

    def _pipeline_id(self, key: str, path: Path) -> PipelineId | None:
        signal_name, slash, name = key.partition("/")
        try:
            signal = Signal(signal_name)
        except ValueError:
            self.error(
                path,
                f"invalid pipeline name {key!r}: expected <signal> or <signal>/<name>, "
                f"with <signal> one of: {_signals(Signal)}",
            )
            return None
        if slash and not _PIPELINE_NAME.fullmatch(name):
            self.error(path, f"invalid pipeline name {key!r}: the name after '/' must be non-empty, without spaces")
            return None
        return PipelineId(signal, name)

    def _ids(self, raw: object, path: Path) -> list[tuple[ComponentId, Path]]:
        if raw is UNRESOLVED:
            return []
        if not isinstance(raw, list):
            self.error(path, f"expected an array of component ids (got {show(raw)})")
            return []
        found: list[tuple[ComponentId, Path]] = []
        first: dict[ComponentId, int] = {}
        for i, item in enumerate(raw):
            item_path = (*path, i)
            if item is UNRESOLVED:
                continue
            if not isinstance(item, str):
                self.error(item_path, f"expected a component id (got {show(item)})")
                continue
            try:
                cid = ComponentId.parse(item)
            except ValueError as exc:
                self.error(item_path, str(exc))
                continue
            if cid in first:
                self.error(item_path, f"'{cid}' is listed twice (first at [{first[cid]}])")
                continue
            first[cid] = i
            found.append((cid, item_path))
        return found

    def _resolve(self, ids: list[tuple[ComponentId, Path]], kinds: tuple[Kind, ...]) -> list[_Ref]:
        refs = []
        for cid, item_path in ids:
            matches = [(k, self.defined.factories[k][cid]) for k in kinds if cid in self.defined.factories.get(k, {})]
            if len(matches) == 1:
                kind, factory = matches[0]
                refs.append(_Ref(cid, item_path, kind, factory))
            elif not matches and not any((k, cid) in self.defined.broken for k in kinds):
                tables = " or ".join(f"[{format_path((k.value, str(cid)))}]" for k in kinds)
                # Naming an exporter among processors (and the like) is a common slip: say what it is instead.
                elsewhere = [k.singular for k in Kind if k not in kinds and cid in self.defined.factories.get(k, {})]
                hint = f"; '{cid}' is {_a(elsewhere[0])}" if elsewhere else ""
                self.error(item_path, f"'{cid}' is not defined (no {tables} table{hint})")
            # Two matches: the ambiguous id is reported once, on the connector's table.
        return refs

    # -- checks --------------------------------------------------------------------------------------------

    def signals(self, pipelines: list[_Pipeline]) -> None:
        """Every component supports the signal of each pipeline it is in (connectors: per side)."""
        for p in pipelines:
            signal = p.id.signal
            for role, refs in p.refs.items():
                kept = []
                for ref in refs:
                    problem = _signal_problem(ref, role, signal)
                    if problem:
                        self.error(ref.path, problem)
                    else:
                        kept.append(ref)
                # Later checks see only entries that can carry the signal, so one mistake gives one message.
                p.refs[role] = kept

    def connectors(self, pipelines: list[_Pipeline]) -> None:
        """A connector joins pipelines: whatever it takes in must reach a pipeline that receives its output."""
        as_exporter: dict[ComponentId, set[Signal]] = {}
        as_receiver: dict[ComponentId, set[Signal]] = {}
        for p in pipelines:
            for ref in _connector_refs(p, "exporters"):
                as_exporter.setdefault(ref.id, set()).add(p.id.signal)
            for ref in _connector_refs(p, "receivers"):
                as_receiver.setdefault(ref.id, set()).add(p.id.signal)
        for p in pipelines:
            signal = p.id.signal
            for ref in _connector_refs(p, "exporters"):
                targets = ref.factory.connector_outputs[signal]
                if not targets & as_receiver.get(ref.id, set()):
                    self.error(
                        ref.path,
                        f"connector '{ref.id}' turns {signal.value} into {_signals(targets)}, but no "
                        f"{_signals(targets, ' or ')} pipeline lists it under receivers",
                    )
            for ref in _connector_refs(p, "receivers"):
                sources = {a for a, outs in ref.factory.connector_outputs.items() if signal in outs}
                if not sources & as_exporter.get(ref.id, set()):
                    self.error(
                        ref.path,
                        f"connector '{ref.id}' emits {signal.value} from {_signals(sources)}, but no "
                        f"{_signals(sources, ' or ')} pipeline lists it under exporters",
                    )

    def shareable(self, pipelines: list[_Pipeline]) -> None:
        # A shareable processor is one instance serving one pipeline per signal (DESIGN.md section 2); a second
        # pipeline of the same signal would have two downstreams for one signal.
        first: dict[tuple[ComponentId, Signal], Path] = {}
        for p in pipelines:
            for ref in p.refs["processors"]:
                if not ref.factory.shareable:
                    continue
                key = (ref.id, p.id.signal)
                if key in first:
                    self.error(
                        ref.path,
                        f"shareable processor '{ref.id}' is already used by {format_path(first[key])}; it may "
                        f"appear in only one {p.id.signal.value} pipeline",
                    )
                else:
                    first[key] = p.path

    def cycles(self, pipelines: list[_Pipeline]) -> None:
        """Connectors must not route data back into a pipeline it came from: it would circulate forever."""
        edges: dict[int, list[tuple[int, ComponentId]]] = {i: [] for i in range(len(pipelines))}
        for i, src in enumerate(pipelines):
            for ref in _connector_refs(src, "exporters"):
                outputs = ref.factory.connector_outputs[src.id.signal]
                for j, dst in enumerate(pipelines):
                    if dst.id.signal in outputs and any(r.id == ref.id for r in _connector_refs(dst, "receivers")):
                        edges[i].append((j, ref.id))
        for cycle, vias in _find_cycles(edges):
            steps = [str(pipelines[cycle[0]].id)]
            for node, via in zip([*cycle[1:], cycle[0]], vias, strict=True):
                steps += [f"[{via}]", str(pipelines[node].id)]
            self.error(pipelines[cycle[0]].path, "pipelines form a cycle through connectors: " + " -> ".join(steps))

    def endpoints(self, pipelines: list[_Pipeline], service: ServiceConfig | None) -> None:
        """Two listeners on one port: the second would fail to bind at start, after other ports were bound."""
        listeners: list[tuple[Path, str]] = []
        if service is not None:
            listeners.append((("service", "telemetry_endpoint"), service.telemetry_endpoint))
        # Exporter endpoints are remote targets, and unused receivers are never started: neither binds.
        used = {cid for p in pipelines for cid in p.ids["receivers"]}
        for cid, config in self.defined.configs.get(Kind.RECEIVER, {}).items():
            if cid in used:
                listeners.extend(_endpoint_fields(config, (Kind.RECEIVER.value, str(cid))))
        seen: list[tuple[Path, str, frozenset[str] | None, int]] = []
        for path, text in listeners:
            address = _listen_address(text)
            if address is None:
                continue
            hosts, port = address
            for other_path, other_text, other_hosts, other_port in seen:
                if port == other_port and (hosts is None or other_hosts is None or hosts & other_hosts):
                    self.error(path, f"{text!r} overlaps {format_path(other_path)} ({other_text!r}): same port {port}")
            seen.append((path, text, hosts, port))

    def unused(self, pipelines: list[_Pipeline]) -> list[str]:
        # Every listed id counts, even one a check rejected: the operator meant to use it, and was told what is wrong.
        used = {(kind, cid) for p in pipelines for role, ids in p.ids.items() for cid in ids for kind in _ROLES[role]}
        return [
            at((kind.value, str(cid)), "defined but not used by any pipeline")
            for kind in Kind
            for cid in self.defined.factories.get(kind, {})
            if (kind, cid) not in used
        ]


def _signal_problem(ref: _Ref, role: str, signal: Signal) -> str | None:
    factory = ref.factory
    if ref.kind is Kind.CONNECTOR:
        if role == "exporters":
            accepts = frozenset(factory.connector_outputs)
            if signal not in accepts:
                return f"connector '{ref.id}' does not accept {signal.value} (it accepts: {_signals(accepts)})"
        else:
            emits = frozenset(s for outs in factory.connector_outputs.values() for s in outs)
            if signal not in emits:
                return f"connector '{ref.id}' does not emit {signal.value} (it emits: {_signals(emits)})"
        return None
    if signal in factory.signals:
        return None
    verb = "produce" if ref.kind is Kind.RECEIVER else "accept"
    return f"{ref.kind.singular} '{ref.id}' does not {verb} {signal.value} (it {verb}s: {_signals(factory.signals)})"


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _connector_refs(p: _Pipeline, role: str) -> Iterator[_Ref]:
    return (ref for ref in p.refs[role] if ref.kind is Kind.CONNECTOR)


def _signals(signals: Iterable[Signal], sep: str = ", ") -> str:
    """Signals in their canonical order (traces, logs, metrics), so messages do not depend on set order."""
    chosen = set(signals)
    return sep.join(s.value for s in Signal if s in chosen) or "nothing"


def _find_cycles(edges: Mapping[int, list[tuple[int, ComponentId]]]) -> list[tuple[list[int], list[ComponentId]]]:
    """One cycle per set of pipelines involved, each starting at its earliest pipeline (depth-first search)."""
    found: dict[frozenset[int], tuple[list[int], list[ComponentId]]] = {}
    done: set[int] = set()
    trail: list[int] = []
    vias: list[ComponentId] = []

    def visit(node: int) -> None:
        trail.append(node)
        for nxt, via in edges[node]:
            if nxt in trail:
                start = trail.index(nxt)
                cycle, cycle_vias = trail[start:], [*vias[start:], via]
                first = cycle.index(min(cycle))
                found.setdefault(
                    frozenset(cycle), (cycle[first:] + cycle[:first], cycle_vias[first:] + cycle_vias[:first])
                )
            elif nxt not in done:
                vias.append(via)
                visit(nxt)
                vias.pop()
        trail.pop()
        done.add(node)

    for node in edges:
        if node not in done:
            visit(node)
    return sorted(found.values(), key=lambda c: c[0])


def _endpoint_fields(config: msgspec.Struct, path: Path) -> Iterator[tuple[Path, str]]:
    """String fields named ``endpoint`` or ``*_endpoint``, in nested tables too."""
    for f in msgspec.structs.fields(config):
        value = getattr(config, f.name)
        field_path = (*path, f.encode_name)
        if isinstance(value, str):
            if f.encode_name == "endpoint" or f.encode_name.endswith("_endpoint"):
                yield field_path, value
        elif isinstance(value, msgspec.Struct):
            yield from _endpoint_fields(value, field_path)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, msgspec.Struct):
                    yield from _endpoint_fields(item, (*field_path, i))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, msgspec.Struct):
                    yield from _endpoint_fields(item, (*field_path, str(key)))


def _listen_address(text: str) -> tuple[frozenset[str] | None, int] | None:
    """(hosts, port) of a listening endpoint; hosts None = every address. None when it binds nothing we can
    compare: disabled (""), port 0 (the OS picks a free one), or not host:port (the component reports that)."""
    text = text.strip()
    if not text:
        return None
    if "://" in text:
        text = urlsplit(text).netloc
    host, colon, port_text = text.rpartition(":")
    if not colon or not port_text.isdigit() or int(port_text) == 0:
        return None
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in _WILDCARD_HOSTS:
        return None, int(port_text)
    if host == "localhost":
        return _LOCALHOST, int(port_text)
    # One spelling per address ("::0001" is "::1"); a host name other than localhost is compared as written.
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    return frozenset({host}), int(port_text)
