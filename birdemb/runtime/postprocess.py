"""Post-processing of window probabilities, pure numpy: the passthrough blend and the
sliding blend (per bundle), the ensemble power average (across bundles), global correction
and the species mask (per file), and row fitting between ensemble members. See
docs/submission.md."""
from __future__ import annotations

import numpy as np

from birdemb.runtime.head import sigmoid

SLIDING_SHIFT_S = 2.5
SLIDING_WEIGHTS = (0.5, 0.25, 0.25)  # the window itself, the shifted window before, after


def blend_passthrough(p: np.ndarray, logits: np.ndarray, columns, weight: float) -> np.ndarray:
    """weight * head + (1 - weight) * the backbone's own probability (sigmoid of its logit in
    `columns[j]`, frames pooled by max as the store keeps them) for species j the backbone
    knows (column >= 0); the head alone for the others."""
    columns = np.asarray(columns, dtype=np.int64)
    known = np.flatnonzero(columns >= 0)
    out = np.asarray(p, dtype=np.float64).copy()
    out[:, known] = weight * out[:, known] + (1.0 - weight) * sigmoid(np.asarray(logits)[:, columns[known]])
    return out.astype(np.float32)


def apply_mask(p: np.ndarray, mask) -> np.ndarray:
    """Probability 0 for the species whose mask entry is False (e.g. not expected at the
    recording's place and week); `mask` None keeps everything."""
    if mask is None:
        return p
    keep = np.asarray(mask, dtype=bool)
    if keep.shape != (p.shape[1],):
        raise ValueError(f"a species mask of {keep.shape} entries for {p.shape[1]} species")
    return np.where(keep[None, :], p, 0.0).astype(np.float32)


def sliding_blend(p: np.ndarray, shifted: np.ndarray) -> np.ndarray:
    """Blend window k with the shifted windows that overlap it by half.

    p[k] scores [5k, 5k+5); shifted[j] scores [5j+2.5, 5j+7.5), so shifted[k-1] starts at
    5k-2.5 and shifted[k] at 5k+2.5. Result: 0.5 p[k] + 0.25 shifted[k-1] + 0.25 shifted[k];
    where a neighbour does not exist (k = 0, or past the file's end) the weights of those that
    do are renormalised to sum to one."""
    w_self, w_before, w_after = SLIDING_WEIGHTS
    n, m = len(p), len(shifted)
    total = np.full((n, 1), w_self, dtype=np.float64)
    blended = w_self * p.astype(np.float64)
    k = np.arange(n)
    before = (k - 1 >= 0) & (k - 1 < m)
    after = k < m
    blended[before] += w_before * shifted[k[before] - 1]
    total[before] += w_before
    blended[after] += w_after * shifted[k[after]]
    total[after] += w_after
    return (blended / total).astype(np.float32)


def power_mean(probabilities: list[np.ndarray]) -> np.ndarray:
    """Ensemble: sqrt(mean(p^2)) element-wise (leans towards the confident members)."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])
    return np.sqrt(np.mean(stacked**2, axis=0)).astype(np.float32)


def global_correction(p: np.ndarray, threshold: float = 0.5, factor: float = 1.3) -> np.ndarray:
    """Multiply a species' scores over a whole file by `factor` when its maximum in that file
    exceeds `threshold`. Not clipped: the metric ranks, and clipping would create ties."""
    boost = np.where(p.max(axis=0, keepdims=True) > threshold, factor, 1.0)
    return (p * boost).astype(np.float32)


def fit_rows(p: np.ndarray, n_rows: int) -> np.ndarray:
    """Trim, or repeat the last row, so an ensemble member decoded at another rate whose last
    window rounded differently lines up with the first member's rows."""
    if len(p) >= n_rows:
        return p[:n_rows]
    return np.concatenate([p, np.repeat(p[-1:], n_rows - len(p), axis=0)])

