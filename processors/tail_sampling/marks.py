"""How a buffered trace holds its spans (or log records): ``marks``, one flat tuple per trace.

While one request is grouped, each trace gets a list of parts ``[prefix, body, prefix, body, ...]`` (each item
body after its field tag and length, so the parts joined are the repeated items field of a scope entry) and a
list of runs ``[content, first part, content, first part, ...]``: where the items under each (resource header,
scope header) pair start. ``freeze`` turns that into a segment of the trace's marks::

    (blob, number of runs, content, count, content, count, ...)

``blob`` is every item of the trace in that request, joined once; each run is the next ``count`` items of the
blob. A trace's marks are its segments one after the other (one per request it came in). Where a run ends in the
blob is found again by walking the items' length prefixes, which only kept traces (and attribute policies) need:
cheaper than measuring every run of every trace when it arrives.

Why this shape: one bytes object per trace and request, not one per span (less memory; deciding a trace frees a
few objects while its data is cold; kept items leave by slicing and joining), and a flat tuple of bytes, ints and
header pairs that the cyclic GC untracks the first time it sees it (table.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline.protowire import decode_varint

Content = tuple[bytes, bytes]  # (resource header, scope header) as wire.split cuts them


def freeze(parts: list[bytes], runs: list[Any]) -> tuple[tuple[Any, ...], int, int]:
    """The segment for one request's items of a trace, with its item count and bytes."""
    blob = b"".join(parts)
    count = len(parts) >> 1
    if len(runs) == 2:  # one resource and scope: the usual case
        return (blob, 1, runs[0], count), count, len(blob)
    segment: list[Any] = [blob, len(runs) >> 1]
    firsts = runs[1::2]
    for content, first, end in zip(runs[0::2], firsts, [*firsts[1:], len(parts)], strict=True):
        segment += (content, (end - first) >> 1)
    return tuple(segment), count, len(blob)


def iter_runs(marks: tuple[Any, ...]) -> Iterator[tuple[Content, bytes, int]]:
    """(content, framed items, item count) for every run of a trace's marks, in arrival order."""
    i = 0
    end = len(marks)
    while i < end:
        blob, k = marks[i], marks[i + 1]
        i += 2
        if k == 1:
            yield marks[i], blob, marks[i + 1]
            i += 2
            continue
        offset = 0
        for _ in range(k):
            content, count = marks[i], marks[i + 1]
            i += 2
            stop = _skip_items(blob, offset, count)
            yield content, blob[offset:stop], count
            offset = stop


def _skip_items(blob: bytes, pos: int, count: int) -> int:
    """The offset after ``count`` framed items starting at ``pos`` (tag byte, varint length, body)."""
    for _ in range(count):
        length = blob[pos + 1]
        if length < 0x80:
            pos += 2 + length
        elif blob[pos + 2] < 0x80:  # two bytes: a span of 128 B to 16 KiB, the usual size
            pos += 3 + ((length & 0x7F) | (blob[pos + 2] << 7))
        else:
            length, pos = decode_varint(blob, pos + 1)
            pos += length
    return pos
