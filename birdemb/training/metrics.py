"""Validation metrics over a whole validation set.

The competition metric is macro ROC-AUC over the species with at least one positive (and at
least one negative: AUROC is undefined otherwise), equal to sklearn's
`roc_auc_score(y[:, kept], s[:, kept], average="macro")`. Macro F1 at a 0.5 probability
threshold is averaged over the same species. BirdCLEF 2023's padded cmAP (`padded_cmap`) and
file-level scores (`file_level`: the max over a file's windows) complete the picture;
`evaluation` gathers them all as JSON-ready numbers, and `markdown_table` compares scorers.

Scores are logits: -inf and +inf are allowed (a species a surrogate lacks has logit -inf; ranks
handle it), NaN never is: every metric raises MetricError on NaN scores or targets, so a
diverged model or a broken join cannot hide behind `nanmean`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import rankdata
from torchmetrics import Metric

from birdemb.errors import BirdembError
from birdemb.runtime.head import sigmoid


class MetricError(BirdembError):
    """Scores or targets a metric cannot use (NaN, mismatched shapes)."""


def require_no_nan(values, what: str, where: str) -> np.ndarray:
    """`values` as float64; MetricError naming `where` when any value is NaN (±inf pass)."""
    array = np.asarray(values, dtype=np.float64)
    n_nan = int(np.isnan(array).sum())
    if n_nan:
        raise MetricError(f"{where}: {what} contain NaN ({n_nan} of {array.size} values); "
                          "-inf/+inf logits are fine, NaN means a diverged model or a broken join")
    return array


def ordered_finite(scores) -> np.ndarray:
    """The same order with -inf/+inf replaced by finite values just below/above the finite ones
    (sklearn refuses infinities; ranks, and so AUROC and AP, do not change)."""
    array = np.array(scores, dtype=np.float64)
    finite = array[np.isfinite(array)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    array[array == -np.inf] = low - 1.0 - abs(low)
    array[array == np.inf] = high + 1.0 + abs(high)
    return array


def scored_species(y_true: np.ndarray) -> np.ndarray:
    """Columns where AUROC is defined: at least one positive and one negative."""
    positives = (np.asarray(y_true) > 0.5).sum(axis=0)
    return (positives > 0) & (positives < len(y_true))


def per_species_auroc(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC per column (Mann-Whitney U with tied scores averaged); NaN where undefined."""
    y = require_no_nan(y_true, "targets", "per_species_auroc") > 0.5
    scores = require_no_nan(scores, "scores", "per_species_auroc")
    out = np.full(y.shape[1], np.nan)
    for j in np.flatnonzero(scored_species(y)):
        ranks = rankdata(scores[:, j])  # ties get their average rank, as the ROC curve does
        n_pos = int(y[:, j].sum())
        n_neg = len(y) - n_pos
        out[j] = (ranks[y[:, j]].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return out


def macro_mean(per_species: np.ndarray) -> float:
    """The mean over the species where a per-species metric is defined; NaN where none is."""
    return float(np.nanmean(per_species)) if np.isfinite(per_species).any() else float("nan")


def macro_auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    return macro_mean(per_species_auroc(y_true, scores))


def per_species_f1(y_true: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    y = require_no_nan(y_true, "targets", "per_species_f1") > 0.5
    predicted = require_no_nan(probabilities, "scores", "per_species_f1") > threshold
    tp = (y & predicted).sum(axis=0)
    fp = (~y & predicted).sum(axis=0)
    fn = (y & ~predicted).sum(axis=0)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros(y.shape[1]), where=denominator > 0)
    return np.where(scored_species(y), f1, np.nan)


def macro_f1(y_true: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> float:
    return macro_mean(per_species_f1(y_true, probabilities, threshold))


def score(y_true: np.ndarray, logits: np.ndarray, species: list[str]) -> dict:
    """Everything metrics.json reports for one set of logits on the validation windows."""
    logits = require_no_nan(logits, "scores", "score")
    probabilities = sigmoid(logits)
    per_species = per_species_auroc(y_true, logits)
    return {
        "macro_auroc": macro_mean(per_species),
        "macro_f1": macro_f1(y_true, probabilities),
        "scored_species": int(np.isfinite(per_species).sum()),
        "per_species_auroc": {
            code: (None if np.isnan(v) else float(v)) for code, v in zip(species, per_species)
        },
    }


def padded_cmap(y_true: np.ndarray, scores: np.ndarray, padding: int = 5) -> float:
    """BirdCLEF 2023's padded class-mean average precision: `padding` extra rows where every
    target and every score is 1, then sklearn's macro average precision over every column.
    The padding makes AP defined for species without positives and damps rare species' AP.
    Scores are meant to be probabilities (1 is the top score, as in the competition);
    `evaluation` passes sigmoid(logits)."""
    from sklearn.metrics import average_precision_score

    y = require_no_nan(y_true, "targets", "padded_cmap") > 0.5
    scores = require_no_nan(scores, "scores", "padded_cmap")
    if y.shape != scores.shape or y.ndim != 2:
        raise MetricError(f"padded_cmap: targets {y.shape} and scores {scores.shape} must be equal 2-D shapes")
    y = np.vstack([y, np.ones((padding, y.shape[1]), dtype=bool)]).astype(np.int64)
    scores = ordered_finite(np.vstack([scores, np.ones((padding, scores.shape[1]))]))  # pad before: 1 keeps its place
    return float(average_precision_score(y, scores, average="macro"))


def file_level(y_true: np.ndarray, scores: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray, list]:
    """Per file (group key): the max over its windows of the targets and of the scores.
    Returns (y_file, s_file, file_keys), files in sorted key order."""
    y = require_no_nan(y_true, "targets", "file_level")
    scores = require_no_nan(scores, "scores", "file_level")
    groups = np.asarray(groups)
    if not (len(y) == len(scores) == len(groups)) or y.shape != scores.shape:
        raise MetricError(f"file_level: targets {y.shape}, scores {scores.shape} and {len(groups)} group keys "
                          "must describe the same windows")
    keys, inverse = np.unique(groups, return_inverse=True)
    if len(keys) == 0:
        return y[:0], scores[:0], []
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(keys)))
    return (np.maximum.reduceat(y[order], starts, axis=0), np.maximum.reduceat(scores[order], starts, axis=0),
            keys.tolist())


