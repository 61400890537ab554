"""Keep freed memory inside the process during CPU training (glibc's malloc only).

A training step allocates its activations afresh: gates for every time step, states, their
gradients, tens of megabytes for a 2x512 LSTM. With glibc's defaults the larger blocks are
mapped from the OS on allocation and handed back on free (above the dynamic mmap threshold,
or when the heap's free top exceeds the trim threshold), so every step page-faults on first
touch of its own buffers. Raising both thresholds keeps those pages in the process and the
next step reuses them: on the development machine a plain 2x512 LSTM script trained at 31.7k
chars/s in bf16 with these settings against 22.7k without (BENCHMARKS.md, training speed). The
cost is that memory freed after a peak stays with the process until it exits. Intel's
PyTorch CPU tuning guide recommends jemalloc or tcmalloc (via LD_PRELOAD) for the same
reason; this does it without a preload.

Set ``RNNKIT_MALLOC_TUNING=0`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20),   # glibc's largest allowed: blocks up to 32 MB from the heap
             (_M_TRIM_THRESHOLD, 1 << 30),    # give the heap's free top back only above 1 GB
             (_M_TOP_PAD, 64 << 20))          # grow the heap 64 MB at a time (address space, not memory)
_done = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process, once; True if they are set."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("RNNKIT_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # absent from musl and other C libraries: nothing to tune there
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = all(mallopt(param, value) == 1 for param, value in _SETTINGS)
    return _done
