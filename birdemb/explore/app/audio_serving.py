"""Audio for the browser, from the store's recorded audio folders only.

A stored window names its file relative to the audio folder it was extracted from
(`_audio_roots.json`, `store.audio_roots`). `resolve` joins the name to each root, resolves
links and `..`, and accepts the file only when it still lies inside that root; anything else is
refused with an `AudioRefused` naming the path, and logged. The window (and context either side,
on request) is cut from the original recording with birdemb.runtime.audio, so any format the
store was built from plays, and returned as WAV bytes, with a spectrogram PNG beside it."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from birdemb.errors import BirdembError

LOG = logging.getLogger("birdemb.app")
PLAY_RATE = 22050  # enough for bird song in the browser and a quarter of the bytes of 48 kHz float


class AudioRefused(BirdembError):
    """A request for audio outside the store's recorded audio folders."""


def resolve(roots: list[str], file: str) -> Path:
    """The recording `file` (as the store names it) under one of `roots`, or AudioRefused."""
    if not roots:
        raise AudioRefused(f"{file}: the store records no audio folders (_audio_roots.json); nothing can be played")
    if not file or "\x00" in file or Path(file).is_absolute():
        LOG.warning("refused audio request %r: not a relative path in the store", file)
        raise AudioRefused(f"{file}: refused, not a file of the store")
    for root in roots:
        base = Path(root).resolve()
        candidate = (base / file).resolve()
        if not candidate.is_relative_to(base):
            LOG.warning("refused audio request %r: resolves to %s, outside %s", file, candidate, base)
            raise AudioRefused(f"{file}: refused, it leads outside the store's audio folder {base}")
        if candidate.is_file():
            return candidate
    raise AudioRefused(f"{file}: not found under the store's audio folders ({', '.join(roots)})")


def cut(roots: list[str], file: str, start_s: float, end_s: float, context_s: float = 0.0,
        rate: int = PLAY_RATE) -> tuple[np.ndarray, int, float]:
    """Mono float32 samples of [start_s - context_s, end_s + context_s] at `rate`, and the
    second the cut starts at (clipped to the recording); read with runtime.audio.read_span."""
    from birdemb.runtime.audio import read_span, resample

    begin = max(0.0, float(start_s) - context_s)
    samples, native = read_span(resolve(roots, file), begin, float(end_s) + context_s)
    return resample(samples, native, rate), rate, begin


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV: what every browser plays."""
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, np.clip(samples, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def spectrogram(samples: np.ndarray, rate: int, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Power in dB [frequency, time] from a Hann-windowed STFT (numpy)."""
    if len(samples) < n_fft:
        samples = np.pad(samples, (0, n_fft - len(samples)))
    frames = np.lib.stride_tricks.sliding_window_view(samples, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return (10 * np.log10(power + 1e-10)).T.astype(np.float32)


def spectrogram_png(samples: np.ndarray, rate: int, height: int = 160, marks: tuple[float, float] | None = None,
                    begin_s: float = 0.0) -> bytes:
    """The spectrogram as a PNG (low frequencies at the bottom, 70 dB range, magma colours);
    `marks` (start_s, end_s) draws the window's edges when context is shown."""
    from matplotlib import colormaps
    from PIL import Image

    db = spectrogram(samples, rate)
    db = np.clip((db - (db.max() - 70.0)) / 70.0, 0.0, 1.0)[::-1]
    rgb = (colormaps["magma"](db)[..., :3] * 255).astype(np.uint8)
    if marks is not None and db.shape[1] > 1:
        seconds = len(samples) / rate
        for mark in marks:
            column = int(round((mark - begin_s) / max(seconds, 1e-9) * (db.shape[1] - 1)))
            if 0 <= column < db.shape[1]:
                rgb[:, column] = (80, 220, 255)
    image = Image.fromarray(rgb).resize((max(200, db.shape[1]), height))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
