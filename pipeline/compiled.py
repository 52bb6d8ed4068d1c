"""Which modules a regular install compiles with mypyc (setup.py), and which of them run compiled now.

The list lives here, not in setup.py alone, so that the daemon can say what it runs: ``otelpipe version`` and the
pii processor's start-up log. A module that is not compiled (an editable install, no C compiler,
OTELPIPE_COMPILE=0) runs as plain Python with the same behaviour.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util

# The pii processor's hot path (see processors/pii/engine.py), and the varint codec it calls per field.
MODULES = (
    "pipeline.protowire",
    "processors.pii.wire",
    "processors.pii.splice",
    "processors.pii.engine",
    "processors.pii.scan",
    "processors.pii.joined",
    "processors.pii.detectors",
    "processors.pii.validators",
    "processors.pii.bulk",
    "processors.pii.regex",
    "processors.pii.actions",
    "processors.pii.keys",
)


def is_compiled(module: str) -> bool:
    """Whether importing ``module`` loads (or loaded) a compiled extension rather than its Python source."""
    spec = importlib.util.find_spec(module)
    return spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


def compiled(modules: tuple[str, ...] = MODULES) -> list[str]:
    """The modules of ``modules`` that run compiled."""
    return [m for m in modules if is_compiled(m)]
