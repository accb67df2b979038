"""Validation metrics over a whole validation set.

The competition metric is macro ROC-AUC over the species with at least one positive (and at
least one negative: AUROC is undefined otherwise), equal to sklearn's
`roc_auc_score(y[:, kept], s[:, kept], average="macro")`. Macro F1 at a 0.5 probability
threshold is averaged over the same species.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata
from torchmetrics import Metric

from birdemb.runtime.head import sigmoid


def scored_species(y_true: np.ndarray) -> np.ndarray:
    """Columns where AUROC is defined: at least one positive and one negative."""
    positives = (np.asarray(y_true) > 0.5).sum(axis=0)
    return (positives > 0) & (positives < len(y_true))


def per_species_auroc(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC per column (Mann-Whitney U with tied scores averaged); NaN where undefined."""
    y = np.asarray(y_true) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(y.shape[1], np.nan)
    for j in np.flatnonzero(scored_species(y)):
        ranks = rankdata(scores[:, j])  # ties get their average rank, as the ROC curve does
        n_pos = int(y[:, j].sum())
        n_neg = len(y) - n_pos
        out[j] = (ranks[y[:, j]].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return out


def macro_auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    values = per_species_auroc(y_true, scores)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def per_species_f1(y_true: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    y = np.asarray(y_true) > 0.5
    predicted = np.asarray(probabilities) > threshold
    tp = (y & predicted).sum(axis=0)
    fp = (~y & predicted).sum(axis=0)
    fn = (y & ~predicted).sum(axis=0)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros(y.shape[1]), where=denominator > 0)
    return np.where(scored_species(y), f1, np.nan)


def macro_f1(y_true: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> float:
    values = per_species_f1(y_true, probabilities, threshold)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def score(y_true: np.ndarray, logits: np.ndarray, species: list[str]) -> dict:
    """Everything metrics.json reports for one set of logits on the validation windows."""
    probabilities = sigmoid(logits)
    per_species = per_species_auroc(y_true, logits)
    return {
        "macro_auroc": macro_auroc(y_true, logits),
        "macro_f1": macro_f1(y_true, probabilities),
        "scored_species": int(np.isfinite(per_species).sum()),
        "per_species_auroc": {
            code: (None if np.isnan(v) else float(v)) for code, v in zip(species, per_species)
        },
    }


class EpochMetrics(Metric):
    """torchmetrics accumulation of a whole epoch's logits and targets; compute() gives
    (macro AUROC, macro F1). Call reset() at each epoch end (Lightning's logging of a
    Metric object does it too) so one epoch never mixes with the next."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.logits.append(logits.detach().float().cpu())
        self.target.append(target.detach().float().cpu())

    def compute(self) -> tuple[float, float]:
        if not self.logits:
            return float("nan"), float("nan")
        logits = torch.cat(self.logits).numpy()
        target = torch.cat(self.target).numpy()
        probabilities = sigmoid(logits)
        return macro_auroc(target, logits), macro_f1(target, probabilities)
