"""OTLP export requests as bytes: split into headers and item bodies in C, framed back together by slicing.

Traces and logs share one shape on the wire: the request holds resource entries (field 1), a resource entry holds
its header fields (resource = 1, schema_url = 3) and scope entries (field 2), a scope entry holds its header
fields (scope = 1, schema_url = 3) and items (field 2: spans or log records). ``split`` parses a request with a
private "shadow" schema that declares only the entry and item fields: upb keeps every other field as unknown
bytes, so after the items are taken out, serializing an entry gives its header exactly as the sender wrote it
(unknown fields included), and each item is one ``bytes`` object cut out by the C parser.

Why bytes and not protobuf objects: buffered spans then cost about their own size (measured: ~435 bytes of RSS
per 365-byte span, bench/results/tail_sampling.md) and nothing of the request around them is kept alive;
re-framing kept spans is a join (DESIGN.md section 4: 0.25 us per span against 1.4 us for ``extend``).

The items come out in the same order as the full parse of the same bytes (``Batch.message``) and as the column
parse (columns.py), so the processor walks them side by side.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from pipeline.protowire import encode_varint
from processors.tail_sampling.marks import iter_runs

_PACKAGE = "otelpipe.processors.tail_sampling.shadow"
_F = descriptor_pb2.FieldDescriptorProto

# Field tags (field number << 3 | wire type 2) of the framing.
RESOURCE_ENTRY_TAG = 0x0A  # ExportTraceServiceRequest.resource_spans / ExportLogsServiceRequest.resource_logs
SCOPE_ENTRY_TAG = 0x12  # ResourceSpans.scope_spans / ResourceLogs.scope_logs
ITEM_TAG = 0x12  # ScopeSpans.spans / ScopeLogs.log_records

# Above this a request is cut in several (4 MiB is the default gRPC receive limit of most backends).
MAX_REQUEST_BYTES = 4 * 1024 * 1024 - 64 * 1024
# Runs of items added together are framed in pieces of at most this, the unit requests are cut at.
MAX_RUN_BYTES = 64 * 1024


def _shadow_classes() -> dict[str, type[Message]]:
    fdp = descriptor_pb2.FileDescriptorProto(name="otelpipe_ts_shadow.proto", package=_PACKAGE, syntax="proto3")
    request = fdp.message_type.add(name="Request")
    request.field.add(
        name="entries", number=1, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED, type_name=f".{_PACKAGE}.Entry"
    )
    entry = fdp.message_type.add(name="Entry")
    entry.field.add(
        name="scopes", number=2, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED, type_name=f".{_PACKAGE}.Scope"
    )
    scope = fdp.message_type.add(name="Scope")
    scope.field.add(name="items", number=2, type=_F.TYPE_BYTES, label=_F.LABEL_REPEATED)
    # A private pool: these names must never collide with, or leak into, the default one.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    # Every class is made and held here: upb would otherwise build the nested ones on each access and let the
    # garbage collector take them back (measured: 10 objects of cyclic garbage per request).
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{n}")) for n in _NAMES}


_NAMES = ("Request", "Entry", "Scope")
_CLASSES = _shadow_classes()
_REQUEST = _CLASSES["Request"]


def split(raw: bytes) -> list[tuple[bytes, bytes, list[bytes]]]:
    """(resource header, scope header, item bodies) for every scope entry of a serialized request, in order.

    Raises google.protobuf.message.DecodeError on bytes that are not a request of this shape.
    """
    shadow: Any = _REQUEST()
    shadow.ParseFromString(raw)
    out: list[tuple[bytes, bytes, list[bytes]]] = []
    for entry in shadow.entries:
        scopes = []
        for scope in entry.scopes:
            items = list(scope.items)
            del scope.items[:]
            scopes.append((scope.SerializeToString(), items))
        del entry.scopes[:]
        resource = entry.SerializeToString()
        for header, items in scopes:
            out.append((resource, header, items))
    return out


# Tag + length prefixes of items up to 16 KiB, so framing a span is a lookup, not a varint encoding.
PREFIXED_LIMIT = 16384
ITEM_PREFIXES = [bytes((ITEM_TAG,)) + encode_varint(n) for n in range(PREFIXED_LIMIT)]


def item_prefix(n: int) -> bytes:
    return ITEM_PREFIXES[n] if n < PREFIXED_LIMIT else bytes((ITEM_TAG,)) + encode_varint(n)


def _prefixes(items: Sequence[bytes]) -> list[bytes]:
    try:
        return list(map(ITEM_PREFIXES.__getitem__, map(len, items)))
    except IndexError:  # an item of 16 KiB or more
        return [item_prefix(len(b)) for b in items]


def framed_parts(items: Sequence[bytes]) -> tuple[list[bytes], int]:
    """Items as the repeated field 2 of a scope entry: [prefix, body, prefix, body, ...] and its size."""
    prefixes = _prefixes(items)
    parts: list[bytes] = [b""] * (2 * len(items))
    parts[0::2] = prefixes
    parts[1::2] = items
    return parts, sum(map(len, prefixes)) + sum(map(len, items))


def frame_items(items: Sequence[bytes]) -> bytes:
    return b"".join(framed_parts(items)[0])


def frame(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + encode_varint(len(body)) + body


class Interner:
    """One (resource header, scope header) pair object per distinct content, so the bodies of every trace share
    the header bytes instead of each request's copy. Bounded: past ``limit`` distinct pairs it starts over
    (pairs still held by buffered traces stay valid, they are just no longer shared)."""

    def __init__(self, limit: int = 4096) -> None:
        self._pairs: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}
        self._limit = limit

    def pair(self, resource: bytes, scope: bytes) -> tuple[bytes, bytes]:
        content = (resource, scope)
        found = self._pairs.get(content)
        if found is None:
            if len(self._pairs) >= self._limit:
                self._pairs.clear()
            found = self._pairs[content] = content
        return found


class RequestBuilder:
    """Collects framed runs of items by (resource, scope) and encodes them as export requests of at most
    MAX_REQUEST_BYTES (a single run larger than that goes out alone: runs are never cut)."""

    __slots__ = ("_groups", "items")

    def __init__(self) -> None:
        self._groups: dict[tuple[bytes, bytes], list[tuple[bytes, int]]] = {}
        self.items = 0

    def __bool__(self) -> bool:
        return self.items > 0

    def add(self, content: tuple[bytes, bytes], bodies: Sequence[bytes]) -> None:
        """Add item bodies (unframed) under one resource and scope, as runs of at most MAX_RUN_BYTES (so that a
        long list can still be cut into requests)."""
        start = size = 0
        for i, body in enumerate(bodies):
            if size and size + len(body) > MAX_RUN_BYTES:
                self.add_run(content, frame_items(bodies[start:i]), i - start)
                start, size = i, 0
            size += len(body)
        if start < len(bodies):
            self.add_run(content, frame_items(bodies[start:]), len(bodies) - start)

    def add_run(self, content: tuple[bytes, bytes], run: bytes, count: int) -> None:
        """Add ``count`` items already framed as one run (``frame_items``)."""
        group = self._groups.get(content)
        if group is None:
            self._groups[content] = [(run, count)]
        else:
            group.append((run, count))
        self.items += count

    def add_marks(self, marks: tuple[Any, ...]) -> None:
        """Add every run of a trace's marks (marks.py)."""
        for content, run, count in iter_runs(marks):
            self.add_run(content, run, count)

    def encode(self, limit: int = MAX_REQUEST_BYTES) -> list[tuple[bytes, int]]:
        """Serialized requests and their item counts; a resource appears once per request, in first-seen order.
        Every byte is copied once, by the final join."""
        by_resource: dict[bytes, list[tuple[bytes, list[tuple[bytes, int]]]]] = {}
        for (resource, scope), runs in self._groups.items():
            by_resource.setdefault(resource, []).append((scope, runs))
        out = _Requests(limit)
        for resource, scopes in by_resource.items():
            for scope, runs in scopes:
                # 24 bytes: room for two tags and two lengths around the headers.
                room = max(1, limit - len(resource) - len(scope) - 24)
                for parts, size, items in _scope_chunks(runs, room):
                    out.add(resource, scope, parts, size, items)
            out.end_resource()
        return out.finish()


