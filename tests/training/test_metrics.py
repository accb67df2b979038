"""Macro AUROC / F1 against sklearn, and per-epoch state reset."""
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score

from birdemb.training.metrics import EpochMetrics, macro_auroc, macro_f1, per_species_auroc, score, scored_species


def _data(seed=0, n=200, s=8):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, s)) < 0.2).astype(np.float32)
    scores = np.round(y * 1.0 + rng.normal(0, 1, (n, s)), 1)  # rounding makes ties
    y[:, 2] = 0  # no positive: skipped
    y[:, 5] = 1  # no negative: undefined, skipped
    return y, scores


def test_macro_auroc_equals_sklearn_on_columns_with_positives():
    y, scores = _data()
    kept = scored_species(y)
    assert kept.tolist() == [True, True, False, True, True, False, True, True]
    expected = roc_auc_score(y[:, kept], scores[:, kept], average="macro")
    assert macro_auroc(y, scores) == pytest.approx(expected, abs=1e-12)
    per = per_species_auroc(y, scores)
    assert np.isnan(per[2]) and np.isnan(per[5])
    assert per[0] == pytest.approx(roc_auc_score(y[:, 0], scores[:, 0]), abs=1e-12)


def test_macro_f1_equals_sklearn_on_the_same_columns():
    y, scores = _data(1)
    probabilities = 1 / (1 + np.exp(-scores))
    kept = scored_species(y)
    expected = f1_score(y[:, kept], probabilities[:, kept] > 0.5, average="macro", zero_division=0)
    assert macro_f1(y, probabilities) == pytest.approx(expected, abs=1e-12)


def test_score_names_species_and_handles_missing_surrogate_species():
    y, scores = _data(2)
    y, scores = y[:, [0, 1, 3]], scores[:, [0, 1, 3]]
    scores[:, 1] = -np.inf  # a species the surrogate lacks: all ties -> 0.5
    result = score(y, scores, ["amerob", "norcar", "blujay"])
    assert list(result["per_species_auroc"]) == ["amerob", "norcar", "blujay"]
    assert result["per_species_auroc"]["norcar"] == pytest.approx(0.5)


def test_epoch_metrics_reset_between_epochs():
    metric = EpochMetrics()
    y1, s1 = _data(3)
    y2, s2 = _data(4)
    for start in range(0, 200, 50):  # batches of one epoch
        metric.update(torch.tensor(s1[start:start + 50]), torch.tensor(y1[start:start + 50]))
    auroc1, _ = metric.compute()
    assert auroc1 == pytest.approx(macro_auroc(y1, s1))
    metric.reset()
    for start in range(0, 200, 50):
        metric.update(torch.tensor(s2[start:start + 50]), torch.tensor(y2[start:start + 50]))
    auroc2, f1_2 = metric.compute()
    assert auroc2 == pytest.approx(macro_auroc(y2, s2))
    assert auroc2 != pytest.approx(macro_auroc(np.vstack([y1, y2]), np.vstack([s1, s2])))
    assert f1_2 == pytest.approx(macro_f1(y2, 1 / (1 + np.exp(-s2))))
