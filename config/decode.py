"""Strict decoding of TOML values into msgspec Structs, one key at a time, every error collected.

msgspec stops at the first error of a value, and its error paths drop dict keys (``$[...]``), so a plain
``msgspec.convert(table, T)`` would tell the operator one problem per run, without saying where. This module
walks the table itself: each key is checked against the Struct's fields, each field is converted on its own to
its annotated type, nested tables (Structs, lists and dicts of Structs, tagged unions) are walked recursively,
and every error is recorded with its full TOML key. Only once all fields converted cleanly is the Struct built,
which runs its ``__post_init__`` cross-field checks.

Error messages are written from the field's type and ``msgspec.Meta`` constraints ("expected an integer >= 0
(got -1)") rather than passed through from msgspec, whose wording (``Expected `int` >= 0``) is about Python
types, not TOML.
"""

from __future__ import annotations

import datetime
import enum
import json
import re
import types
from collections.abc import Iterable, Mapping, MutableMapping, MutableSequence, MutableSet, Sequence
from collections.abc import Set as AbstractSet
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

import msgspec

# A TOML key path: table keys and array indices, e.g. ("processors", "batch/fast", "policies", 1).
Path = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_key(key: str) -> str:
    """A key as written in TOML: bare when it can be, double-quoted otherwise."""
    if _BARE_KEY.fullmatch(key):
        return key
    # TOML basic strings use JSON's escapes (\" \\ \n \uXXXX), so json.dumps quotes a key exactly as TOML would.
    return json.dumps(key, ensure_ascii=False)


def format_path(path: Path) -> str:
    """``processors."batch/fast".policies[1].name``: the key path operators can search their file for."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(("." if out else "") + format_key(part))
    return "".join(out)


def at(path: Path, message: str) -> str:
    """An error message in the one shape the loader uses: the full key, a colon, what is wrong."""
    return f"{format_path(path)}: {message}" if path else message


class Lenient(str):
    """A string produced by ``${env:...}`` substitution.

    Environment variables are always strings, so ``limit_mib = "${env:LIMIT}"`` can only fill an integer field
    if the value is decoded leniently (msgspec ``strict=False``). Literal TOML values keep strict decoding: a
    quoted number written in the file is a mistake worth reporting.
    """

    __slots__ = ()


class _Unresolved:
    """A string whose substitution failed; the failure is already reported, so decoding skips it quietly."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNRESOLVED"


UNRESOLVED: Final = _Unresolved()


class _Invalid:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INVALID"


# Returned by the decoder where a value could not be decoded; the reason is already in ``Decoder.errors``.
INVALID: Final = _Invalid()