class _Requests:
    """Packs scope entries into resource entries and those into requests, as lists of parts joined once."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._done: list[tuple[bytes, int]] = []
        self._request: list[bytes] = []
        self._size = 0
        self._count = 0
        self._resource = b""
        self._entry: list[bytes] = []  # scope entries of the resource entry being built
        self._entry_size = 0

    def add(self, resource: bytes, scope: bytes, items: list[bytes], items_size: int, count: int) -> None:
        body = len(scope) + items_size
        scope_entry = 1 + len(encode_varint(body)) + body
        # 11 bytes: room for the resource entry's tag and length.
        if self._size + len(resource) + 11 + self._entry_size + scope_entry > self._limit and (
            self._entry or self._request
        ):
            self.end_resource()
            self._end_request()
        self._resource = resource
        self._entry += (_SCOPE_TAG, encode_varint(body), scope)
        self._entry += items
        self._entry_size += scope_entry
        self._count += count

    def end_resource(self) -> None:
        if self._entry:
            body = len(self._resource) + self._entry_size
            self._request += (_RESOURCE_TAG, encode_varint(body), self._resource)
            self._request += self._entry
            self._size += 1 + len(encode_varint(body)) + body
            self._entry, self._entry_size = [], 0

    def _end_request(self) -> None:
        if self._request:
            self._done.append((b"".join(self._request), self._count))
            self._request, self._size, self._count = [], 0, 0

    def finish(self) -> list[tuple[bytes, int]]:
        self.end_resource()
        self._end_request()
        return self._done


_SCOPE_TAG = bytes((SCOPE_ENTRY_TAG,))
_RESOURCE_TAG = bytes((RESOURCE_ENTRY_TAG,))


def _scope_chunks(runs: list[tuple[bytes, int]], limit: int) -> Iterator[tuple[list[bytes], int, int]]:
    """(runs, their size, item count), cut where one scope entry alone would pass the limit."""
    parts: list[bytes] = []
    size = count = 0
    for run, n in runs:
        if parts and size + len(run) > limit:
            yield parts, size, count
            parts, size, count = [], 0, 0
        parts.append(run)
        size += len(run)
        count += n
    if parts:
        yield parts, size, count
