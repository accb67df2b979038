"""glibc's malloc told to keep freed memory for the next batch.

A batch of BirdNET frames makes numpy arrays of a few MB each (frames, STFT segments, spectrograms).
glibc serves blocks that large from fresh mmaps (its threshold adapts, but to freed sizes only) and
hands a freed heap top back to the kernel, so every batch page-faults and zeroes its memory anew:
a third of a one-process extraction's CPU time was the kernel's (3.5 of 15.9 s on xc10). With the
mmap threshold at glibc's 64-bit maximum and the heap top kept up to TRIM_THRESHOLD, a batch reuses
the last one's pages. Peak memory does not grow: the kept pages are the ones the last batch used.

Only the standard library is imported: the Kaggle script inlines runtime. Elsewhere than glibc
(macOS, musl) there is nothing to tune and nothing is done.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # from <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 128 * 2**20

_tuned: list = []  # [True/False] once tried: the settings are process-wide


def keep_freed_memory() -> bool:
    """Tune this process's malloc once (later calls are free); whether glibc took the settings."""
    if not _tuned:
        _tuned.append(_mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned[0]


def _mallopt(option: int, value: int) -> bool:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to load by name, or one without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(option, value) == 1
