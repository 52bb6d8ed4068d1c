from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from pipeline.telemetry.logging import OtelpipeHandler


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put root's handlers and both levels back afterwards."""
    root, ours = logging.getLogger(), logging.getLogger("otelpipe")
    handlers, root_level, our_level = list(root.handlers), root.level, ours.level
    yield
    for h in root.handlers:
        if isinstance(h, OtelpipeHandler):
            h.close()
    root.handlers[:] = handlers
    root.setLevel(root_level)
    ours.setLevel(our_level)
