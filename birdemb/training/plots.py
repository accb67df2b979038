"""Evaluation figures: ROC and precision-recall curves of several scorers on the same windows."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from birdemb.runtime.head import sigmoid
from birdemb.training.metrics import (
    MetricError,
    macro_auroc,
    ordered_finite,
    padded_cmap,
    require_no_nan,
    scored_species,
)

PER_SPECIES_MAX = 12  # up to this many species, the first scorer also gets one thin line per species
DPI = 110


def roc_pr_figure(y_true: np.ndarray, scores_by_name: dict[str, np.ndarray], species: list[str], path,
                  title: str = "") -> Path:
    """Two panels, ROC and precision-recall, micro-averaged over the scored species (a positive
    and a negative each): one line per scorer, labelled with its macro AUROC and padded cmAP
    (on sigmoid of the scores, which are logits; ±inf allowed). With at most 12 species, thin
    per-species lines of the first scorer too. Writes a PNG at `path` and returns its path."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: files only, no display
    from matplotlib.figure import Figure
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = require_no_nan(y_true, "targets", "roc_pr_figure") > 0.5
    if y.ndim != 2 or y.shape[1] != len(species):
        raise MetricError(f"roc_pr_figure: targets {y.shape} do not match {len(species)} species")
    if not scores_by_name:
        raise MetricError("roc_pr_figure: no scorers to plot")
    kept = scored_species(y)
    if not kept.any():
        raise MetricError("roc_pr_figure: no species has both a positive and a negative; nothing to plot")

    fig = Figure(figsize=(11, 4.6))
    FigureCanvasAgg(fig)
    roc_ax, pr_ax = fig.subplots(1, 2)
    truth = y[:, kept].ravel()
    for k, (name, scores) in enumerate(scores_by_name.items()):
        scores = require_no_nan(scores, f"{name!r} scores", "roc_pr_figure")
        if scores.shape != y.shape:
            raise MetricError(f"roc_pr_figure: {name!r} scores {scores.shape} differ from targets {y.shape}")
        ranked = ordered_finite(scores)
        label = f"{name} (macro AUROC {macro_auroc(y, scores):.3f}, padded cmAP {padded_cmap(y, sigmoid(scores)):.3f})"
        fpr, tpr, _ = roc_curve(truth, ranked[:, kept].ravel())
        precision, recall, _ = precision_recall_curve(truth, ranked[:, kept].ravel())
        roc_ax.plot(fpr, tpr, linewidth=2, color=f"C{k % 10}", label=label, zorder=3)
        pr_ax.plot(recall, precision, linewidth=2, color=f"C{k % 10}", label=label, zorder=3)
        if k == 0 and len(species) <= PER_SPECIES_MAX:
            palette = colormaps["Paired"]  # 12 distinct colours
            for i, j in enumerate(np.flatnonzero(kept)):
                colour = palette(i % 12)
                fpr, tpr, _ = roc_curve(y[:, j], ranked[:, j])
                precision, recall, _ = precision_recall_curve(y[:, j], ranked[:, j])
                roc_ax.plot(fpr, tpr, linewidth=0.7, alpha=0.6, color=colour, label=f"{name}: {species[j]}")
                pr_ax.plot(recall, precision, linewidth=0.7, alpha=0.6, color=colour, label=f"{name}: {species[j]}")

    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
               title="ROC (micro over scored species)")
    pr_ax.axhline(truth.mean(), color="grey", linestyle=":", linewidth=1)  # a random scorer's precision
    pr_ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01),
              title="precision-recall (micro over scored species)")
    for ax in (roc_ax, pr_ax):
        ax.legend(fontsize=7, loc="lower right" if ax is roc_ax else "lower left")
    fig.suptitle(title or f"{int(kept.sum())} scored species, {len(y)} windows")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path
