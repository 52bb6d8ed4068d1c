"""Rewrite a serialized request with some byte ranges replaced, fixing the length of every message around them.

Masking changes the length of a value, and with it the length prefix of every message that holds it (the
attribute, the span, its scope and resource). The wire walk (wire.py) recorded each message it entered as a
*frame*: where its length varint sits and the frame around it. Every edit adds its size change to the frame
holding it; frames are then settled from the innermost out (a child's number is above its parent's), each one's
length rewritten and the size change, including a length varint that grew or shrank, passed to its parent.
The result is the request as the protobuf API would have serialized it after the same edits, without parsing
or re-serializing anything else: the unchanged bytes are copied by slicing.

Pure: bytes in, bytes out.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.protowire import encode_varint
from processors.pii.wire import Frame

# (start, end, new bytes, frame whose content holds [start, end)).
Edit = tuple[int, int, bytes, int]


def splice(buf: bytes, frames: Sequence[Frame], edits: Sequence[Edit]) -> bytes:
    """``buf`` with every edit applied and the lengths of the frames around them fixed. Edits must not overlap
    each other nor contain a frame's length varint (they replace leaf fields, inside the frame they name)."""
    growth = [0] * len(frames)
    pieces: list[tuple[int, int, bytes]] = []
    for start, end, new, frame in edits:
        pieces.append((start, end, new))
        if frame >= 0:
            growth[frame] += len(new) - (end - start)
    # A frame's number is above its parent's: going down, every frame is settled after all of its children.
    for frame in range(len(frames) - 1, -1, -1):
        change = growth[frame]
        if not change:
            continue
        length_at, start, end, parent = frames[frame]
        encoded = encode_varint(end - start + change)
        pieces.append((length_at, start, encoded))
        if parent >= 0:
            growth[parent] += change + len(encoded) - (start - length_at)
    pieces.sort()
    out: list[bytes] = []
    last = 0
    for start, end, new in pieces:
        if start < last:
            raise ValueError("overlapping edits")
        out.append(buf[last:start])
        out.append(new)
        last = end
    out.append(buf[last:])
    return b"".join(out)
