"""glibc's malloc told to keep freed memory for the next batch.

A batch makes numpy arrays of several MB (an extraction group's 32 frames: 18 MB; decode blocks,
spectrograms). glibc serves large blocks from fresh mmaps and hands a freed heap top back to the
kernel, so batch after batch faults in and zeroes fresh pages, and the cache starts cold. With the
mmap threshold at glibc's 64-bit maximum (larger arrays, such as a soundscape's 55 MB of frames,
are still mmapped) and the heap top kept up to TRIM_THRESHOLD, a batch reuses the last one's
pages. Measured here, interleaved: extraction's per-file path on a 4-minute soundscape 2.17-2.38
CPU s against 2.24-2.77 (page faults 14.5k against 34-38k), a submission 2.80-3.21 against
2.44-3.46 CPU s per soundscape. The price is the memory kept: 30-100 MiB more peak resident
memory per process. TFLiteRunner and load_backbone (EnCodec's torch too) tune the process.

Only the standard library is imported: the Kaggle script inlines runtime. Elsewhere than glibc
(macOS, musl) there is nothing to tune and nothing is done.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # from <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 64 * 2**20  # a batch's arrays (an extraction group's frames alone: 18 MB), with room

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
