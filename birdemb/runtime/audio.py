"""Decode audio once, downmix, resample directly to a backbone's rate, and cut windows.

The window layout is defined here and nowhere else: window k covers [k*w, k*w + w) seconds
of the file's own timeline; each window is seen by the backbone as one or more frames of the
backbone's length, evenly spaced from the window's start (BirdNET's 3 s frames in a 5 s
window start at +0 s and +2 s).
"""
from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from birdemb.errors import BirdembError

AUDIO_EXTENSIONS = (".ogg", ".oga", ".mp3", ".flac", ".wav", ".aif", ".aiff", ".opus", ".m4a")


class AudioError(BirdembError):
    """A file that could not be decoded; the message names the file and the problem."""


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Return the file as mono float32 at `sample_rate`, resampled once from its own rate."""
    path = Path(path)
    data, native_rate = _decode(path)
    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.size == 0:
        raise AudioError(f"{path}: no audio samples (empty file)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: decoded samples contain NaN or infinity")
    return resample(data, native_rate, sample_rate)


def resample(data: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """One direct resampling step (soxr, high quality); none when the rates match."""
    if from_rate == to_rate:
        return data
    import soxr

    return soxr.resample(data, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except Exception as error:  # libsndfile cannot read it: try ffmpeg if the machine has one
        if shutil.which("ffmpeg") is None:
            raise AudioError(f"{path}: cannot decode audio ({_first_line(error)})") from None
        return _decode_ffmpeg(path, error)


def _decode_ffmpeg(path: Path, first_error: Exception) -> tuple[np.ndarray, int]:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=sample_rate", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True,
    )
    if probe.returncode != 0 or not probe.stdout.strip():
        raise AudioError(f"{path}: cannot decode audio ({_first_line(first_error)})")
    rate = int(probe.stdout.strip().split(",")[0])
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-"],
        capture_output=True,
    )
    if out.returncode != 0:
        raise AudioError(f"{path}: ffmpeg failed ({_first_line(out.stderr.decode(errors='replace'))})")
    return np.frombuffer(out.stdout, dtype=np.float32)[:, None], rate


def _first_line(error: object) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass(frozen=True)
class WindowLayout:
    """How a file is cut into windows and a window into backbone frames."""

    window_s: float
    frame_s: float
    sample_rate: int
    min_audio_s: float = 1.0

    def __post_init__(self):
        if self.window_s <= 0:
            raise ValueError(f"window length must be positive, got {self.window_s} s")
        if self.frame_s - self.window_s > 1e-9:
            raise ValueError(
                f"a {self.window_s:g} s window is shorter than the model's {self.frame_s:g} s frame"
            )

    @property
    def frames_per_window(self) -> int:
        return max(1, math.ceil(self.window_s / self.frame_s - 1e-9))

    @property
    def frame_offsets_s(self) -> list[float]:
        n = self.frames_per_window
        if n == 1:
            return [0.0]
        step = (self.window_s - self.frame_s) / (n - 1)
        return [round(i * step, 6) for i in range(n)]

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def frame_samples(self) -> int:
        return round(self.frame_s * self.sample_rate)

    def describe(self) -> dict:
        return {
            "window_s": self.window_s,
            "frame_s": self.frame_s,
            "frame_offsets_s": self.frame_offsets_s,
            "sample_rate": self.sample_rate,
            "min_audio_s": self.min_audio_s,
            "embedding_pooling": "mean over frames holding real audio",
            "logit_pooling": "max over frames holding real audio",
        }

    def window_count(self, n_samples: int) -> int:
        """Windows kept for a file: the last one only with enough real audio, but always one."""
        full = n_samples // self.window_samples
        rest = n_samples - full * self.window_samples
        keep_last = rest > 0 and rest >= round(self.min_audio_s * self.sample_rate)
        return max(1, full + int(keep_last))


@dataclass
class Framed:
    """All frames of a file, and which window each belongs to."""

    frames: np.ndarray  # [n_frames, frame_samples] float32, zero-padded past the file's end
    frame_window: np.ndarray  # [n_frames] window index of each frame
    n_windows: int

    def window_times(self, layout: WindowLayout) -> tuple[np.ndarray, np.ndarray]:
        k = np.arange(self.n_windows, dtype=np.float64)
        return k * layout.window_s, k * layout.window_s + layout.window_s


def frame_audio(audio: np.ndarray, layout: WindowLayout) -> Framed:
    """Cut `audio` into the layout's frames. Frames that start past the file's end are left
    out (they hold no audio), so a short last window is pooled over its real frames only."""
    n_windows = layout.window_count(len(audio))
    offsets = [round(o * layout.sample_rate) for o in layout.frame_offsets_s]
    starts, owners = [], []
    for k in range(n_windows):
        base = k * layout.window_samples
        for j, offset in enumerate(offsets):
            start = base + offset
            if j > 0 and start >= len(audio):
                continue
            starts.append(start)
            owners.append(k)
    length = layout.frame_samples
    needed = max(starts) + length
    padded = audio if len(audio) >= needed else np.pad(audio, (0, needed - len(audio)))
    frames = np.stack([padded[s : s + length] for s in starts]).astype(np.float32, copy=False)
    return Framed(frames=frames, frame_window=np.asarray(owners, dtype=np.int64), n_windows=n_windows)


def pool_windows(
    framed: Framed, embeddings: np.ndarray, logits: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per window: mean of its frames' embeddings, max of their logits."""
    if len(framed.frame_window) == framed.n_windows:  # one frame per window: nothing to pool
        return embeddings.astype(np.float32, copy=False), (
            None if logits is None else logits.astype(np.float32, copy=False)
        )
    emb = np.zeros((framed.n_windows, embeddings.shape[1]), dtype=np.float32)
    counts = np.bincount(framed.frame_window, minlength=framed.n_windows).astype(np.float32)
    np.add.at(emb, framed.frame_window, embeddings.astype(np.float32, copy=False))
    emb /= counts[:, None]
    pooled_logits = None
    if logits is not None:
        pooled_logits = np.full((framed.n_windows, logits.shape[1]), -np.inf, dtype=np.float32)
        np.maximum.at(pooled_logits, framed.frame_window, logits.astype(np.float32, copy=False))
    return emb, pooled_logits
