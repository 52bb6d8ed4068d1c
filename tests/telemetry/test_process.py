"""tune_malloc: applied on glibc Linux, a no-op elsewhere, never an exception. tune_gc: freezes start-up objects."""

from __future__ import annotations

import gc
import os
import sys

import pytest

from pipeline.telemetry import process


def _is_glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        return False


def test_tune_malloc_applies_on_glibc() -> None:
    applied = process.tune_malloc()
    assert isinstance(applied, bool)
    assert applied is _is_glibc()


def test_tune_malloc_is_a_noop_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert process.tune_malloc() is False


def test_tune_malloc_is_a_noop_on_other_libcs(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_glibc(name: str) -> str:
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(os, "confstr", no_glibc)
    assert process.tune_malloc() is False


def test_tune_gc_freezes_start_up_objects_and_keeps_the_thresholds() -> None:
    saved = gc.get_threshold()
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        process.tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == saved
    finally:
        gc.unfreeze()
