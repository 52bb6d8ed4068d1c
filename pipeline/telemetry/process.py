"""Process-wide tuning applied once at start (``service.tune_malloc``, ``service.tune_gc``).

glibc serves large allocations with mmap and hands freed heap back to the OS eagerly, so every 1000-span request
buffer is mapped, faulted in and returned again: raising both thresholds measured +70% on gRPC receive and
+5-32% end to end (DESIGN.md section 4). The cost is that RSS stays at its high-water mark after a spike.
The ``MALLOC_*_`` environment variables do the same but only when set before the process starts, hence mallopt.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
# glibc before 2.35 refuses an mmap threshold above HEAP_MAX_SIZE / 2, which is 32 MiB on 64-bit builds.
_MMAP_THRESHOLD_FALLBACK_BYTES = 32 * 1024 * 1024


def _glibc_version() -> str | None:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"; musl and other libcs do not know the name
    except (ValueError, OSError):
        return None


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds; True when both were applied. A no-op returning False on other
    platforms and C libraries. Never raises: a daemon that cannot tune malloc still runs, only slower."""
    if not sys.platform.startswith("linux"):
        return False
    version = _glibc_version()
    if not version or not version.startswith("glibc"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        mmap_ok: bool = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 or (
            mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_FALLBACK_BYTES) == 1
        )
        trim_ok: bool = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    except (OSError, AttributeError):
        return False
    return mmap_ok and trim_ok


def tune_gc() -> None:
    """Freeze what start-up loaded (modules, protobuf descriptors, gRPC and aiohttp internals: a few hundred
    thousand objects) out of the cyclic collector's view. The hot paths keep caches that grow into the oldest
    generation (the pii value and field caches, tail sampling's tables), which makes the collector run full
    collections now and then, and each one walked every start-up object too: measured 10% of the pii processor's
    time (bench/results/pii.md). The collection thresholds stay as they are. A higher youngest-generation
    threshold once let reference cycles holding refused requests (a raised exception kept in a local of the
    frame its traceback holds) pile up to hundreds of MiB under sustained refusals; those refusal paths are now
    free of cycles (tests/support/cycles.py), and with them fixed a higher threshold measured no faster."""
    gc.collect()
    gc.freeze()
