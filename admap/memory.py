"""Giving memory that a stage freed back to the operating system.

Freed memory stays with the allocator that held it: Arrow's pool keeps freed blocks for reuse, and glibc's
heap keeps the pages of freed Python objects below its top. A later stage that allocates elsewhere (Python
objects after Arrow buffers, or the other way) cannot use them, so a run's peak resident size would count
every stage's high-water mark at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os

import pyarrow as pa


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> None:
    """Collect garbage, then return the pages Arrow's pool and the C heap hold free to the system."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def use_system_memory_pool() -> None:
    """Arrow's buffers from the C library's allocator, unless ``ARROW_DEFAULT_MEMORY_POOL`` names a pool.

    glibc maps each large buffer apart and unmaps it when freed, so a stage's transient copies of the
    texts leave the resident size as soon as they go; mimalloc, Arrow's default pool here, keeps them for
    reuse, and a run's peak then counts every stage's copies at once (64k raw UltraFeedback rows through
    `admap map`: 1.85 GB peak against 2.36 GB, `benchmarks/bench_memory.py`). Commands call it as they
    start; a program that imports admap keeps the pool it chose."""
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())
