"""The numpy head that inference uses (no torch needed), and the one sigmoid.

head.npz holds W0, b0 [, W1, b1, ...]: dense layers with ReLU between them (any
normalisation folded in), and optionally `residual`: per species, the column of the
backbone's own logits (in its stored label order) that is added to the head's output, -1
for none. logits = last layer's output [+ backbone logit], probability = sigmoid(logits).
A residual head learns a correction to the surrogate: with zero weights it IS the surrogate.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from birdemb.errors import BirdembError

HEAD = "head.npz"


class HeadError(BirdembError):
    """Head weights that are missing or cannot be read."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The one sigmoid: float64, clipped so -inf (a species a model lacks) gives 0, never NaN."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -80, 80)))


@dataclass(frozen=True)
class HeadWeights:
    layers: list  # [(W [out, in], b [out]), ...], ReLU between
    residual: np.ndarray | None = None  # [species] backbone logit column added to each output, -1: none

    @property
    def uses_backbone_logits(self) -> bool:
        return self.residual is not None and bool((self.residual >= 0).any())

    def with_columns(self, columns: np.ndarray | None) -> HeadWeights:
        """The same head with its residual columns read through `columns` (stored label ->
        column of another logits output, e.g. the full model behind a species subset)."""
        if columns is None or not self.uses_backbone_logits:
            return self
        columns = np.asarray(columns, dtype=np.int64)
        mapped = np.where(self.residual >= 0, columns[np.maximum(self.residual, 0)], -1)
        if ((self.residual >= 0) & (mapped < 0)).any():
            raise HeadError("the head adds a backbone logit that the backbone's graph does not output")
        return HeadWeights(self.layers, mapped)


def save_head(run_dir: str | Path, layers: list[tuple[np.ndarray, np.ndarray]],
              residual: np.ndarray | None = None) -> Path:
    """layers: [(W [out, in], b [out]), ...] applied in order with ReLU between them;
    residual: see the module docstring (None or all -1: a plain head). Refuses a head that
    load_head would refuse (no head with a NaN weight is ever written)."""
    path = Path(run_dir) / HEAD
    arrays = {}
    for i, (weight, bias) in enumerate(layers):
        arrays[f"W{i}"] = np.asarray(weight, dtype=np.float32)
        arrays[f"b{i}"] = np.asarray(bias, dtype=np.float32)
    if residual is not None and (np.asarray(residual) >= 0).any():
        arrays["residual"] = np.asarray(residual, dtype=np.int64)
    check_head_arrays(path, [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(len(layers))], arrays.get("residual"))
    np.savez(path, **arrays)
    return path


def read_head_arrays(path: Path) -> tuple[list, np.ndarray | None]:
    """(layers, residual) as stored; HeadError for a file numpy cannot read as a head.npz
    (empty, truncated, not a zip, a layer's bias missing)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            n = len([k for k in data.files if k.startswith("W")])
            layers = [(data[f"W{i}"], data[f"b{i}"]) for i in range(n)]
            residual = data["residual"] if "residual" in data.files else None
    except Exception as error:  # EOFError, BadZipFile, ValueError, KeyError, zlib.error: all "unreadable"
        raise HeadError(f"{path}: not a head.npz (empty or corrupt: {type(error).__name__})") from None
    return layers, residual


def check_head_arrays(path: Path, layers: list, residual: np.ndarray | None) -> None:
    """HeadError naming `path` unless the layers chain (W [out, in], b [out], each layer's
    input the previous one's output), every value is finite, and `residual` has one integer
    column per output."""
    if not layers:
        raise HeadError(f"{path}: the head has no layers (no W0, b0)")
    for i, (weight, bias) in enumerate(layers):
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise HeadError(f"{path}: layer {i} has W{i} {weight.shape} and b{i} {bias.shape}; "
                            "expected W [out, in] and b [out]")
        if i and weight.shape[1] != layers[i - 1][0].shape[0]:
            raise HeadError(f"{path}: W{i} takes {weight.shape[1]} inputs; layer {i - 1} gives "
                            f"{layers[i - 1][0].shape[0]}")
        for name, values in ((f"W{i}", weight), (f"b{i}", bias)):
            bad = int(np.size(values) - np.isfinite(values).sum())
            if bad:
                raise HeadError(f"{path}: {name} holds {bad} NaN or infinite weights (training diverged?)")
    n_out = layers[-1][0].shape[0]
    if residual is not None and (residual.ndim != 1 or len(residual) != n_out
                                 or not np.issubdtype(residual.dtype, np.integer)):
        raise HeadError(f"{path}: `residual` has {residual.shape} {residual.dtype} entries for {n_out} outputs")


def load_head(run_dir_or_file: str | Path) -> HeadWeights:
    path = Path(run_dir_or_file)
    path = path / HEAD if path.is_dir() else path
    if not path.is_file():
        raise HeadError(f"{path}: head weights not found")
    layers, residual = read_head_arrays(path)
    check_head_arrays(path, layers, residual)
    return HeadWeights(layers, residual)


def head_logits(head: HeadWeights | list, x: np.ndarray, backbone_logits: np.ndarray | None = None) -> np.ndarray:
    """The head's raw outputs for embeddings x [n, dim]; a residual head also needs the
    backbone's logits for the same windows [n, labels] (frames pooled by max, as stored)."""
    head = head if isinstance(head, HeadWeights) else HeadWeights(list(head))
    h = np.asarray(x, dtype=np.float32)
    for i, (weight, bias) in enumerate(head.layers):
        h = h @ weight.T + bias
        if i < len(head.layers) - 1:
            h = np.maximum(h, 0.0)
    if head.uses_backbone_logits:
        if backbone_logits is None:
            raise HeadError("this head adds the backbone's own logits; none were given")
        known = np.flatnonzero(head.residual >= 0)
        h[:, known] += np.asarray(backbone_logits, dtype=np.float32)[:, head.residual[known]]
    return h
