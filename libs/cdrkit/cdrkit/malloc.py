"""glibc malloc settings for a process that moves megabytes per batch (the parser).

The parser stores a batch of CDRs with their raw payloads (12-14 KB each, ~130 a batch) as one
statement: asyncpg builds a buffer of ~1.7 MB for it, copies it twice more and frees it. glibc
serves such blocks with fresh mmap()s or trims them off the heap top when freed, so every batch
faults its megabytes in again: measured against PostgreSQL, 28 µs of client CPU per 13 KB array
element with glibc's defaults against 5 µs with the thresholds below, and the parser's
``store_batch`` 80-92 against 58 µs per CDR (docs/performance.md, fourth round). Since the
parser packs the raw payloads with lz4 (migration 0008) the statement is ~4 times smaller; served
pairs after that change still went 51-55 k → 15-21 k page faults a run.

Keeping blocks below ``mmap_threshold`` on the heap, and up to ``trim_threshold`` of free heap
top, bounds the memory held back for reuse; nothing else changes (same allocator, same data).
"""

from __future__ import annotations

import ctypes
import platform
from typing import Final

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_large_blocks"]

# mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3

MMAP_THRESHOLD: Final = 16 * 1024 * 1024
TRIM_THRESHOLD: Final = 32 * 1024 * 1024


def keep_large_blocks(
    mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD
) -> bool:
    """Set glibc's mmap and trim thresholds for this process; ``False`` (nothing done) on any
    other C library. Process-wide and idempotent."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
