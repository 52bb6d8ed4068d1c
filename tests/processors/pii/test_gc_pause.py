"""The engine pauses the cyclic garbage collector while it masks a request (engine.py, ``Engine.process``).

That is only sound because masking makes no reference cycles: everything it allocates is freed by reference
counting, so no collection is owed afterwards. Both halves are checked here, and the collector's state is
restored on every way out.
"""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.model import Signal
from pipeline.protowire import WireError
from tests.processors.pii.helpers import engine
from tests.processors.pii.test_splice import _traces

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """Generations of the collections that start while the test runs, with a threshold low enough that masking a
    request would start several if the collector were running."""
    started: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    threshold = gc.get_threshold()
    gc.set_threshold(50)
    gc.callbacks.append(record)
    try:
        yield started
    finally:
        gc.callbacks.remove(record)
        gc.set_threshold(*threshold)


def _request() -> bytes:
    return _traces(random.Random(3)).SerializeToString()


def test_no_collection_runs_while_a_request_is_masked(collections: list[int]) -> None:
    eng = engine()
    raw = _request()
    assert gc.isenabled()
    collections.clear()
    out = eng.process(Signal.TRACES, raw)
    assert out.changed  # the request holds secrets: masking did real work
    assert collections == []
    assert gc.isenabled()
    # At this threshold a running collector does start collections on far fewer container allocations than
    # masking makes, so the check above can fail.
    junk = [(i,) for i in range(500)]
    assert collections
    del junk


def test_a_paused_collector_stays_paused() -> None:
    eng = engine()
    gc.disable()
    try:
        eng.process(Signal.TRACES, _request())
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_is_resumed_when_masking_fails() -> None:
    eng = engine()
    raw = _request()
    with pytest.raises((WireError, IndexError)):
        eng.process(Signal.TRACES, raw[: len(raw) // 2])
    assert gc.isenabled()


def test_masking_makes_no_reference_cycles() -> None:
    # A fresh interpreter: no other thread makes garbage while we count.
    script = textwrap.dedent(
        """
        import gc, random
        from pipeline.model import Signal
        from tests.processors.pii.helpers import engine, HASH_KEY
        from tests.processors.pii.test_splice import _traces, _logs, _metrics

        engines = [
            engine(),
            engine(hash_key=HASH_KEY, action="hash", blocked_keys=["*password*", "user.*"]),
            engine(actions={"email": "drop", "ipv4": "mask_partial"}, allowed_keys=["k0", "k1", "host.note", "n"]),
        ]
        rng = random.Random(11)
        requests = []
        for _ in range(20):
            requests += [
                (Signal.TRACES, _traces(rng).SerializeToString()),
                (Signal.LOGS, _logs(rng).SerializeToString()),
                (Signal.METRICS, _metrics(rng).SerializeToString()),
            ]
        gc.collect()
        gc.disable()
        changed = 0
        for eng in engines:
            for signal, raw in requests:
                changed += eng.process(signal, raw).changed
        print(changed, gc.collect())
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    changed, unreachable = map(int, proc.stdout.split())
    assert changed > 0
    assert unreachable == 0
