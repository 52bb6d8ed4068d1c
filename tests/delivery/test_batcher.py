"""The pure batcher: size, bytes and timeout triggers, partitions, order; time is passed in."""

from __future__ import annotations

from pipeline.delivery.batcher import Batcher, Trigger


def test_size_trigger_sends_once_enough_items_are_together() -> None:
    b: Batcher[str] = Batcher(send_batch_size=10, max_bytes=0, timeout_s=1.0)
    assert b.add("k", "a", 4, 100, now=0.0) == []
    assert b.add("k", "b", 4, 100, now=0.1) == []
    (group,) = b.add("k", "c", 4, 100, now=0.2)
    assert (group.entries, group.items, group.nbytes, group.trigger) == (["a", "b", "c"], 12, 300, Trigger.SIZE)
    assert (b.items, b.nbytes, b.partitions) == (0, 0, 0)


def test_bytes_trigger_closes_the_group_before_it_would_pass_the_limit() -> None:
    b: Batcher[str] = Batcher(send_batch_size=1000, max_bytes=250, timeout_s=1.0)
    b.add("k", "a", 1, 100, now=0.0)
    b.add("k", "b", 1, 100, now=0.0)
    (group,) = b.add("k", "c", 1, 100, now=0.0)  # 300 > 250: a+b go, c starts the next group
    assert (group.entries, group.trigger) == (["a", "b"], Trigger.BYTES)
    assert b.nbytes == 100
    (big,) = b.add("j", "huge", 1, 500, now=0.0)  # larger than the limit alone: sent at once
    assert big.entries == ["huge"]


def test_timeout_trigger_and_deadline_of_the_oldest_group() -> None:
    b: Batcher[str] = Batcher(send_batch_size=100, max_bytes=0, timeout_s=0.2)
    assert b.next_deadline() is None
    b.add("x", "a", 1, 1, now=10.0)
    b.add("y", "b", 1, 1, now=10.1)
    assert b.next_deadline() == 10.2
    assert b.due(10.19) == []
    (first,) = b.due(10.2)
    assert (first.key, first.trigger) == ("x", Trigger.TIMEOUT)
    assert b.next_deadline() is not None
    assert abs(b.next_deadline() - 10.3) < 1e-9
    assert [g.key for g in b.due(11.0)] == ["y"]


def test_timeout_zero_sends_every_entry_at_once() -> None:
    b: Batcher[str] = Batcher(send_batch_size=100, max_bytes=0, timeout_s=0.0)
    assert [g.entries for g in b.add("k", "a", 1, 1, now=0.0)] == [["a"]]


def test_partition_limit_and_flush_in_arrival_order() -> None:
    b: Batcher[str] = Batcher(send_batch_size=100, max_bytes=0, timeout_s=5.0, max_partitions=2)
    b.add("t1", "a", 1, 1, now=0.0)
    b.add("t2", "b", 1, 1, now=0.0)
    assert not b.has_room_for("t3")
    assert b.has_room_for("t1")
    b.add("t1", "c", 1, 1, now=0.0)
    groups = b.flush()
    flushed = [(g.key, g.entries, g.trigger) for g in groups]
    assert flushed == [("t1", ["a", "c"], Trigger.FLUSH), ("t2", ["b"], Trigger.FLUSH)]
    assert b.has_room_for("t3")