_SEQUENCE_ORIGINS: Final = (list, tuple, set, frozenset, Sequence, MutableSequence, AbstractSet, MutableSet)
_MAPPING_ORIGINS: Final = (dict, Mapping, MutableMapping)
_MSGSPEC_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<sub>.*)`$", re.DOTALL)


class Decoder:
    """Walks raw TOML values into typed values; collects one message per problem in ``errors``."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: Path, message: str) -> None:
        self.errors.append(at(path, message))

    def struct(self, raw: object, struct_type: type[msgspec.Struct], path: Path) -> msgspec.Struct | None:
        """Decode one TOML table into ``struct_type``; ``None`` when something was wrong (already reported)."""
        if raw is UNRESOLVED:
            return None
        if not isinstance(raw, dict):
            self.error(path, f"expected a table (got {show(raw)})")
            return None
        config = struct_type.__struct_config__
        fields = {f.encode_name: f for f in msgspec.structs.fields(struct_type)}
        kwargs: dict[str, Any] = {}
        ok = True
        for key, value in raw.items():
            if key == config.tag_field:
                # In a union the tag already chose this type; a standalone tagged Struct still checks it.
                if value is not UNRESOLVED and _plain(value) != config.tag:
                    self.error((*path, key), f"expected {show(config.tag)} (got {show(value)})")
                    ok = False
                continue
            field = fields.get(key)
            if field is None:
                self.error((*path, key), f"unknown key (known: {_known(fields, config.tag_field)})")
                ok = False
                continue
            converted = self.value(value, field.type, (*path, key))
            if converted is INVALID:
                ok = False
            else:
                kwargs[field.name] = converted
        for key, field in fields.items():
            if field.required and key not in raw:
                self.error((*path, key), f"required key missing (expected {describe(field.type)})")
                ok = False
        if not ok:
            return None
        try:
            # Every field is already converted, so constructing the Struct is what remains of msgspec.convert:
            # defaults are filled in and __post_init__ runs its cross-field checks.
            return struct_type(**kwargs)
        except (ValueError, TypeError) as exc:
            self.error(*_field_error(path, str(exc), fields))
            return None

    def value(self, raw: object, annotation: Any, path: Path) -> Any:
        """Convert ``raw`` to ``annotation``; ``INVALID`` when it could not be (already reported)."""
        if raw is UNRESOLVED:
            return INVALID
        base = _strip_annotated(annotation)
        if _is_struct(base):
            result = self.struct(raw, base, path)
            return INVALID if result is None else result
        origin = get_origin(base)
        if origin is Union or origin is types.UnionType:
            return self._union(raw, annotation, base, path)
        if origin in _SEQUENCE_ORIGINS and _is_homogeneous(origin, base):
            return self._sequence(raw, annotation, base, path)
        if origin in _MAPPING_ORIGINS:
            return self._mapping(raw, annotation, base, path)
        return self._leaf(raw, annotation, path, strict=not _has_lenient(raw))

    def _union(self, raw: object, annotation: Any, base: Any, path: Path) -> Any:
        # TOML has no null, so Optional[X] decodes as X.
        members = [m for m in get_args(base) if m is not type(None)]
        structs = [m for m in members if _is_struct(_strip_annotated(m))]
        if not structs or not isinstance(raw, dict):
            others = [m for m in members if m not in structs]
            if not others:
                self.error(path, f"expected a table (got {show(raw)})")
                return INVALID
            if len(others) == 1:
                return self.value(raw, others[0], path)
            return self._leaf(raw, annotation, path, strict=not _has_lenient(raw))
        if len(structs) == 1:
            return self.value(raw, structs[0], path)
        return self._tagged(raw, annotation, [_strip_annotated(s) for s in structs], path)

    def _tagged(self, raw: dict[str, Any], annotation: Any, structs: list[type[msgspec.Struct]], path: Path) -> Any:
        """A tagged union of Structs (msgspec ``tag_field``): the tag picks the Struct to decode into."""
        tag_field = structs[0].__struct_config__.tag_field
        if tag_field is None:  # msgspec itself refuses untagged unions of Structs; be safe anyway
            return self._leaf(raw, annotation, path, strict=not _has_lenient(raw))
        by_tag = {s.__struct_config__.tag: s for s in structs}
        choices = ", ".join(str(t) for t in by_tag)
        if tag_field not in raw:
            self.error((*path, tag_field), f"required key missing (expected one of: {choices})")
            return INVALID
        tag = raw[tag_field]
        if tag is UNRESOLVED:
            return INVALID
        chosen = by_tag.get(_plain(tag))
        if chosen is None:
            self.error((*path, tag_field), f"expected one of: {choices} (got {show(tag)})")
            return INVALID
        result = self.struct(raw, chosen, path)
        return INVALID if result is None else result

    def _sequence(self, raw: object, annotation: Any, base: Any, path: Path) -> Any:
        if not isinstance(raw, list):
            self.error(path, f"expected {describe(annotation)} (got {show(raw)})")
            return INVALID
        args = get_args(base)
        item_type = args[0] if args else Any
        items = [self.value(item, item_type, (*path, i)) for i, item in enumerate(raw)]
        if any(item is INVALID for item in items):
            return INVALID
        # The items are typed now; converting the list once more applies the container's own type (tuple, set)
        # and its length constraints.
        return self._leaf(items, annotation, path, strict=True)

    def _mapping(self, raw: object, annotation: Any, base: Any, path: Path) -> Any:
        if not isinstance(raw, dict):
            self.error(path, f"expected {describe(annotation)} (got {show(raw)})")
            return INVALID
        args = get_args(base)
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        out: dict[Any, Any] = {}
        ok = True
        for key, value in raw.items():
            # TOML keys are always strings; lenient decoding lets them fill int or enum keys.
            converted_key = self._leaf(key, key_type, (*path, key), strict=False, what="key")
            converted_value = self.value(value, value_type, (*path, key))
            if converted_key is INVALID or converted_value is INVALID:
                ok = False
            else:
                out[converted_key] = converted_value
        if not ok:
            return INVALID
        return self._leaf(out, annotation, path, strict=True)

    def _leaf(self, raw: object, annotation: Any, path: Path, *, strict: bool, what: str = "") -> Any:
        try:
            return msgspec.convert(_plain(raw), annotation, strict=strict)
        except msgspec.ValidationError as exc:
            message, sub = _split_msgspec(str(exc))
            prefix = f"invalid {what}: " if what else ""
            if sub:
                # The problem is inside the value (a type we do not walk, such as a fixed-length tuple): keep
                # msgspec's words, but put its sub-path on our key.
                self.errors.append(f"{format_path(path)}{sub}: {prefix}{message[:1].lower()}{message[1:]}")
            else:
                self.error(path, f"{prefix}expected {describe(annotation)} (got {show(raw)})")
            return INVALID


def describe(annotation: Any) -> str:
    """What a field accepts, in TOML words: ``an integer >= 0``, ``one of: json, console``."""
    base = _strip_annotated(annotation)
    meta = _constraints(annotation)
    origin = get_origin(base)
    if base is bool:
        return "a boolean (true or false)"
    if base is int:
        return _joined("an integer", _bounds(meta))
    if base is float:
        return _joined("a number", _bounds(meta))
    if base is str:
        return _joined("a string", _lengths(meta, "character") + _pattern(meta))
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return "one of: " + ", ".join(str(member.value) for member in base)
    if origin is Literal:
        return "one of: " + ", ".join(str(arg) for arg in get_args(base))
    if _is_struct(base) or origin in _MAPPING_ORIGINS or base in (dict, Mapping):
        return "a table"
    if origin in _SEQUENCE_ORIGINS or base in (list, tuple, set, frozenset):
        return _joined("an array", _lengths(meta, "item"))
    if origin is Union or origin is types.UnionType:
        return " or ".join(describe(m) for m in get_args(base) if m is not type(None))
    if base is Any or base is object:
        return "any value"
    if base in (datetime.datetime, datetime.date, datetime.time):
        return f"a TOML {base.__name__}"
    return f"a {getattr(base, '__name__', base)}"


def show(value: object) -> str:
    """A value as the operator wrote it (TOML spelling), for the ``(got ...)`` part of a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(str(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return f"an array of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):
        return f"the date/time {value.isoformat()}"
    return repr(value)


def _strip_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _constraints(annotation: Any) -> dict[str, Any]:
    """The ``msgspec.Meta`` constraints on an annotation (later ones win, as in msgspec)."""
    found: dict[str, Any] = {}
    if get_origin(annotation) is Annotated:
        for extra in annotation.__metadata__:
            if isinstance(extra, msgspec.Meta):
                for name in ("ge", "gt", "le", "lt", "multiple_of", "min_length", "max_length", "pattern"):
                    if getattr(extra, name) is not None:
                        found[name] = getattr(extra, name)
    return found


def _bounds(meta: Mapping[str, Any]) -> list[str]:
    operators = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
    parts = [f"{op} {_number(meta[name])}" for name, op in operators if name in meta]
    if "multiple_of" in meta:
        parts.append(f"a multiple of {_number(meta['multiple_of'])}")
    return parts


def _number(n: Any) -> str:
    # typing caches Annotated[float, Meta(ge=0)] and Annotated[float, Meta(ge=0.0)] as one object (the Metas are
    # equal), so which spelling a Struct sees depends on import order: print integral bounds one way.
    if isinstance(n, float) and n.is_integer():
        return str(int(n))
    return str(n)


def _lengths(meta: Mapping[str, Any], unit: str) -> list[str]:
    parts = []
    if "min_length" in meta:
        n = meta["min_length"]
        parts.append(f"of at least {n} {unit}{'' if n == 1 else 's'}")
    if "max_length" in meta:
        n = meta["max_length"]
        parts.append(f"of at most {n} {unit}{'' if n == 1 else 's'}")
    return parts


def _pattern(meta: Mapping[str, Any]) -> list[str]:
    return [f"matching the pattern {meta['pattern']!r}"] if "pattern" in meta else []


def _joined(noun: str, qualifiers: Iterable[str]) -> str:
    qualifiers = list(qualifiers)
    return f"{noun} {' and '.join(qualifiers)}" if qualifiers else noun


def _known(fields: Mapping[str, Any], tag_field: str | None) -> str:
    names = sorted([*fields, *([tag_field] if tag_field else [])])
    return ", ".join(format_key(n) for n in names) if names else "none"


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _is_homogeneous(origin: Any, base: Any) -> bool:
    """Whether all items share one type; fixed-length tuples (``tuple[int, str]``) are left to msgspec."""
    if origin is not tuple:
        return True
    args = get_args(base)
    return len(args) == 2 and args[1] is Ellipsis


def _plain(value: object) -> Any:
    """The value with ``Lenient`` strings turned back into plain ``str`` for msgspec."""
    if isinstance(value, Lenient):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _has_lenient(value: object) -> bool:
    if isinstance(value, Lenient):
        return True
    if isinstance(value, list):
        return any(_has_lenient(v) for v in value)
    if isinstance(value, dict):
        return any(_has_lenient(v) for v in value.values())
    return False


def _split_msgspec(text: str) -> tuple[str, str]:
    """Split msgspec's ``"Expected `int`, got `str` - at `$[1]`"`` into the message and the sub-path ``[1]``."""
    match = _MSGSPEC_AT.match(text)
    if match is None:
        return text, ""
    return match["message"], match["sub"]


def _field_error(path: Path, message: str, fields: Mapping[str, Any]) -> tuple[Path, str]:
    """A ``__post_init__`` message that starts with one of the Struct's keys (``"format: expected ..."``) is
    reported on that key, so the error names the full TOML key like every other one."""
    head, sep, rest = message.partition(": ")
    if sep:
        name, dot, sub = head.partition(".")
        if name in fields and " " not in head:
            return ((*path, name, sub) if dot else (*path, name)), rest
    return path, message
