"""Keep the process's memory flat over hours of live video (glibc's allocator, Linux).

Every frame allocates a few arrays of 0.3-6 MB (the image, its crop, the model's input and
output, overlays) on several threads (source, worker, motion, GUI). glibc's mmap threshold is
dynamic: after the first large block is freed it rises, and from then on frame-sized blocks
come from per-thread heaps that fragment and are not given back; each new source thread (a
scene or capture card switch) can get a heap of its own. So: at most two heaps, and what they
hold free is handed back to the system every TRIM_EVERY_S (malloc_trim; well under a ms).
A fixed mmap threshold flattened memory as well but halved the phantom's frame rate (a page
fault per frame-sized block), so it is not used. Figures: README "Reliability".

SONOGUIDE_MALLOC_TUNING=0 leaves the allocator as it is (to compare).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
import time

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc mallopt parameter (malloc.h)
ARENA_MAX = 2
TRIM_EVERY_S = 10.0

_tuned: bool | None = None


def tune_allocator() -> bool:
    """Cap glibc's heaps and start handing free memory back (once per process); False where
    this is not glibc or it was switched off."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if not sys.platform.startswith("linux") or os.environ.get("SONOGUIDE_MALLOC_TUNING") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's name; find_library would run ldconfig
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # musl and others: nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    malloc_trim.argtypes = (ctypes.c_size_t,)
    if not mallopt(M_ARENA_MAX, ARENA_MAX):
        log.debug("mallopt refused the heap cap")

    def trim_forever() -> None:
        while True:  # a daemon thread: it ends with the process
            time.sleep(TRIM_EVERY_S)
            malloc_trim(0)

    threading.Thread(target=trim_forever, name="memory-trim", daemon=True).start()
    _tuned = True
    return True

