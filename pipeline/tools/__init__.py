"""Operator tools run from the ``otelpipe`` command line (``otelpipe replay``, ``otelpipe pii-check``, ...).

A tool is a module with ``NAME``, ``HELP``, ``configure(parser)`` and ``run(args, registry) -> exit code``,
listed in ``TOOLS``. Tools live here, not in processors/, because they read files and may use exporters'
readers, which processors must not import.
"""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Protocol

from pipeline.component import Registry


class Tool(Protocol):
    NAME: str
    HELP: str

    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, registry: Registry) -> int: ...


def tools() -> list[ModuleType]:
    """The tool modules, imported lazily so ``otelpipe run`` does not pay for them."""
    from pipeline.tools import pii_check, replay

    return [pii_check, replay]
