"""Whether an error path leaves reference cycles for the cyclic garbage collector.

``refused = ...; raise refused`` makes a reference cycle: the exception's traceback holds the raising frame, and
the frame's local holds the exception. Nothing frees it but a collection, and everything that frame holds (the
batch being refused, its parsed request) waits with it: under sustained refusals these piled up by hundreds of
MiB before a full collection came around.
"""

from __future__ import annotations

import gc
import types
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import ConsumeError
from pipeline.model import Batch

_PRODUCT = tuple(str(Path(__file__).resolve().parents[2] / d) for d in ("pipeline", "processors"))


def cycles_after(run: Callable[[], object], expect: type[BaseException]) -> list[str]:
    """Run ``run``, which must raise ``expect``, and drop the exception: what of the product's (its frames, its
    errors, batches) only the cyclic collector could then free. Other threads of the test process (servers left
    by earlier tests) may make garbage of their own meanwhile, so only the product's objects are reported."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            run()
        except expect:
            pass
        else:
            raise AssertionError(f"{expect.__name__} was not raised")
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            return [_describe(o) for o in gc.garbage if _ours(o)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    finally:
        if enabled:
            gc.enable()


def _ours(o: object) -> bool:
    if isinstance(o, types.FrameType):
        return o.f_code.co_filename.startswith(_PRODUCT)
    return isinstance(o, ConsumeError | Batch)


def _describe(o: object) -> str:
    if isinstance(o, types.FrameType):
        return f"frame {o.f_code.co_name} ({o.f_code.co_filename}:{o.f_lineno})"
    return type(o).__name__
