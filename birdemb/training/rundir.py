"""The run directory written by `train-head` and read by `evaluate`, `bundle` and `submit`:
the one place that knows its file names (the head's own format is birdemb.runtime.head).

RUN_DIR/
  config.json     how the head was trained: embedding model, surrogate, labels, loss, hidden,
                  threshold, seed, and `layout` (the embedding store's window layout) and
                  `backbone` (model name, version, weights sha256, options)
  species.json    the species list: column j of every output is species j
  head.npz        W0, b0 [, W1, b1, ...]: dense layers, ReLU between them (any normalisation
                  folded in); logits = last layer's output, probability = sigmoid(logits)
  head.onnx       the same head as ONNX
  metrics.json    validation metrics (see birdemb.training.fit)
  best.ckpt       the best head's torch state dict (keys head.*) and the flat train_config
  curve.png       training curves
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from birdemb.errors import BirdembError
from birdemb.runtime.head import HEAD  # noqa: F401  (a run directory's file, named where the head is)

CONFIG = "config.json"
SPECIES = "species.json"
HEAD_ONNX = "head.onnx"
METRICS = "metrics.json"
CHECKPOINT = "best.ckpt"
CURVE = "curve.png"


class RunError(BirdembError):
    """A run directory that is missing a file or inconsistent."""


def finite_json(value):
    """`value` with every NaN or infinite number as None (null): JSON has no NaN, and an
    undefined metric (a species without a positive) is "no value", not a number. numpy
    scalars and arrays become plain numbers and lists."""
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar or array
        return finite_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value) -> str:
    """Valid JSON (NaN and infinities as null), as every JSON file of a run is written."""
    return json.dumps(finite_json(value), indent=1, default=str, allow_nan=False)


def write_json(run_dir: str | Path, name: str, value) -> Path:
    path = Path(run_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_text(value))
    return path


def read_json(run_dir: str | Path, name: str):
    path = Path(run_dir) / name
    if not path.is_file():
        raise RunError(f"{path}: not found (is {run_dir} a run directory from train-head?)")
    return json.loads(path.read_text())
