"""Shared fixtures: the real xc10 corpus when present, generated audio otherwise."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

XC10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "xc10"
PERCH_LABELS = Path(__file__).resolve().parents[2] / "shared" / "labels" / "perch_v4_label.csv"


@pytest.fixture(scope="session")
def xc10() -> Path:
    if not (XC10 / "train_audio").is_dir():
        pytest.skip(f"the real xc10 corpus is absent ({XC10} not found); this test needs real audio")
    return XC10


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


@pytest.fixture()
def small_corpus(tmp_path) -> Path:
    """A BirdCLEF-style train_audio tree of generated audio: 2 species x 2 files, mixed rates."""
    root = tmp_path / "train_audio"
    write_audio(root / "amerob" / "XC1.wav", 7.0, 48000, seed=1)
    write_audio(root / "amerob" / "XC2.flac", 11.2, 44100, channels=2, seed=2, freq=2000)
    write_audio(root / "norcar" / "XC3.ogg", 4.0, 32000, seed=3, freq=4000)
    write_audio(root / "norcar" / "XC4.wav", 12.5, 22050, seed=4, freq=5000)
    return root
