"""One trace at decision time, and what policies may read about it.

A ``Trace`` is taken out of the table (table.py) when its trace is decided. Its spans (``marks``) and log
records (``lmarks``) are held as marks.py describes: runs of framed items under their (resource, scope) headers.
What decisions need cheaply (times, status, root, counts) was aggregated while spans arrived; everything else
(attributes, tracestate, flags) is decoded from the items only when a policy asks, once per trace
(``TraceView``).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

from processors.tail_sampling.marks import Content, iter_runs

# Flag bits aggregated per trace: Status.code values 1 (OK) and 2 (ERROR), and whether the root span arrived.
STATUS_OK = 1
STATUS_ERROR = 2
ROOT = 4

NO_START = (1 << 64) - 1  # "no span yet" for the earliest start (an unsigned 64-bit column)


class Trace:
    __slots__ = (
        "coded",
        "first",
        "hi",
        "lbytes",
        "lmarks",
        "lo",
        "log_count",
        "marks",
        "nbytes",
        "root",
        "span_count",
        "status",
        "tid",
    )

    def __init__(self, tid: bytes, first: float) -> None:
        self.tid = tid
        self.first = first  # arrival (processor clock, seconds) of its first span or log record
        self.lo = NO_START  # earliest span start (unix ns)
        self.hi = 0  # latest span end (unix ns)
        self.status = 0  # STATUS_* bits seen
        self.coded = 0  # spans whose status code is not UNSET
        self.root = False  # a span without parent arrived
        self.span_count = 0
        self.nbytes = 0  # span bodies
        self.marks: tuple[Any, ...] = ()
        self.log_count = 0
        self.lbytes = 0
        self.lmarks: tuple[Any, ...] = ()

    @property
    def held_bytes(self) -> int:
        return self.nbytes + self.lbytes


def any_value(v: Any) -> Any:
    """An OTLP AnyValue as a Python value (str, bool, int, float, bytes, list, dict; None when empty)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


class HeaderAttributes:
    """Resource and scope attributes of each (resource, scope) header pair, decoded once; bounded (past
    ``limit`` distinct pairs it starts over)."""

    def __init__(self, limit: int = 4096) -> None:
        self._cache: dict[Content, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._limit = limit

    def get(self, content: Content) -> tuple[dict[str, Any], dict[str, Any]]:
        found = self._cache.get(content)
        if found is None:
            if len(self._cache) >= self._limit:
                self._cache.clear()
            # The headers parse as ResourceSpans / ScopeSpans for logs too: field 1 is a Resource / a scope.
            resource = _attrs(ResourceSpans.FromString(content[0]).resource.attributes)
            scope = _attrs(ScopeSpans.FromString(content[1]).scope.attributes)
            found = self._cache[content] = (resource, scope)
        return found


class TraceView:
    """The trace as policies see it. Cheap facts are on ``trace``; ``values``, ``trace_states`` and ``flags``
    decode the span bodies on first use (about 1 us per span), collecting only the attribute keys some policy
    needs."""

    __slots__ = ("_decoded", "_flags", "_headers", "_keys", "_states", "_values", "trace")

    def __init__(self, trace: Trace, keys: frozenset[str], headers: HeaderAttributes) -> None:
        self.trace = trace
        self._keys = keys
        self._headers = headers
        self._decoded = False
        self._values: dict[str, list[Any]] = {}
        self._states: list[str] = []
        self._flags: list[int] = []

    @property
    def nbytes(self) -> int:
        return self.trace.nbytes

    def values(self, key: str) -> list[Any]:
        """Every value of attribute ``key`` on the trace's spans, their resources and their scopes."""
        self._decode()
        return self._values.get(key, [])

    def trace_states(self) -> list[str]:
        self._decode()
        return self._states

    def flags(self) -> list[int]:
        """Span.flags of every span (bits 0-7: W3C trace flags)."""
        self._decode()
        return self._flags

    def _decode(self) -> None:
        if self._decoded:
            return
        self._decoded = True
        values = self._values
        keys = self._keys
        for content, run, _ in iter_runs(self.trace.marks):
            for attrs in self._headers.get(content):
                for key in keys.intersection(attrs):
                    values.setdefault(key, []).append(attrs[key])
            for span in ScopeSpans.FromString(run).spans:
                if keys:
                    for kv in span.attributes:
                        if kv.key in keys:
                            values.setdefault(kv.key, []).append(any_value(kv.value))
                if span.trace_state:
                    self._states.append(span.trace_state)
                self._flags.append(span.flags)
