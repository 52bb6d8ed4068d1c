"""Process memory facts for the memory limiter: resident set size, and asking malloc to give free memory back.

With the malloc tuning the daemon applies at start (pipeline/telemetry/process.py: trim threshold 256 MiB),
glibc keeps freed heap mapped, so RSS stays at its high-water mark after a spike even when little is in use.
A limiter that read RSS alone would then refuse long after the spike ended. ``release_free_memory`` calls
``malloc_trim(0)``, which returns every free page of every arena to the OS; the limiter calls it (at most once
per check interval) only when RSS is over its soft limit, then reads RSS again.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_rss_bytes() -> int:
    """Resident set size of this process (from /proc/self/statm: one small read, ~10 us)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0  # no procfs: the RSS limit cannot be applied, the buffered-bytes limit still is


def _malloc_trim() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl has no malloc_trim)
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def release() -> None:
        trim(0)

    return release


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Return free heap pages to the OS where the C library allows it; a no-op elsewhere."""
    if _TRIM is not None:
        _TRIM()
