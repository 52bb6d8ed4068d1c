"""The batcher: which buffered entries go out together, and when. Pure: no I/O, time passed in.

Entries are grouped by a partition key (the signal and client metadata, for example). A group is ready when
it holds ``send_batch_size`` items, when adding an entry would take it past ``max_bytes`` (the group goes out
first and the entry starts the next one), or ``timeout_s`` after its first entry arrived. A timeout of 0 sends
every entry at once. The batch processor and the exporter helper's batch stage both drive one of these.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class Trigger(enum.Enum):
    """Why a group was sent: the ``trigger`` label of the batch send counters."""

    SIZE = "size"
    BYTES = "bytes"
    TIMEOUT = "timeout"
    FLUSH = "flush"  # shutdown or an explicit flush


@dataclass(slots=True, eq=False)
class Group(Generic[T]):
    key: Hashable
    started: float  # when the first entry arrived (clock.monotonic())
    entries: list[T] = field(default_factory=list)
    items: int = 0
    nbytes: int = 0
    trigger: Trigger = Trigger.FLUSH


class Batcher(Generic[T]):
    """Open groups per key, at most ``max_partitions`` at once (0 = no limit)."""

    def __init__(self, send_batch_size: int, max_bytes: int, timeout_s: float, max_partitions: int = 0) -> None:
        if send_batch_size < 1:
            raise ValueError("send_batch_size must be >= 1")
        self._size = send_batch_size
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._max_partitions = max_partitions
        # Insertion order is arrival order of each group's first entry, so the oldest group is first.
        self._open: dict[Hashable, Group[T]] = {}
        self.items = 0
        self.nbytes = 0

    @property
    def partitions(self) -> int:
        return len(self._open)

    def has_room_for(self, key: Hashable) -> bool:
        """False when ``key`` would open a group past ``max_partitions``."""
        return not self._max_partitions or key in self._open or len(self._open) < self._max_partitions

    def add(self, key: Hashable, entry: T, items: int, nbytes: int, now: float) -> list[Group[T]]:
        """Buffer ``entry``; returns the groups that are ready because of it (oldest first)."""
        ready: list[Group[T]] = []
        group = self._open.get(key)
        if group is not None and self._max_bytes and group.nbytes + nbytes > self._max_bytes:
            ready.append(self._close(group, Trigger.BYTES))
            group = None
        if group is None:
            group = self._open[key] = Group(key, now)
        group.entries.append(entry)
        group.items += items
        group.nbytes += nbytes
        self.items += items
        self.nbytes += nbytes
        if group.items >= self._size or self._timeout_s <= 0:
            ready.append(self._close(group, Trigger.SIZE))
        elif self._max_bytes and group.nbytes >= self._max_bytes:
            ready.append(self._close(group, Trigger.BYTES))
        return ready

    def next_deadline(self) -> float | None:
        """When the oldest open group times out; None when nothing is buffered."""
        for group in self._open.values():
            return group.started + self._timeout_s
        return None

    def due(self, now: float) -> list[Group[T]]:
        """Groups whose timeout has passed, oldest first."""
        ready = []
        for group in list(self._open.values()):
            if group.started + self._timeout_s > now:
                break  # groups are in order of their start: the rest are younger
            ready.append(self._close(group, Trigger.TIMEOUT))
        return ready

    def flush(self) -> list[Group[T]]:
        """Every open group, oldest first (shutdown)."""
        return [self._close(g, Trigger.FLUSH) for g in list(self._open.values())]

    def _close(self, group: Group[T], trigger: Trigger) -> Group[T]:
        del self._open[group.key]
        group.trigger = trigger
        self.items -= group.items
        self.nbytes -= group.nbytes
        return group
