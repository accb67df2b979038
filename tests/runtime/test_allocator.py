"""The allocator's tuning: a batch's multi-MB arrays reuse the last batch's pages instead of
faulting fresh ones from the kernel every time (a third of extraction's CPU time before)."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from birdemb.runtime import allocator

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc's; nothing to tune here")

# Page faults per batch of arrays shaped like BirdNET's: frames, STFT segments, their FFT, spectrograms.
FAULTS_PER_BATCH = """
import resource, sys
import numpy as np
from birdemb.runtime.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
def batch():
    frames = np.ones((16, 144000), np.float32)
    segments = np.ones((511, 2048), np.float64)
    bins = np.fft.rfft(segments, axis=-1)
    del segments
    spectrograms = np.ones((16, 96, 511, 2), np.float32)
    return float(frames[0, 0] + bins[0, 0].real + spectrograms[0, 0, 0, 0])
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    batch()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _faults_per_batch(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", FAULTS_PER_BATCH, mode], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def test_tuned_batches_reuse_their_pages_where_untuned_ones_fault_them_again():
    untuned, tuned = _faults_per_batch("plain"), _faults_per_batch("tuned")
    # 30 MB of arrays a batch: thousands of 4 KB pages faulted per batch untuned, next to none tuned
    assert untuned > 500, f"untuned batches fault {untuned} pages: the scenario no longer shows the problem"
    assert tuned < 50, f"tuned batches still fault {tuned} pages each"


def test_tuning_is_done_once_and_reports_whether_it_took(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_tuned", [])
    monkeypatch.setattr(allocator, "_mallopt", lambda option, value: calls.append((option, value)) or True)
    assert allocator.keep_freed_memory() and allocator.keep_freed_memory()
    assert calls == [(allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD),
                     (allocator.M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD)]


def test_a_runner_tunes_its_process():
    """Every TFLite path (extraction, bundling, submission, the Kaggle script) builds its
    interpreter through TFLiteRunner, so building one is what tunes the process."""
    script = ("from birdemb.runtime import allocator, interpreter\n"
              "assert not allocator._tuned\n"
              "import sys; interpreter.TFLiteRunner(open(sys.argv[1], 'rb').read())\n"
              "print(allocator._tuned)")
    from birdemb.backbones.birdnet import BirdNET

    result = subprocess.run([sys.executable, "-c", script, str(BirdNET().tflite_split[1])], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[True]"
