"""Benchmark section: peak memory of `birdemb extract` against recording length.

One generated recording per length (1 min, 1 h, 4 h; 32 kHz 16-bit mono WAV, tones over
noise), each extracted alone with BirdNET by `birdemb extract --workers 1` in a fresh
process (the job then runs in that process, so its peak resident set is the job's). Beside
it, the same process decoding the file whole (`runtime.audio.load_audio` at BirdNET's 48 kHz
and framing it, what extraction did before streaming), to show what streaming saves.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench-output" / "memory"
RATE = 32_000
BLOCK_S = 60


def write_recording(path: Path, seconds: float, seed: int = 0) -> None:
    """A long field-like recording, written block by block (never whole in memory)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(path), "w", RATE, 1, subtype="PCM_16") as handle:
        done = 0.0
        while done < seconds:
            n = int(min(BLOCK_S, seconds - done) * RATE)
            t = (np.arange(n) + done * RATE) / RATE
            block = 0.02 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * (2000 + 800 * np.sin(t / 7)) * t) * (
                np.sin(t / 3) > 0.5)
            handle.write(block.astype(np.float32))
            done += n / RATE


MEASURE = """
import resource, subprocess, sys, json
code = subprocess.run(sys.argv[1:]).returncode
print(json.dumps({"rc": code, "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""

WHOLE = """
import sys
from birdemb.runtime.audio import WindowLayout, frame_audio, load_audio
layout = WindowLayout(5.0, 3.0, 48000, 1.0)
framed = frame_audio(load_audio(sys.argv[1], 48000), layout)
print(framed.frames.shape)
"""


def peak(command: list[str]) -> tuple[float, float]:
    """(peak resident MiB of `command` in a fresh process, seconds)."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{command} failed: {out.stderr[-2000:]}")
    return result["peak_mb"], time.perf_counter() - started


def run(quick: bool = False) -> str:
    lengths = (60, 600, 1800) if quick else (60, 3600, 4 * 3600)
    shutil.rmtree(OUT, ignore_errors=True)
    rows = []
    for seconds in lengths:
        audio = OUT / f"audio-{seconds}" / "recording.wav"
        write_recording(audio, seconds)
        extract_mb, extract_s = peak([sys.executable, "-m", "birdemb", "extract", "--model", "birdnet", "--audio",
                                      str(audio.parent), "--store", str(OUT / f"store-{seconds}"), "--dataset", "d",
                                      "--workers", "1", "--quiet"])
        whole_mb, _ = peak([sys.executable, "-c", WHOLE, str(audio)]) if seconds <= 3600 else (None, None)
        rows.append((seconds, extract_mb, extract_s, whole_mb))
        shutil.rmtree(audio.parent)
    base = rows[0][1]
    from birdemb.store import SPILL_ROWS
    lines = ["## memory: peak memory of extraction against recording length", "",
             __doc__.split("\n\n", 1)[1].strip(), "",
             "| recording | extract peak RSS MiB | vs 1 min | extract s | whole-file decode + frames, peak RSS MiB |",
             "|---|---:|---:|---:|---:|"]
    for seconds, extract_mb, extract_s, whole_mb in rows:
        label = f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"
        whole = "not run (would not fit a worker's share)" if whole_mb is None else f"{whole_mb:.0f}"
        lines.append(f"| {label} | {extract_mb:.0f} | {extract_mb / base:.2f}x | {extract_s:.0f} | {whole} |")
    lines += ["", "The stored rows grow with length (BirdNET: 1,024 embedding floats and 6,522 logits per 5 s "
              "window, about 30 KB, so about 0.5 GB a day of audio), but not the memory holding them: once a "
              f"file passes {SPILL_ROWS:,} windows (about {SPILL_ROWS * 30 / 1024:.0f} MB of rows) they go to disk as they are made, into "
              "a part of its own that appears in one rename when the file is done (`birdemb.store.spill`; local "
              "stores, local engine). Decoding and rows together are then bounded whatever the length."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
