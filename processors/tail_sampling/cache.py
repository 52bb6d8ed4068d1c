"""The decision cache: what happened to traces no longer buffered, so late spans and logs follow their trace.

- Kept trace ids: an exact LRU (``KeptCache``), ~150 bytes per id. Kept traces are the minority, and a late span
  of a kept trace must never be lost to a false positive.
- Dropped trace ids: a compact filter (``DroppedFilter``), under 7 bytes per id at the default rate. A filter
  answers "maybe dropped" for some ids it never saw (false positives). The processor therefore never drops a late
  ERROR span on the filter's word alone, and counts the expected number of false positives.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import OrderedDict

from processors.tail_sampling.policies import Decision


class KeptCache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: OrderedDict[bytes, Decision] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, tid: bytes) -> Decision | None:
        return self._ids.get(tid) if self._size else None

    def put(self, tid: bytes, decision: Decision) -> None:
        if not self._size:
            return
        ids = self._ids
        ids[tid] = decision
        ids.move_to_end(tid)
        if len(ids) > self._size:
            ids.popitem(last=False)


# Masks with two bits set in a 64-bit word, indexed by 12 bits of hash: k bit positions cost k/2 lookups.
_PAIR_MASKS = [(1 << (i & 63)) | (1 << (i >> 6)) for i in range(4096)]
# Bits set per id: five pairs from 60 bits of hash. With one-word blocks, more bits gain nothing (the block fills
# up), fewer need more memory for the same rate.
_K = 10
_MASK64 = (1 << 64) - 1
_SECOND = 0x9E3779B97F4A7C15  # any constant: makes hash((tid, _SECOND)) a second hash of the id


def _poisson_fpr(bits_per_item: int, k: int) -> float:
    """False-positive rate of a blocked Bloom filter with 64-bit blocks (Putze et al.): the number of items in a
    block is Poisson distributed, and a lookup fails when all its k bits are already set in its block."""
    lam = 64 / bits_per_item
    total = 0.0
    p = math.exp(-lam)  # P(j = 0)
    for j in range(0, 200):
        if j:
            p *= lam / j
        fill = 1.0 - (1.0 - 1.0 / 64) ** (j * k)
        total += p * fill**k
        if j > lam and p < 1e-12:
            break
    return total


def blocked_bloom_bits(fpr: float) -> int:
    """Bits per item of the smallest blocked Bloom filter (k = 10) reaching ``fpr`` when full."""
    for bits in range(4, 257):
        if _poisson_fpr(bits, _K) <= fpr:
            return bits
    return 256


class _Generation:
    __slots__ = ("count", "words")

    def __init__(self, nwords: int) -> None:
        self.words = array("Q", bytes(8 * nwords))
        self.count = 0


class DroppedFilter:
    """Two generations of a blocked Bloom filter: each holds ``capacity`` ids; when the current one is full it
    becomes the previous one and a fresh one starts, so the filter remembers at least the last ``capacity``
    dropped ids (up to twice that) and its false-positive rate stays bounded by ``fpr`` (each generation gets
    half of it). Memory: 2 x capacity x bits-per-item / 8 bytes (53 bits, under 7 bytes, per id at 1e-4).

    Hashing: Python's own ``hash`` of the id by default. It is salted per process, which is fine for a filter
    that lives in one process, and free: a bytes object caches its hash, and every id was already hashed by the
    dict lookup that found it unbuffered. ``stable=True`` uses BLAKE2b instead (about 1 us more per id), for
    runs that must repeat exactly (the replay tool, tests).
    """

    def __init__(self, capacity: int, fpr: float, stable: bool = False) -> None:
        self.capacity = capacity
        self.enabled = capacity > 0
        self._bits = blocked_bloom_bits(fpr / 2)
        self._nwords = max(1, math.ceil(capacity * self._bits / 64)) if self.enabled else 1
        self._cur = _Generation(self._nwords)
        self._prev: _Generation | None = None
        self._stable = stable
        # The false-positive rate at each tenth of a generation's fill, for the running estimate.
        self._fpr_at = [_fill_fpr(self._bits, f / 10) for f in range(11)]

    @property
    def nbytes(self) -> int:
        return 8 * self._nwords * (2 if self._prev is not None else 1)

    def _slot(self, tid: bytes) -> tuple[int, int]:
        """The word and the bit mask of ``tid``."""
        if self._stable:
            h = int.from_bytes(hashlib.blake2b(tid, digest_size=16).digest(), "little")
            index, bits = h & _MASK64, h >> 64
        else:
            # Two 64-bit hashes: the id's own (cached) and a tuple hash mixing it again.
            index, bits = hash(tid) & _MASK64, hash((tid, _SECOND)) & _MASK64
        p = _PAIR_MASKS
        mask = p[bits & 4095] | p[(bits >> 12) & 4095] | p[(bits >> 24) & 4095] | p[(bits >> 36) & 4095]
        return index % self._nwords, mask | p[(bits >> 48) & 4095]

    def add(self, tid: bytes) -> None:
        if not self.enabled:
            return
        cur = self._cur
        if cur.count >= self.capacity:
            self._prev, cur = cur, _Generation(self._nwords)
            self._cur = cur
        index, mask = self._slot(tid)
        cur.words[index] |= mask
        cur.count += 1

    def __contains__(self, tid: bytes) -> bool:
        if not self.enabled:
            return False
        index, mask = self._slot(tid)
        if self._cur.words[index] & mask == mask:
            return True
        prev = self._prev
        return prev is not None and prev.words[index] & mask == mask

    def false_positive_rate(self) -> float:
        """The probability, now, that an id never added is reported as dropped."""
        if not self.enabled:
            return 0.0
        rate = self._fpr_at[min(10, self._cur.count * 10 // max(1, self.capacity))]
        if self._prev is not None:
            rate += self._fpr_at[10]
        return rate


def _fill_fpr(bits: int, fill: float) -> float:
    """The rate when only ``fill`` (0..1) of the items a generation is sized for are in it."""
    if fill <= 0:
        return 0.0
    return _poisson_fpr(max(1, round(bits / fill)), _K)
