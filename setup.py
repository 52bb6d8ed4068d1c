"""Build hook: the package is pure Python; a regular (non-editable) install also compiles the PII masking hot path
with mypyc, when it can.

mypyc compiles these modules from their own Python source (the code stays Python, type-checked with mypy
--strict like the rest), which takes the interpreter's per-operation cost out of the wire walk, the splice and
the strict scan: about 1.3x on masking (bench/results/compiled/pii.md against bench/results/pii.md). Everything
else in the package is unchanged.

- ``pip install .``: compiled when mypyc and a C compiler work; if either is missing or the build fails, the
  install carries on with the pure-Python modules (same behaviour, slower masking) and says so.
- ``pip install -e .`` (development): never compiled. A compiled module next to its source would shadow every
  later edit of that source.
- ``OTELPIPE_COMPILE=0``: never compile; ``OTELPIPE_COMPILE=1``: compile or fail the build.

``otelpipe version`` says which modules run compiled. tests/processors/pii/test_compiled.py builds these modules
the same way and runs the PII tests against them.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The modules to compile: pipeline/compiled.py lists them (the daemon reports which ones run compiled).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline.compiled import MODULES

COMPILED = [module.replace(".", "/") + ".py" for module in MODULES]
# Third-party packages are not installed in pip's isolated build environment: their types are read as Any
# (the compiled code calls them dynamically, as the interpreter would).
MYPY_OPTIONS = ["--ignore-missing-imports", "--follow-imports=silent", "--no-warn-unused-ignores"]


def _mode() -> str:
    mode = os.environ.get("OTELPIPE_COMPILE", "auto")
    if mode not in ("0", "1", "auto"):
        raise SystemExit(f"OTELPIPE_COMPILE must be 0, 1 or auto, not {mode!r}")
    return mode


def _builds_modules() -> bool:
    """Whether this run of setup.py builds what gets installed. An editable install (PEP 660 editable_wheel, or
    legacy develop) never compiles; metadata steps (egg_info, dist_info) need no extension list."""
    commands = sys.argv[1:]
    if any(arg in ("editable_wheel", "develop") for arg in commands):
        return False
    return any(arg in ("bdist_wheel", "build", "build_ext", "install") for arg in commands)


def _ext_modules(mode: str) -> list[Any]:
    if mode == "0" or not _builds_modules():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        if mode == "1":
            raise
        print("otelpipe: mypyc is not available; installing the pure-Python modules", file=sys.stderr)
        return []
    try:
        return list(mypycify([*MYPY_OPTIONS, *COMPILED], opt_level="3", group_name="otelpipe_compiled"))
    except BaseException as exc:  # mypyc reports type errors with SystemExit
        if mode == "1":
            raise
        print(f"otelpipe: mypyc failed ({exc!r}); installing the pure-Python modules", file=sys.stderr)
        return []


class OptionalBuildExt(build_ext):
    """Compile the extensions, or (unless OTELPIPE_COMPILE=1) carry on without any of them if the C build fails.
    All or nothing: mypyc's modules share one library, and a module built without it would fail to import."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if _mode() == "1":
                raise
            for built in self.get_outputs():
                if os.path.exists(built):
                    os.remove(built)
            self.extensions = []
            print(f"otelpipe: compiling failed ({exc!r}); installing the pure-Python modules", file=sys.stderr)


setup(ext_modules=_ext_modules(_mode()), cmdclass={"build_ext": OptionalBuildExt})
