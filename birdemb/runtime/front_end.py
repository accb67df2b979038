"""A backbone's spectrogram front end run in numpy, and the rest of its graph in TFLite.

BirdNET's graph starts with two mel spectrograms. TFLite runs them slowly (a gather for the
framing, its own RFFT kernel outside XNNPACK, dense filterbanks over every frequency bin):
about 60% of the model's time for 10% of its arithmetic. Here the same arithmetic is
vectorised with scipy's FFT, and only the filterbank's non-zero bins are multiplied; the
graph after the front end (the network) is a separate .tflite that takes the spectrogram.
The constants (frame lengths and steps, windows, filterbanks, exponents, the batch norm) are
read from the model's own flatbuffer by birdemb.backbones.tflite_split and kept in a .npz.

Imports nothing from birdemb but the runner, so the Kaggle script inlines it as it is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from birdemb.runtime.interpreter import TFLiteRunner

# STFT columns windowed and transformed at a time: their float32, float64 and complex copies
# (about 2.5 MB for BirdNET's 2048-sample STFT) stay in cache and on the heap, where a 3 s frame's
# 511 columns at once were 20 MB, fresh pages to fault in for every frame; bitwise the same
# spectrograms, 12% less front-end time measured here (docs/backbones.md)
COLUMNS_PER_FFT = 64


class MelFrontEnd:
    """BirdNET's front end: each frame scaled to [-1, 1] by its own min and max, then per
    spectrogram k: Hann-windowed STFT, the real part of its bins, the mel filterbank, squared,
    raised to a learnt power, mel order reversed, the spectrograms stacked as channels and
    batch-normalised. Output [n, mels, steps, spectrograms], as the graph's network reads it."""

    def __init__(self, constants: dict):
        from scipy import sparse

        self.epsilon = np.float32(constants["norm_epsilon"])
        self.centre = np.float32(constants["norm_centre"])
        self.gain = np.float32(constants["norm_gain"])
        self.scale = np.asarray(constants["bn_scale"], np.float32)
        self.shift = np.asarray(constants["bn_shift"], np.float32)
        self.spectrograms = []
        for k in range(int(constants["n_spectrograms"])):
            mel = np.asarray(constants[f"mel{k}"], np.float32)  # [mels, bins]
            used = np.flatnonzero(mel.any(axis=0))
            lo, hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
            self.spectrograms.append({
                "length": int(constants[f"frame_length{k}"]),
                "step": int(constants[f"frame_step{k}"]),
                "window": np.asarray(constants[f"window{k}"], np.float32),
                "bins": slice(lo, hi),
                # [mels, bins]: mels reversed here, so no flip afterwards; only the bins some filter
                # uses; sparse (two filters per bin at most): 5x less work than a dense product,
                # and single-threaded C, so results never depend on a BLAS's thread count
                "filters": sparse.csr_matrix(mel[::-1, lo:hi].astype(np.float64)),
                # (mel^2)^power as exp(2 power log|mel|): numpy's vectorised exp and log, 2x
                # faster than its float32 power, within 3e-7 of it
                "exponent": np.float32(2 * constants[f"power{k}"]),
            })

    @classmethod
    def load(cls, path: str | Path) -> "MelFrontEnd":
        with np.load(str(path)) as data:
            return cls({key: data[key] for key in data.files})

    def steps(self, samples: int) -> int:
        """Spectrogram columns for frames of `samples`. BirdNET's two STFTs give the same count
        for its 3 s frames; for other lengths (a whole 5 s window: 856 and 854) the shorter."""
        return min((samples - spec["length"]) // spec["step"] + 1 for spec in self.spectrograms)

    def normalise(self, frames: np.ndarray) -> np.ndarray:
        """Each frame [n, samples] scaled by its own minimum and maximum, as the graph does (in
        place, on a copy)."""
        scaled = np.array(frames, dtype=np.float32)
        scaled -= scaled.min(axis=1, keepdims=True)
        scaled /= scaled.max(axis=1, keepdims=True) + self.epsilon
        scaled -= self.centre
        scaled *= self.gain
        return scaled

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        scaled = self.normalise(frames)
        n_mels = self.spectrograms[0]["filters"].shape[0]
        steps = self.steps(frames.shape[1])
        out = np.empty((len(frames), n_mels, steps, len(self.spectrograms)), np.float32)
        for i, frame in enumerate(scaled):  # one frame at a time: its STFTs stay in cache
            for k, spec in enumerate(self.spectrograms):
                out[i, :, :, k] = self.mel_spectrogram(frame, spec)[:, :steps]
        out *= self.scale
        out += self.shift
        return out

    @staticmethod
    def mel_spectrogram(frame: np.ndarray, spec: dict) -> np.ndarray:
        """[mels, steps] of one normalised frame, for one of `spectrograms`."""
        from numpy.lib.stride_tricks import sliding_window_view
        from scipy import fft

        # windowed in float32 as the graph does, transformed in float64 as its RFFT does: a
        # float32 FFT moves logits by up to 0.1 on zero-padded frames and 8e-3 on MP3 clips
        # (their empty band above the cut-off), this by 1e-4; even the 0-3 kHz spectrogram
        # alone in float32 moved a pure tone's logits 70x more, for 6% of the time. (Windowing
        # exactly, in float64 or folded into the filterbank, moves real audio's logits by 0.18:
        # the graph's float32 rounding is part of what the network learnt.)
        segments = sliding_window_view(frame, spec["length"])[:: spec["step"]]
        steps = len(segments)
        chunk = max(1, min(steps, COLUMNS_PER_FFT))
        windowed32 = np.empty((chunk, spec["length"]), np.float32)
        windowed = np.empty((chunk, spec["length"]), np.float64)
        bins = np.empty((spec["bins"].stop - spec["bins"].start, steps))  # [bins, steps]
        for start in range(0, steps, chunk):
            n = min(chunk, steps - start)
            np.multiply(segments[start : start + n], spec["window"], out=windowed32[:n])
            windowed[:n] = windowed32[:n]
            bins[:, start : start + n] = fft.rfft(windowed[:n], axis=-1, overwrite_x=True)[:, spec["bins"]].real.T
        mel = (spec["filters"] @ bins).astype(np.float32)  # [mels, steps]
        np.abs(mel, out=mel)
        with np.errstate(divide="ignore"):
            np.log(mel, out=mel)
        mel *= spec["exponent"]
        return np.exp(mel, out=mel)


class FrontEndRunner:
    """TFLiteRunner's interface over a numpy front end and the graph after it: the same
    outputs, in the same order, as the whole graph gives."""

    def __init__(self, front_end: str | Path | MelFrontEnd, body: str | Path | bytes, threads: int = 1, batch: int = 16):
        self.front_end = front_end if isinstance(front_end, MelFrontEnd) else MelFrontEnd.load(front_end)
        self.body = TFLiteRunner(body, threads=threads, batch=batch)

    def run(self, frames: np.ndarray) -> list[np.ndarray]:
        # a batch at a time, front end then network, so each batch's spectrograms are still in
        # cache when the network reads them (a soundscape's at once: 37 MB, 10% slower)
        return self.body.run(frames, prepare=self.front_end)


def backbone_runner(model_file: str | Path, split: tuple | None = None, threads: int = 1, batch: int = 16):
    """The runner for a backbone .tflite: split = (front end .npz, network .tflite) runs its
    numpy front end and the graph after it (Backbone.tflite_split, Bundle.split); None the whole graph."""
    if split:
        return FrontEndRunner(split[0], split[1], threads=threads, batch=batch)
    return TFLiteRunner(model_file, threads=threads, batch=batch)
