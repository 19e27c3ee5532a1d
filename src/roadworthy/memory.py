"""Process memory settings for runs that allocate and free large arrays over and over.

A run transforms batches of images of several megabytes each, thousands of times. glibc's allocator serves
allocations above its adaptive mmap threshold with fresh pages from the operating system and gives freed
memory at the top of the heap back once it exceeds its trim threshold; every new batch then pays a page
fault (and the zeroing of a page) for each 4 KiB it touches. On the virtual machines we measured, that
made the image shifts at 224 px 1.5-3x slower than the same code with the memory kept for reuse.

:func:`keep_freed_memory` fixes both thresholds: blocks up to 32 MiB (glibc's ceiling) come from the heap,
and up to 256 MiB of freed heap is kept for the next batch. ``roadworthy`` applies it when a run starts;
set ``ROADWORTHY_DEFAULT_MALLOC=1`` to keep the allocator's defaults. It does nothing off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  #: blocks below this come from the heap (glibc's maximum on 64-bit systems)
TRIM_THRESHOLD = 256 << 20  #: freed heap memory kept for reuse before any is returned to the system

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds so that freed batch memory is reused (once per process).

    Returns
    -------
    bool
        True when the settings are in force (glibc, not opted out with ``ROADWORTHY_DEFAULT_MALLOC=1``).
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("ROADWORTHY_DEFAULT_MALLOC", "") not in ("", "0") or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _applied
