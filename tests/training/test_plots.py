"""The ROC / precision-recall figure writes a PNG, for several scorers and with infinite logits."""
import numpy as np
import pytest

from birdemb.training.metrics import MetricError
from birdemb.training.plots import roc_pr_figure

PNG = b"\x89PNG\r\n\x1a\n"


def _data(n=300, s=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, s)) < 0.2).astype(np.float32)
    return y, y * 2.0 + rng.normal(0, 1, (n, s))


@pytest.mark.parametrize("n_species", [5, 20])  # per-species lines, then none
def test_roc_pr_figure_writes_a_png_for_two_scorers(tmp_path, n_species):
    y, head = _data(s=n_species)
    passthrough = head * 0.5 + np.random.default_rng(1).normal(0, 1, head.shape)
    passthrough[:, 1] = -np.inf  # a species the surrogate lacks
    y[:, 2] = 0  # not scored
    path = roc_pr_figure(y, {"head": head, "passthrough": passthrough}, [f"sp{j}" for j in range(n_species)],
                         tmp_path / "figures" / "roc_pr.png", title="validation windows")
    assert path == tmp_path / "figures" / "roc_pr.png"
    assert path.read_bytes()[:8] == PNG


def test_roc_pr_figure_refuses_nan_and_mismatches(tmp_path):
    y, head = _data()
    head[0, 0] = np.nan
    with pytest.raises(MetricError, match="NaN"):
        roc_pr_figure(y, {"head": head}, list("abcde"), tmp_path / "x.png")
    with pytest.raises(MetricError):
        roc_pr_figure(y, {"head": np.zeros((3, 5))}, list("abcde"), tmp_path / "x.png")
