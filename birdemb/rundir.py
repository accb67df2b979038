"""The run directory written by `train-head` and read by `bundle`/`submit`: one place that
knows its file names, and the numpy head that inference uses (no torch needed).

RUN_DIR/
  config.json     how the head was trained: embedding model, surrogate, labels, loss, hidden,
                  threshold, seed, and `layout` (the embedding store's window layout) and
                  `backbone` (model name, version, weights sha256, options)
  species.json    the species list: column j of every output is species j
  head.npz        W0, b0 [, W1, b1, ...]: dense layers, ReLU between them (any normalisation
                  folded in); logits = last layer's output, probability = sigmoid(logits)
  head.onnx       the same head as ONNX
  metrics.json    validation metrics (see train.py)
  best.ckpt       Lightning checkpoint
  curve.png       training curves
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

CONFIG = "config.json"
SPECIES = "species.json"
HEAD = "head.npz"
HEAD_ONNX = "head.onnx"
METRICS = "metrics.json"
CHECKPOINT = "best.ckpt"
CURVE = "curve.png"


class RunError(Exception):
    """A run directory that is missing a file or inconsistent."""


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
        raise RunError(f"{path}: head weights not found")
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


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -80, 80)))).astype(np.float32)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (weights, bundle files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(run_dir: str | Path, name: str, value) -> Path:
    path = Path(run_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1, default=str))
    return path


def read_json(run_dir: str | Path, name: str):
    path = Path(run_dir) / name
    if not path.is_file():
        raise RunError(f"{path}: not found (is {run_dir} a run directory from train-head?)")
    return json.loads(path.read_text())
