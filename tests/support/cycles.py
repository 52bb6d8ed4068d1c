"""Whether an error path leaves work for the cyclic garbage collector.

``refused = ...; raise refused`` makes a reference cycle: the exception's traceback holds the raising frame, and
the frame's local holds the exception. Nothing frees it but a collection, and everything that frame holds (the
batch being refused, its parsed request) waits with it: under sustained refusals these piled up by hundreds of
MiB before a full collection came around.
"""

from __future__ import annotations

import gc
from collections.abc import Callable


def garbage_after(run: Callable[[], object], expect: type[BaseException]) -> int:
    """Run ``run``, which must raise ``expect``, and drop the exception: how many objects only the cyclic
    collector could then free (0 when reference counting freed everything)."""
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
        return gc.collect()
    finally:
        if enabled:
            gc.enable()
