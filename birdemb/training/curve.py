"""curve.png of a run: training loss and validation AUROC per epoch, passthrough beside."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_curve(result_metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = result_metrics["history"]
    steps = [max(h["step"], 0) for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(steps, [h.get("train_loss", np.nan) for h in history], marker=".")
    left.set(xlabel="optimiser step", ylabel="train loss", title=f"loss: {result_metrics['loss']}")
    right.plot(steps, [h["val_macro_auroc"] for h in history], marker=".", label="head")
    passthrough = result_metrics.get("passthrough")
    if passthrough and np.isfinite(passthrough["macro_auroc"]):
        right.axhline(passthrough["macro_auroc"], color="grey", linestyle="--", label="passthrough")
    right.set(xlabel="optimiser step", ylabel=f"val macro AUROC ({result_metrics['truth']})", title=f"labels: {result_metrics['label_scheme']}")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
