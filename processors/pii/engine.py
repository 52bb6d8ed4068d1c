"""Masking one export request: bulk detection over its bytes, then fixes through the protobuf API. Pure: no
I/O, no clock; the processor (processor.py) is the async shell around it.

    raw bytes --bulk RE2 passes--> hits --wire walk--> targets (attribute / string field / log body + range)
        --key rules, strict scan of each target's bytes--> edits --protobuf API--> message changed in place

Only targets whose strict scan confirms something (or whose key is blocked) are touched through the protobuf
API; a clean batch costs the bulk passes and nothing else. Nested values (arrays, maps) are rare and handled on
the protobuf objects directly, with key rules applied to map keys at every depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.model import Request, Signal
from processors.pii import keys, wire
from processors.pii.actions import Masker, Rule
from processors.pii.bulk import passes_touching
from processors.pii.config import BLOCKED_KEY, NOT_ALLOWED, PiiConfig
from processors.pii.detectors import shapes_for
from processors.pii.regex import Pattern
from processors.pii.scan import DROP, Counts, UserRule, ValueScanner

# Edit operations on one attribute (by index in its repeated field) or one field.
_SET = 0  # payload: the new string
_REMOVE = 1  # remove the attribute
_NESTED = 2  # walk the AnyValue through the protobuf API
_BLOCK = 3  # replace the whole AnyValue: payload is the new string, or DROP


@dataclass(slots=True)
class Outcome:
    """What one request went through; counts feed the self-metrics."""

    changed: bool = False
    hits: int = 0
    values_scanned: int = 0
    # (rule name, action) -> matches masked
    matches: dict[tuple[str, str], int] = field(default_factory=dict)


class Engine:
    def __init__(self, config: PiiConfig) -> None:
        rank = 0
        self.blocked_rule = Rule(BLOCKED_KEY, config.action_for(BLOCKED_KEY), rank)
        detector_rules: dict[str, Rule] = {}
        for name in config.detectors:
            rank += 1
            detector_rules[name] = Rule(name, config.action_for(name), rank, builtin=True)
        shapes = [(shape, detector_rules[shape.detector]) for shape in shapes_for(config.detectors)]
        user_rules = []
        for r in config.rules:
            rank += 1
            user_rules.append(UserRule(Rule(r.name, r.action or config.action, rank), Pattern(r.pattern.encode())))
        self.keys = keys.KeyRules(config.blocked_keys, config.ignored_keys, config.allowed_keys)
        self.masker = Masker(config.redaction, config.hash_key)
        self.scanner = ValueScanner(shapes, user_rules, self.keys, self.blocked_rule, self.masker)
        self.every_key = self.keys.needs_every_key()
        # The union of every bulk alternative in one pattern (benchmarks compare it; processing uses the passes).
        self.bulk = self.scanner.bulk.pattern

    # --- one request ---

    def process(self, signal: Signal, message: Request, raw: bytes) -> Outcome:
        """Mask ``message`` in place; ``raw`` must be its serialized bytes."""
        out = Outcome()
        starts, ends, per_pass = self.scanner.bulk.hits(raw)
        out.hits = len(starts)
        if not starts and not self.every_key:
            return out
        targets = wire.locate(signal, raw, starts, ends, every=self.every_key)
        # Keyed by the identity of the path object: the walk makes one per message, shared by its targets, and
        # hashing it by value would cost more than the edit.
        attribute_edits: dict[tuple[int, str], tuple[wire.Path, list[tuple[int, int, Any]]]] = {}
        field_edits: list[tuple[wire.Path, str, bool, int, Any]] = []
        # Values to scan, masked together after the walk (joined.py); a value seen before comes from the cache.
        # A sink is (path, field name, attribute index or -1 for a field, whether the field is an AnyValue).
        pending: list[bytes] = []
        pending_touched: list[int] = []
        pending_removable: list[bool] = []
        sinks: list[tuple[wire.Path, str, int, bool]] = []
        cached = self.scanner.cached
        matches = out.matches
        key_and_value = wire.key_and_value
        decide = self.keys.decide
        kvs, string = wire.KVS, wire.ANY_STRING
        for kind, path, name, index, start, end, first, last in targets:
            if kind == kvs:
                ks, ke, value_kind, s, e = key_and_value(raw, start, end)
                flags = decide(raw[ks:ke])
                if flags or value_kind != string or first == last:
                    edit = self._attribute(raw, start, end, value_kind, s, e, flags, first == last, out)
                    if edit is not None:
                        _add_attribute_edit(attribute_edits, path, name, index, edit)
                    continue
                # the common case, kept inline: a plain key, a string value, bulk hits
                if not (last - first == 1 and starts[first] < e and ends[first] > s) and not _touched(
                    s, e, starts, ends, first, last
                ):
                    continue  # the hits are on the key only
                sink = (path, name, index, False)
                removable = True
            else:
                if kind == wire.ANY:  # a log body
                    any_kind, start, end = wire.any_value(raw, start, end)
                    if any_kind == wire.ANY_NESTED:
                        field_edits.append((path, name, True, _NESTED, None))
                        continue
                    if any_kind != wire.ANY_STRING:
                        continue
                if not _touched(start, end, starts, ends, first, last):
                    continue
                s, e = start, end
                sink = (path, name, -1, kind == wire.ANY)
                removable = False
            out.values_scanned += 1
            value = raw[s:e]
            hit = cached(value, removable, matches)
            if hit is None:
                pending.append(value)
                pending_touched.append(passes_touching(per_pass, s, e))
                pending_removable.append(removable)
                sinks.append(sink)
            elif hit[0] is not None:
                _record(hit[0], sink, attribute_edits, field_edits)
        if pending:
            results = self.scanner.mask_many(pending, pending_touched, pending_removable, matches)
            for masked, sink in zip(results, sinks, strict=True):
                if masked is not None:
                    _record(masked, sink, attribute_edits, field_edits)
        if attribute_edits or field_edits:
            self._apply(message, attribute_edits, field_edits, out)
            out.changed = True
        return out

    def _attribute(
        self, raw: bytes, start: int, end: int, kind: int, s: int, e: int, flags: int, unhit: bool, out: Outcome
    ) -> tuple[int, Any] | None:
        """An attribute off the common path: a key rule applies, or the value is not a string, or no hit."""
        if flags & keys.NOT_ALLOWED:
            _count(out.matches, NOT_ALLOWED, "drop")
            return (_REMOVE, None)
        if flags & keys.BLOCKED:
            if kind == wire.ANY_EMPTY:
                return None
            # A string is replaced by its own text's token; any other value by its serialized AnyValue's (the
            # same bytes the nested path hashes, so one value gets one token wherever it sits).
            if kind == wire.ANY_STRING:
                text = raw[s:e]
            else:
                _, _, vs, ve = wire.key_value(raw, start, end)
                text = raw[vs:ve]
            replaced = self.scanner.mask_whole(text, self.blocked_rule, out.matches)
            return (_REMOVE, None) if replaced is DROP else (_BLOCK, replaced)
        if flags or unhit:  # ignored, or only there for its key
            return None
        return (_NESTED, None) if kind == wire.ANY_NESTED else None

    # --- applying edits through the protobuf API ---

    def _apply(
        self,
        message: Request,
        attribute_edits: dict[tuple[int, str], tuple[wire.Path, list[tuple[int, int, Any]]]],
        field_edits: list[tuple[wire.Path, str, bool, int, Any]],
        out: Outcome,
    ) -> None:
        resolved: dict[wire.Path, Any] = {(): message}

        def resolve(path: wire.Path) -> Any:
            obj = resolved.get(path)
            if obj is None:
                parent = resolve(path[:-1])
                name, index = path[-1]
                obj = getattr(parent, name)
                if index >= 0:
                    obj = obj[index]
                resolved[path] = obj
            return obj

        for (_, name), (path, edits) in attribute_edits.items():
            repeated = getattr(resolve(path), name)
            removed: list[int] = []
            for index, op, payload in edits:
                if op == _SET:
                    repeated[index].value.string_value = payload
                elif op == _BLOCK:
                    repeated[index].value.string_value = payload.decode("utf-8")
                elif op == _REMOVE or self.nested(repeated[index].value, out, removable=True) is DROP:
                    removed.append(index)
            # Highest index first, so earlier indices stay valid.
            for index in sorted(removed, reverse=True):
                del repeated[index]
        for path, name, is_any_value, op, payload in field_edits:
            holder = resolve(path)
            if op == _NESTED:
                self.nested(getattr(holder, name), out, removable=False)
            elif is_any_value:
                getattr(holder, name).string_value = payload
            else:
                setattr(holder, name, payload)

    def nested(self, value: AnyValue, out: Outcome, removable: bool) -> object:
        """Mask an AnyValue through the protobuf API, at any depth; DROP when it must be removed (only when
        ``removable``), None otherwise. A drop inside an array or a map removes that element or entry."""
        matches = out.matches
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out.values_scanned += 1
            masked = self.scanner.mask(value.string_value.encode("utf-8"), matches, removable)
            if masked is DROP:
                return DROP
            if masked is not None:
                assert isinstance(masked, bytes)
                value.string_value = masked.decode("utf-8")
            return None
        if kind == "array_value":
            elements = value.array_value.values
            gone = [i for i, el in enumerate(elements) if self.nested(el, out, True) is DROP]
            for i in reversed(gone):
                del elements[i]
            return None
        if kind == "kvlist_value":
            entries = value.kvlist_value.values
            gone = []
            for i, kv in enumerate(entries):
                flags = self.keys.decide(kv.key.encode("utf-8"))
                if flags & keys.BLOCKED:
                    inner = kv.value
                    text = (
                        inner.string_value.encode("utf-8")
                        if inner.WhichOneof("value") == "string_value"
                        else inner.SerializeToString()
                    )
                    replaced = self.scanner.mask_whole(text, self.blocked_rule, matches)
                    if replaced is DROP:
                        gone.append(i)
                    else:
                        assert isinstance(replaced, bytes)
                        inner.string_value = replaced.decode("utf-8")
                elif not flags & keys.IGNORED and self.nested(kv.value, out, True) is DROP:
                    gone.append(i)
            for i in reversed(gone):
                del entries[i]
        return None

    def mask_text(self, text: str, removable: bool = True) -> str | None:
        """One string as an attribute value would be masked (for pii-check and tests); None when dropped."""
        masked = self.scanner.mask(text.encode("utf-8"), {}, removable)
        if masked is DROP:
            return None
        return masked.decode("utf-8") if isinstance(masked, bytes) else text


def _add_attribute_edit(
    edits: dict[tuple[int, str], tuple[wire.Path, list[tuple[int, int, Any]]]],
    path: wire.Path,
    name: str,
    index: int,
    edit: tuple[int, Any],
) -> None:
    # Keyed by the identity of the path object: the walk makes one per message, shared by its targets, and
    # hashing it by value would cost more than the edit.
    key = (id(path), name)
    group = edits.get(key)
    if group is None:
        group = edits[key] = (path, [])
    group[1].append((index, *edit))


def _record(
    masked: object,
    sink: tuple[wire.Path, str, int, bool],
    attribute_edits: dict[tuple[int, str], tuple[wire.Path, list[tuple[int, int, Any]]]],
    field_edits: list[tuple[wire.Path, str, bool, int, Any]],
) -> None:
    """A scanned value's result as an edit: new text, or (an attribute only) removal."""
    path, name, index, is_any_value = sink
    if index >= 0:
        edit = (_SET, masked.decode("utf-8")) if isinstance(masked, bytes) else (_REMOVE, None)
        _add_attribute_edit(attribute_edits, path, name, index, edit)
    else:
        assert isinstance(masked, bytes)  # fields are scanned as not removable
        field_edits.append((path, name, is_any_value, _SET, masked.decode("utf-8")))


def _touched(start: int, end: int, starts: list[int], ends: list[int], first: int, last: int) -> bool:
    """Whether a hit among ``first:last`` overlaps [start, end) (hits on a key alone leave its value out)."""
    return any(starts[k] < end and ends[k] > start for k in range(first, last))


def _count(matches: Counts, name: str, action: str) -> None:
    matches[(name, action)] = matches.get((name, action), 0) + 1