def _number(value) -> float | None:
    """JSON-ready: a float, or None for NaN (and for None)."""
    return None if value is None or math.isnan(value) else float(value)


def species_table(y_true: np.ndarray, scores: np.ndarray, species: list[str], threshold: float = 0.5) -> list[dict]:
    """Per species: positives, negatives, AUROC (None where undefined), average precision (None
    without a positive), and F1, precision, recall at `threshold` on sigmoid(scores) (logits);
    None where a ratio has nothing to divide by."""
    from sklearn.metrics import average_precision_score

    y = require_no_nan(y_true, "targets", "species_table") > 0.5
    scores = require_no_nan(scores, "scores", "species_table")
    if y.shape != scores.shape or y.ndim != 2 or y.shape[1] != len(species):
        raise MetricError(f"species_table: targets {y.shape}, scores {scores.shape} and {len(species)} species "
                          "do not match")
    auroc = per_species_auroc(y, scores)
    predicted = sigmoid(scores) > threshold
    ranked = ordered_finite(scores)
    rows = []
    for j, code in enumerate(species):
        truth, guess = y[:, j], predicted[:, j]
        tp, fp, fn = int((truth & guess).sum()), int((~truth & guess).sum()), int((truth & ~guess).sum())
        positives = int(truth.sum())
        rows.append({
            "species": code,
            "positives": positives,
            "negatives": int(len(truth) - positives),
            "auroc": _number(auroc[j]),
            "average_precision": float(average_precision_score(truth, ranked[:, j])) if positives else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
        })
    return rows


def _level(y: np.ndarray, logits: np.ndarray, species: list[str], threshold: float) -> dict:
    probabilities = sigmoid(logits)
    return {
        "macro_auroc": _number(macro_auroc(y, logits)),
        "padded_cmap": _number(padded_cmap(y, probabilities)),
        "macro_f1": _number(macro_f1(y, probabilities, threshold)),
        "scored_species": int(scored_species(y).sum()),
        "n": int(len(y)),
        "per_species": species_table(y, logits, species, threshold),
    }


def evaluation(y_true: np.ndarray, logits: np.ndarray, species: list[str], groups=None,
               threshold: float = 0.5) -> dict:
    """{"windows": {...}, "files": {...} (only with `groups`, one key per window)}, each with
    the competition's macro AUROC (species with a positive and a negative), padded cmAP (on
    sigmoid(logits)), macro F1 at `threshold`, scored_species, n (windows or files) and
    per_species (`species_table`). JSON-serialisable: floats or None, never NaN."""
    y = require_no_nan(y_true, "targets", "evaluation")
    logits = require_no_nan(logits, "scores", "evaluation")
    if y.shape != logits.shape or y.ndim != 2 or y.shape[1] != len(species):
        raise MetricError(f"evaluation: targets {y.shape}, logits {logits.shape} and {len(species)} species "
                          "do not match")
    result = {"windows": _level(y, logits, species, threshold)}
    if groups is not None:
        y_file, logits_file, _ = file_level(y, logits, groups)
        result["files"] = _level(y_file, logits_file, species, threshold)
    return result


def _cell(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _level_of(results: dict[str, dict], level: str) -> dict[str, dict]:
    missing = [name for name, result in results.items() if level not in result]
    if missing:
        raise MetricError(f"no {level!r} results for {', '.join(missing)} (file level needs the group keys)")
    return {name: result[level] for name, result in results.items()}


def markdown_table(results: dict[str, dict], level: str = "windows") -> str:
    """One row per scorer (e.g. "head", "passthrough") of `evaluation` results at `level`."""
    lines = ["| scorer | macro AUROC | padded cmAP | macro F1 | scored species |", "|---|---:|---:|---:|---:|"]
    for name, values in _level_of(results, level).items():
        lines.append(f"| {name} | {_cell(values['macro_auroc'])} | {_cell(values['padded_cmap'])} | "
                     f"{_cell(values['macro_f1'])} | {values['scored_species']} |")
    return "\n".join(lines)


def species_markdown(results: dict[str, dict], level: str = "windows") -> str:
    """Per species (in the first scorer's order): positives, then each scorer's AUROC side by side."""
    by_scorer = {name: {row["species"]: row for row in values["per_species"]}
                 for name, values in _level_of(results, level).items()}
    species = list(dict.fromkeys(code for rows in by_scorer.values() for code in rows))
    lines = ["| species | positives | " + " | ".join(by_scorer) + " |", "|---|---:|" + "---:|" * len(by_scorer)]
    for code in species:
        positives = next(rows[code]["positives"] for rows in by_scorer.values() if code in rows)
        cells = [_cell(rows[code]["auroc"]) if code in rows else "n/a" for rows in by_scorer.values()]
        lines.append(f"| {code} | {positives} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
