"""Give the memory freed after each batch back to the operating system.

glibc's malloc keeps freed heap memory for reuse and raises its mmap threshold
after large tensors are freed, so that later large tensors come from a heap
that fragments: over many specimens the process's peak RSS grew while the live
tensors did not. ``malloc_trim`` after each batch returns the free pages; with it
the peak stays flat from the first batch on (measured: benchmarks/README.md, "What the
profile shows", Memory). Elsewhere (macOS, Windows,
musl) there is no such call and nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return freed heap pages to the OS where the C library can (glibc); True if it ran."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
