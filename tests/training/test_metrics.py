"""Macro AUROC / F1 / padded cmAP against sklearn, NaN checks, file level, reports, and per-epoch state reset."""
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from birdemb.errors import BirdembError
from birdemb.training.metrics import (
    EpochMetrics,
    MetricError,
    evaluation,
    file_level,
    macro_auroc,
    macro_f1,
    markdown_table,
    padded_cmap,
    per_species_auroc,
    per_species_f1,
    score,
    scored_species,
    species_markdown,
    species_table,
)


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


# --- NaN, padded cmAP, file level, species table, evaluation, markdown ----------------------------------------

def test_nan_scores_and_targets_fail_loudly_but_infinities_do_not():
    y, scores = _data(5)
    with_nan = scores.copy()
    with_nan[3, 1] = with_nan[7, 4] = np.nan
    probabilities = 1 / (1 + np.exp(-with_nan))
    for call in (lambda: per_species_auroc(y, with_nan), lambda: macro_auroc(y, with_nan),
                 lambda: per_species_f1(y, probabilities), lambda: macro_f1(y, probabilities),
                 lambda: score(y, with_nan, list("abcdefgh")), lambda: padded_cmap(y, probabilities),
                 lambda: evaluation(y, with_nan, list("abcdefgh"))):
        with pytest.raises(MetricError, match=r"scores contain NaN \(2 of 1600 values\)"):
            call()
    bad_targets = y.copy()
    bad_targets[0, 0] = np.nan
    with pytest.raises(MetricError, match="targets contain NaN"):
        macro_auroc(bad_targets, scores)
    assert isinstance(MetricError("x"), BirdembError)
    infinite = scores.copy()
    infinite[:, 0] = -np.inf
    infinite[:, 1] = np.where(y[:, 1] > 0, np.inf, -np.inf)
    per = per_species_auroc(y, infinite)
    assert per[0] == pytest.approx(0.5) and per[1] == pytest.approx(1.0)


def test_padded_cmap_equals_sklearn_on_padded_arrays():
    y, scores = _data(6)
    probabilities = 1 / (1 + np.exp(-scores))
    for padding in (5, 1):
        y_pad = np.vstack([y, np.ones((padding, y.shape[1]))])
        s_pad = np.vstack([probabilities, np.ones((padding, y.shape[1]))])
        expected = average_precision_score(y_pad, s_pad, average="macro")
        assert padded_cmap(y, probabilities, padding) == pytest.approx(expected, abs=1e-12)


def test_padded_cmap_by_hand():
    y = np.array([[1, 0, 0], [0, 1, 0]])
    s = np.array([[0.9, 0.8, 0.2], [0.1, 0.3, 0.4]])
    # one padding row (1, 1, 1): column 0 ranks pos, pos, neg -> AP 1; column 1 ranks pos(pad),
    # neg, pos -> (1 + 2/3) / 2 = 5/6; column 2 (no real positive) ranks the padding first -> 1
    assert padded_cmap(y, s, padding=1) == pytest.approx((1 + 5 / 6 + 1) / 3)
    # -inf / +inf keep their place around the padding's 1
    assert padded_cmap(y, np.array([[np.inf, 0.8, -np.inf], [-np.inf, 0.3, 0.4]]), padding=1) == pytest.approx(
        (1 + 5 / 6 + 1) / 3)


def test_file_level_takes_the_max_per_file_in_key_order():
    y = np.array([[0, 1], [1, 0], [0, 0], [0, 0]], dtype=np.float32)
    s = np.array([[0.1, -np.inf], [2.0, -np.inf], [-1.0, 3.0], [0.5, 1.0]])
    groups = np.array(["b.ogg", "a.ogg", "b.ogg", "a.ogg"])
    y_file, s_file, keys = file_level(y, s, groups)
    assert keys == ["a.ogg", "b.ogg"]
    assert y_file.tolist() == [[1, 0], [0, 1]]
    assert s_file.tolist() == [[2.0, 1.0], [0.1, 3.0]]
    with pytest.raises(MetricError):
        file_level(y, s, groups[:3])


