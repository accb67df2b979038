"""Shared fixtures: the real xc10 corpus when present, generated audio otherwise."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.audio import write_audio
from tests.helpers.paths import XC10


@pytest.fixture(scope="session")
def xc10() -> Path:
    if not (XC10 / "train_audio").is_dir():
        pytest.skip(f"the real xc10 corpus is absent ({XC10} not found); this test needs real audio")
    return XC10


@pytest.fixture()
def small_corpus(tmp_path) -> Path:
    """A BirdCLEF-style train_audio tree of generated audio: 2 species x 2 files, mixed rates."""
    root = tmp_path / "train_audio"
    write_audio(root / "amerob" / "XC1.wav", 7.0, 48000, seed=1)
    write_audio(root / "amerob" / "XC2.flac", 11.2, 44100, channels=2, seed=2, freq=2000)
    write_audio(root / "norcar" / "XC3.ogg", 4.0, 32000, seed=3, freq=4000)
    write_audio(root / "norcar" / "XC4.wav", 12.5, 22050, seed=4, freq=5000)
    return root
