"""The numpy head that inference uses (no torch needed), and the one sigmoid.

head.npz holds W0, b0 [, W1, b1, ...]: dense layers with ReLU between them (any
normalisation folded in); logits = the last layer's output, probability = sigmoid(logits).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from birdemb.errors import BirdembError

HEAD = "head.npz"


class HeadError(BirdembError):
    """Head weights that are missing or cannot be read."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The one sigmoid: float64, clipped so -inf (a species a model lacks) gives 0, never NaN."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -80, 80)))


def save_head(run_dir: str | Path, layers: list[tuple[np.ndarray, np.ndarray]]) -> Path:
    """layers: [(W [out, in], b [out]), ...] applied in order with ReLU between them."""
    arrays = {}
    for i, (weight, bias) in enumerate(layers):
        arrays[f"W{i}"] = np.asarray(weight, dtype=np.float32)
        arrays[f"b{i}"] = np.asarray(bias, dtype=np.float32)
    path = Path(run_dir) / HEAD
    np.savez(path, **arrays)
    return path


def load_head(run_dir_or_file: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    path = Path(run_dir_or_file)
    path = path / HEAD if path.is_dir() else path
    if not path.is_file():
        raise HeadError(f"{path}: head weights not found")
    with np.load(path) as data:
        n = len([k for k in data.files if k.startswith("W")])
        return [(data[f"W{i}"], data[f"b{i}"]) for i in range(n)]


def head_logits(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """The head's raw outputs for embeddings x [n, dim]."""
    h = np.asarray(x, dtype=np.float32)
    for i, (weight, bias) in enumerate(layers):
        h = h @ weight.T + bias
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h
