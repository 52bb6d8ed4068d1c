"""The PII hot path as a regular install runs it: compiled with mypyc (setup.py, pipeline/compiled.py).

The rest of the suite runs the Python source (an editable install compiles nothing). Here a copy of the tree is
built the way ``pip install .`` builds it, and the PII tests run again against the compiled modules: the same
tests, the same expected bytes. Skipped, with the reason, where mypyc or a C compiler is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.compiled import MODULES

ROOT = Path(__file__).resolve().parents[3]
TREE = ("pipeline", "processors", "config", "bench", "tests")
FILES = ("pyproject.toml", "setup.py", "README.md")

pytestmark = pytest.mark.slow


def _build(tmp: Path) -> Path:
    try:
        import mypyc.build  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"mypyc is not installed ({exc})")
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler (cc or gcc) on PATH")
    tree = tmp / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", ".hypothesis", "out")
    for name in TREE:
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    for name in FILES:
        shutil.copy2(ROOT / name, tree / name)
    env = {**os.environ, "OTELPIPE_COMPILE": "1"}
    proc = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tree


def test_compiled_build_passes_the_pii_tests(tmp_path: Path) -> None:
    tree = _build(tmp_path)
    version = subprocess.run(
        [sys.executable, "-m", "pipeline", "version"], cwd=tree, capture_output=True, text=True, check=True
    )
    n = len(MODULES)
    assert f"compiled with mypyc: {', '.join(MODULES)} ({n} of {n})" in version.stdout
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/processors/pii",
            "--ignore=tests/processors/pii/test_compiled.py",
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary, summary
    assert "failed" not in summary, summary
    assert "error" not in summary, summary
