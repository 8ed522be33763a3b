"""Keep freed host memory inside the process (glibc), so big CPU tensors stop costing page faults.

glibc serves an allocation above its mmap threshold (128 KiB, raised on the fly to at most
32 MiB) with a fresh mmap, returns it with munmap on free, and trims the heap top whenever
more than twice that threshold is free. SAM's mask decoder allocates and frees tens of 4-16 MB
activations per prompt on a CPU, so each of them is faulted in page by page again, and the
faults of two threads serialise on the process's memory-map lock. Measured on the 2-core bench
box (tiny SAM, 40 prompts of one tile, chunks of 4): ~450,000 minor page faults per predict()
with the defaults, ~4,000 after keep_freed_memory(); whole runs got 1.18x faster (engine) and
1.92x (SAMRS's loop, whose chunks of 20 prompts make 80 MB activations, always mmapped), see
bench/RESULTS.md. Masks are unchanged: only where the bytes live changes. The cost: the
process's RSS stays at its peak instead of shrinking.

Process-wide, like torch.set_num_threads: meant for a process that runs the engine (a Ray
actor, a CLI run, a benchmark).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache

M_TRIM_THRESHOLD = -1  # from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
DEFAULT_LIMIT = 1 << 30  # allocations below 1 GiB come from the heap, which is never trimmed below 1 GiB free


@lru_cache(maxsize=None)
def keep_freed_memory(limit: int = DEFAULT_LIMIT) -> bool:
    """Raise glibc's mmap and trim thresholds to `limit` bytes; once per process per limit.

    Returns whether both settings took effect (False without glibc: macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, limit))