def test_species_table_against_sklearn():
    y, scores = _data(7)
    species = [f"sp{j}" for j in range(8)]
    table = species_table(y, scores, species, threshold=0.5)
    assert [row["species"] for row in table] == species
    predicted = 1 / (1 + np.exp(-scores)) > 0.5
    for j in (0, 3):
        row = table[j]
        assert row["positives"] == int(y[:, j].sum()) and row["negatives"] == 200 - row["positives"]
        assert row["auroc"] == pytest.approx(roc_auc_score(y[:, j], scores[:, j]))
        assert row["average_precision"] == pytest.approx(average_precision_score(y[:, j], scores[:, j]))
        assert row["f1"] == pytest.approx(f1_score(y[:, j], predicted[:, j]))
        assert row["precision"] == pytest.approx(precision_score(y[:, j], predicted[:, j]))
        assert row["recall"] == pytest.approx(recall_score(y[:, j], predicted[:, j]))
    assert table[2]["auroc"] is None and table[2]["average_precision"] is None and table[2]["recall"] is None
    assert table[5]["auroc"] is None and table[5]["average_precision"] == pytest.approx(1.0)


def test_evaluation_windows_and_files_are_json_ready():
    y, scores = _data(8)
    scores[:, 1] = -np.inf  # a species the surrogate lacks
    species = [f"sp{j}" for j in range(8)]
    groups = np.repeat([f"file{i:02d}" for i in range(20)], 10)
    result = evaluation(y, scores, species, groups=groups)
    assert set(result) == {"windows", "files"}
    windows, files = result["windows"], result["files"]
    assert windows["macro_auroc"] == pytest.approx(macro_auroc(y, scores))
    assert windows["padded_cmap"] == pytest.approx(padded_cmap(y, 1 / (1 + np.exp(-scores))))
    assert windows["macro_f1"] == pytest.approx(macro_f1(y, 1 / (1 + np.exp(-scores))))
    assert windows["n"] == 200 and files["n"] == 20
    assert windows["scored_species"] == 6
    y_file, s_file, _ = file_level(y, scores, groups)
    assert files["macro_auroc"] == pytest.approx(macro_auroc(y_file, s_file))
    text = json.dumps(result, allow_nan=False)  # NaN would raise here
    assert json.loads(text)["windows"]["per_species"][2]["auroc"] is None
    assert "files" not in evaluation(y, scores, species)
    single = evaluation(np.zeros((4, 1)), np.zeros((4, 1)), ["x"])  # nothing scored: None, not NaN
    assert single["windows"]["macro_auroc"] is None and single["windows"]["macro_f1"] is None


def test_markdown_tables_compare_scorers():
    y, scores = _data(9)
    species = [f"sp{j}" for j in range(8)]
    groups = np.repeat(np.arange(40), 5)
    results = {"head": evaluation(y, scores, species, groups), "passthrough": evaluation(y, -scores, species, groups),
               "logistic regression": evaluation(y, scores * 2, species, groups)}
    table = markdown_table(results)
    lines = table.splitlines()
    assert lines[0] == "| scorer | macro AUROC | padded cmAP | macro F1 | scored species |"
    assert len(lines) == 5 and lines[4].startswith("| logistic regression | ")
    assert f"{results['head']['windows']['macro_auroc']:.4f}" in lines[2]
    assert f"{results['head']['files']['macro_auroc']:.4f}" in markdown_table(results, level="files")
    per = species_markdown(results, "windows").splitlines()
    assert per[0] == "| species | positives | head | passthrough | logistic regression |"
    assert len(per) == 2 + 8 and per[4].startswith("| sp2 | 0 | n/a | n/a | n/a |")
    with pytest.raises(MetricError, match="files"):
        markdown_table({"head": evaluation(y, scores, species)}, level="files")
