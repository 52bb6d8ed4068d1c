"""Masking one export request: bulk detection over its bytes, then the masked request as new bytes. Pure: no
I/O, no clock; the processor (processor.py) is the async shell around it.

    raw bytes --bulk RE2 passes--> hits --wire walk--> targets (attribute / string field / log body) and frames
        --key rules, strict scan of the targets' values (joined)--> edits (new field bytes) --splice--> new bytes

Only fields whose strict scan confirms something (or whose key is blocked) are rewritten; a clean batch costs
the bulk passes and nothing else, and the request is never parsed or re-serialized: the new bytes are the old
ones with the edited fields replaced and the lengths around them fixed (splice.py). A plain string attribute is
rebuilt from its key and new text; anything else (nested arrays and maps, blocked non-string values, unusual
layouts) goes through the protobuf API for that one field, with key rules applied to map keys at every depth.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.model import Signal
from pipeline.protowire import decode_varint, encode_varint
from processors.pii import keys, wire
from processors.pii.actions import Masker, Rule
from processors.pii.bulk import passes_touching
from processors.pii.config import BLOCKED_KEY, NOT_ALLOWED, PiiConfig
from processors.pii.detectors import shapes_for
from processors.pii.regex import Pattern
from processors.pii.scan import DROP, Counted, Counts, Doorkeeper, Masked, UserRule, ValueScanner
from processors.pii.splice import Edit, splice

# A value waiting for its scan: (target kind, frame, field start, content start, content end, end of the key for
# a plain attribute (else -1), plain layout, the attribute's whole field bytes when they are to be remembered,
# else b"").
_Sink = tuple[int, int, int, int, int, int, bool, bytes]
# Remembered attribute fields (bytes of the whole field -> new field bytes or None, matches counted) from their
# second sighting (scan.Doorkeeper): fields up to this size, this many entries (then it starts over; about 4 MB
# at most).
_FIELD_CACHE_LIMIT = 512
_FIELD_CACHE_ENTRIES = 4096


@dataclass(slots=True)
class Outcome:
    """What one request went through; counts feed the self-metrics."""

    # The masked request, or None when nothing changed.
    raw: bytes | None = None
    hits: int = 0
    values_scanned: int = 0
    # (rule name, action) -> matches masked
    matches: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.raw is not None


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
        self._fields: dict[bytes, tuple[bytes | None, Counted]] = {}
        self._admit = Doorkeeper()
        # The union of every bulk alternative in one pattern (benchmarks compare it; processing uses the passes).
        self.bulk = self.scanner.bulk.pattern

    # --- one request ---

    def process(self, signal: Signal, raw: bytes) -> Outcome:
        """Mask the serialized request ``raw``: ``Outcome.raw`` is the masked request when something changed.

        The cyclic collector is paused for the call. Masking a request holds thousands of small tuples at once
        (targets, frames, edits, regions), so the collector's youngest generation would be walked several times
        per request and find nothing: masking makes no reference cycles (tests/processors/pii/test_gc_pause.py
        checks), so whatever it leaves behind is freed by reference counting. Measured: 4-6% of masking time.
        A collector that was already paused stays paused."""
        if not gc.isenabled():
            return self._process(signal, raw)
        gc.disable()
        try:
            return self._process(signal, raw)
        finally:
            gc.enable()

    def _process(self, signal: Signal, raw: bytes) -> Outcome:
        out = Outcome()
        starts, ends, hit_passes = self.scanner.bulk.hits(raw)
        out.hits = len(starts)
        if not starts and not self.every_key:
            return out
        targets, frames = wire.locate(signal, raw, starts, ends, every=self.every_key)
        edits: list[Edit] = []
        # Values to scan, masked together after the walk (joined.py); a value seen before comes from the cache.
        pending: list[bytes] = []
        pending_touched: list[int] = []
        pending_removable: list[bool] = []
        sinks: list[_Sink] = []
        cached = self.scanner.cached
        matches = out.matches
        key_and_value = wire.key_and_value
        decide = self.keys.decide
        kvs, string = wire.KVS, wire.ANY_STRING
        fields = self._fields
        for kind, frame, field_start, start, end, first, last in targets:
            whole = b""
            if kind == kvs:
                # Telemetry repeats attributes (a client address on every span): a field seen before is replaced
                # as it was then, without looking inside.
                if end - field_start <= _FIELD_CACHE_LIMIT:
                    whole = raw[field_start:end]
                    known = fields.get(whole)
                    if known is not None:
                        new, counted = known
                        for key, times in counted:
                            matches[key] = matches.get(key, 0) + times
                        out.values_scanned += 1
                        if new is not None:
                            edits.append((field_start, end, new, frame))
                        continue
                ks, ke, value_kind, s, e, plain = key_and_value(raw, start, end)
                flags = decide(raw[ks:ke])
                if flags or value_kind != string or first == last:
                    new = self._attribute(raw, field_start, start, end, value_kind, s, e, flags, first == last, out)
                    if new is not None:
                        edits.append((field_start, end, new, frame))
                    continue
                # the common case, kept inline: a plain key, a string value, bulk hits
                if not (last - first == 1 and starts[first] < e and ends[first] > s) and not _touched(
                    s, e, starts, ends, first, last
                ):
                    continue  # the hits are on the key only
                removable = True
            else:
                s, e, ke, plain = start, end, -1, True
                if kind == wire.ANY:  # a log body
                    any_kind, s, e = wire.any_value(raw, start, end)
                    if any_kind == wire.ANY_NESTED:
                        new = self._nested_field(raw, field_start, start, end, out)
                        if new is not None:
                            edits.append((field_start, end, new, frame))
                        continue
                    if any_kind != string:
                        continue
                    plain = raw[start] == 0x0A and e == end and s == start + 1 + len(encode_varint(e - s))
                if not _touched(s, e, starts, ends, first, last):
                    continue
                removable = False
            out.values_scanned += 1
            value = raw[s:e]
            sink = (kind, frame, field_start, start, end, ke, plain, whole)
            hit = cached(value, removable, matches)
            if hit is None:
                pending.append(value)
                pending_touched.append(passes_touching(hit_passes, first, last))
                pending_removable.append(removable)
                sinks.append(sink)
            else:
                self._edit(raw, sink, hit, edits)
        if pending:
            results = self.scanner.mask_many(pending, pending_touched, pending_removable, matches)
            for masked, sink in zip(results, sinks, strict=True):
                self._edit(raw, sink, masked, edits)
        if edits:
            out.raw = splice(raw, frames, edits)
        return out

    def _edit(self, raw: bytes, sink: _Sink, masked: Masked, edits: list[Edit]) -> None:
        """Record a scanned value's edit, if any; remember a plain attribute's outcome by its field bytes."""
        result, counted = masked
        edit = None if result is None else self._value_edit(raw, sink, result)
        if edit is not None:
            edits.append(edit)
        whole = sink[-1]
        if whole and self._admit.again(whole):
            fields = self._fields
            if len(fields) >= _FIELD_CACHE_ENTRIES:
                fields.clear()
            fields[whole] = (None if edit is None else edit[2], counted)

    def _value_edit(self, raw: bytes, sink: _Sink, masked: object) -> Edit:
        """The new bytes of a field whose value was masked: its tag, new length and new content."""
        kind, frame, field_start, start, end, ke, plain, _ = sink
        if masked is DROP:  # only attributes are scanned as removable
            return (field_start, end, b"", frame)
        assert isinstance(masked, bytes)
        if kind == wire.KVS:
            if plain:  # the key's bytes, with their tag and length, stay as they were: one join, no copies between
                text_length = encode_varint(len(masked))
                value_length = 1 + len(text_length) + len(masked)
                value_prefix = encode_varint(value_length)
                content_length = ke - start + 1 + len(value_prefix) + value_length
                field = b"".join(
                    (
                        _tag(raw, field_start),
                        encode_varint(content_length),
                        raw[start:ke],
                        b"\x12",
                        value_prefix,
                        b"\x0a",
                        text_length,
                        masked,
                    )
                )
                return (field_start, end, field, frame)
            else:
                kv = KeyValue.FromString(raw[start:end])
                kv.value.string_value = masked.decode("utf-8")
                content = kv.SerializeToString()
        elif kind == wire.ANY:
            if plain:
                content = b"\x0a" + encode_varint(len(masked)) + masked
            else:
                body = AnyValue.FromString(raw[start:end])
                body.string_value = masked.decode("utf-8")
                content = body.SerializeToString()
        else:
            content = masked
        return (field_start, end, _field(raw, field_start, content), frame)

    def _attribute(
        self,
        raw: bytes,
        field_start: int,
        start: int,
        end: int,
        kind: int,
        s: int,
        e: int,
        flags: int,
        unhit: bool,
        out: Outcome,
    ) -> bytes | None:
        """An attribute off the common path (a key rule applies, the value is not a string, or no hit): the new
        bytes of its whole field (empty to remove it), or None to leave it."""
        if flags & keys.NOT_ALLOWED:
            _count(out.matches, NOT_ALLOWED, "drop")
            return b""
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
            if replaced is DROP:
                return b""
            assert isinstance(replaced, bytes)
            kv = KeyValue.FromString(raw[start:end])
            kv.value.Clear()
            kv.value.string_value = replaced.decode("utf-8")
            return _field(raw, field_start, kv.SerializeToString())
        if flags or unhit or kind != wire.ANY_NESTED:  # ignored, or only there for its key
            return None
        kv = KeyValue.FromString(raw[start:end])
        if self.nested(kv.value, out, removable=True) is DROP:
            return b""
        content = kv.SerializeToString()
        return None if content == raw[start:end] else _field(raw, field_start, content)

    def _nested_field(self, raw: bytes, field_start: int, start: int, end: int, out: Outcome) -> bytes | None:
        """A log body holding an array or a map, masked through the protobuf API (never removed); None when
        nothing in it changed."""
        body = AnyValue.FromString(raw[start:end])
        self.nested(body, out, removable=False)
        content = body.SerializeToString()
        return None if content == raw[start:end] else _field(raw, field_start, content)

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


def _field(raw: bytes, field_start: int, content: bytes) -> bytes:
    """A length-delimited field: the tag it had at ``field_start``, then ``content`` with its length."""
    return b"".join((_tag(raw, field_start), encode_varint(len(content)), content))


def _tag(raw: bytes, field_start: int) -> bytes:
    """The tag bytes of the field at ``field_start``."""
    return raw[field_start : decode_varint(raw, field_start)[1]]


def _touched(start: int, end: int, starts: list[int], ends: list[int], first: int, last: int) -> bool:
    """Whether a hit among ``first:last`` overlaps [start, end) (hits on a key alone leave its value out)."""
    return any(starts[k] < end and ends[k] > start for k in range(first, last))


def _count(matches: Counts, name: str, action: str) -> None:
    matches[(name, action)] = matches.get((name, action), 0) + 1
