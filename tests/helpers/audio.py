"""Generated audio for tests: tones with a little noise, written in blocks (soundfile 0.14
can segfault writing a long OGG/Vorbis file in one call)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float, rate: int, freq: float = 3000.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A chirp-like tone plus a little noise, [samples, channels] float32."""
    t = np.arange(int(round(seconds * rate))) / rate
    rng = np.random.default_rng(seed)
    mono = 0.3 * np.sin(2 * np.pi * (freq + 500 * np.sin(2 * np.pi * 3 * t)) * t) + 0.01 * rng.standard_normal(t.size)
    return np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def write_audio(path: Path, seconds: float, rate: int, channels: int = 1, seed: int = 0, freq: float = 3000.0) -> Path:
    """Write generated audio in 1 s blocks: soundfile 0.14 can segfault writing a long
    OGG/Vorbis file in one call."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = tone(seconds, rate, freq, channels, seed)
    with sf.SoundFile(path, "w", samplerate=rate, channels=channels) as out:
        for start in range(0, len(samples), rate):
            out.write(samples[start : start + rate])
    return path


def write_ogg(path: Path, seconds: float, rate: int, seed: int = 0) -> Path:
    """Vorbis in 1 s blocks: libsndfile's encoder crashes when handed minutes in one call."""
    path.parent.mkdir(parents=True, exist_ok=True)
    signal = tone(seconds, rate, seed=seed)
    with sf.SoundFile(path, "w", rate, 1, format="OGG") as handle:
        for start in range(0, len(signal), rate):
            handle.write(signal[start : start + rate])
    return path


def write_steady_tone(path: Path, seconds: float, rate: int, freq: float, seed: int = 0) -> Path:
    """A steady sine at `freq` plus a little noise (tone() sweeps over the whole band)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * rate))) / rate
    rng = np.random.default_rng(seed)
    signal = (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1) as out:
        for start in range(0, len(signal), rate):
            out.write(signal[start : start + rate])
    return path
