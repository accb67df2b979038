"""The co-occurrence prior: counts by hand, the adjustment against its formula, its guarantees."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from birdemb import store
from birdemb.errors import UsageError
from birdemb.explore.cooccurrence import (
    adjust,
    choose_alpha,
    estimate_prior,
    logit_shift,
    soundscape_scores,
    store_baskets,
)
from birdemb.labels.mapping import surrogate_species

SPECIES = ["a", "b", "c"]
# n = 4 recordings; c_a = 2, c_b = 2, c_c = 1; c_ab = 1, c_bc = 1, c_ac = 0 ("z" is not a species here)
BASKETS = [{"a", "b"}, {"a", "z"}, {"b", "c", "b"}, set()]


def test_prior_matches_hand_counts():
    prior = estimate_prior(BASKETS, SPECIES, pseudo_count=1.0)
    assert prior.recordings == 4
    assert prior.counts.tolist() == [2, 2, 1]
    assert prior.joint.tolist() == [[2, 1, 0], [1, 2, 1], [0, 1, 1]]
    p = {"a": 2.5 / 5, "b": 2.5 / 5, "c": 1.5 / 5}  # (c_j + 1/2) / (n + 1)
    assert prior.marginal == pytest.approx([p["a"], p["b"], p["c"]])
    # P(j | i) = (c_ij + k P(j)) / (c_i + k), k = 1
    assert prior.conditional[0, 1] == pytest.approx((1 + p["b"]) / 3)  # P(b | a) = 0.5 = P(b): no lift
    assert prior.conditional[1, 2] == pytest.approx((1 + p["c"]) / 3)  # P(c | b)
    assert prior.conditional[0, 2] == pytest.approx(p["c"] / 3)  # P(c | a): never together
    lift = prior.log_lift
    assert lift[0, 1] == pytest.approx(0.0)
    assert lift[1, 2] == pytest.approx(math.log((1 + 0.3) / 3 / 0.3))
    assert lift[0, 2] == pytest.approx(math.log(1 / 3))
    assert np.diag(lift).tolist() == [0.0, 0.0, 0.0]


def test_pseudo_count_shrinks_towards_the_marginal():
    few = estimate_prior(BASKETS, SPECIES, pseudo_count=1.0).log_lift
    many = estimate_prior(BASKETS, SPECIES, pseudo_count=1e6).log_lift
    assert np.abs(many).max() < 1e-5 < np.abs(few).max()
    unseen = estimate_prior(BASKETS, SPECIES + ["d"]).log_lift
    assert unseen[3].tolist() == [0.0] * 4  # a species in no recording is no evidence for anything
    with pytest.raises(UsageError):
        estimate_prior(BASKETS, SPECIES, pseudo_count=0)


def test_restrict_reorders_and_fills_unknown_species():
    prior = estimate_prior(BASKETS, SPECIES)
    sub = prior.restrict(["c", "a", "new"])
    assert sub.counts.tolist() == [1, 2, 0]
    assert sub.joint.tolist() == [[1, 0, 0], [0, 2, 0], [0, 0, 0]]
    assert sub.log_lift[0, 1] == pytest.approx(prior.log_lift[2, 0])


# ---------------------------------------------------------------- the adjustment

P = np.array([[0.9, 0.2, 0.1],
              [0.3, 0.4, 0.05]])
LIFT = np.array([[0.0, 1.0, -2.0],   # a present: b more likely, c less
                 [0.5, 0.0, 0.0],
                 [0.0, 0.0, 0.0]])


def logit(p):
    return np.log(p / (1 - p))


def test_adjustment_follows_its_formula():
    alpha, bound = 0.5, 10.0
    evidence = P.max(axis=0)  # [0.9, 0.4, 0.1]
    shift = alpha * np.array([evidence[1] * 0.5, evidence[0] * 1.0, evidence[0] * -2.0])
    assert logit_shift(P, LIFT, alpha, bound) == pytest.approx(shift)
    expected = 1 / (1 + np.exp(-(logit(P) + shift)))
    assert adjust(P, LIFT, alpha, bound) == pytest.approx(expected)


def test_alpha_zero_is_the_identity_and_the_shift_is_bounded():
    assert np.array_equal(adjust(P, LIFT, 0.0), P)
    bounded = adjust(P, LIFT * 100, 1.0, bound=0.5)
    assert np.abs(logit(bounded) - logit(P)).max() == pytest.approx(0.5)


def test_cooccurring_species_rise_and_excluded_ones_fall():
    after = adjust(P, LIFT, 1.0)
    assert (after[:, 1] > P[:, 1]).all()  # b always came with a, and a is confidently present
    assert (after[:, 2] < P[:, 2]).all()  # c never came with a
    # within one species of one soundscape the window order never changes
    for j in range(3):
        assert np.array_equal(np.argsort(after[:, j]), np.argsort(P[:, j]))


def test_adjustment_does_not_depend_on_species_order_and_is_deterministic():
    order = [2, 0, 1]
    permuted = adjust(P[:, order], LIFT[np.ix_(order, order)], 0.7)
    assert permuted == pytest.approx(adjust(P, LIFT, 0.7)[:, order])
    assert np.array_equal(adjust(P, LIFT, 0.7), adjust(P.copy(), LIFT.copy(), 0.7))


def test_certain_scores_stay_certain():
    edges = np.array([[1.0, 0.0, 0.5]])  # a certain: b would rise and c fall
    out = adjust(edges, LIFT, 1.0)
    # the house sigmoid clips its logits, so 0 and 1 come back as the closest values it gives
    assert out[0, 0] > 1 - 1e-12 and out[0, 1] < 1e-30 and 0 < out[0, 2] < 0.5
    with pytest.raises(UsageError):
        adjust(P, LIFT[:2, :2], 1.0)


# ---------------------------------------------------------------- evaluation and alpha


def test_soundscape_scores_match_sklearn():
    rng = np.random.default_rng(0)
    probabilities = [rng.uniform(size=(4, 3)) for _ in range(5)]
    truth = [(rng.uniform(size=(4, 3)) > 0.6).astype(np.float32) for _ in range(5)]
    truth[0][:, 2] = 1  # every species has a positive and a negative somewhere
    y, s = np.concatenate(truth), np.concatenate(probabilities)
    y_file = np.stack([t.max(axis=0) for t in truth])
    s_file = np.stack([p.max(axis=0) for p in probabilities])
    keep = [j for j in range(3) if 0 < y_file[:, j].sum() < len(y_file)]
    got = soundscape_scores(probabilities, truth, None, 0.0)
    assert got["window_auroc"] == pytest.approx(roc_auc_score(y, s, average="macro"))
    assert got["file_auroc"] == pytest.approx(roc_auc_score(y_file[:, keep], s_file[:, keep], average="macro"))


def _community_soundscapes(rng, n):
    """a and b always call together, c alone; b is faint, so its scores need a's evidence."""
    probabilities, truth = [], []
    for i in range(n):
        together = i % 2 == 0
        y = np.zeros((2, 3), np.float32)
        p = rng.uniform(0.0, 0.3, size=(2, 3))
        if together:
            y[:, :2] = 1
            p[:, 0] = rng.uniform(0.8, 1.0, 2)
            p[:, 1] = rng.uniform(0.1, 0.4, 2)  # faint: overlaps the noise of soundscapes without b
        else:
            y[:, 2] = 1
            p[:, 2] = rng.uniform(0.8, 1.0, 2)
        probabilities.append(p)
        truth.append(y)
    return probabilities, truth


def test_choose_alpha_uses_the_prior_only_where_it_helps():
    rng = np.random.default_rng(1)
    lift = estimate_prior([{"a", "b"}] * 10 + [{"c"}] * 10, SPECIES).log_lift
    folds = [(lift, *_community_soundscapes(rng, 20)) for _ in range(3)]
    alpha, means = choose_alpha(folds)
    assert alpha > 0 and means[alpha] > means[0.0]
    useless = np.zeros((3, 3))  # no co-occurrence: every alpha gives the same AUC, and the smallest wins
    assert choose_alpha([(useless, *_community_soundscapes(rng, 20))])[0] == 0.0


# ---------------------------------------------------------------- baskets from a store


def test_store_baskets_join_folder_secondary_and_pseudo_labels(tmp_path):
    labels = ["a", "b", "c", "d"]
    directory = store.partition_dir(tmp_path, "m", "train")
    store.check_or_write_manifest(directory, {"model": "m", "labels": labels, "embedding_dim": 2,
                                              "n_labels": len(labels), "parameters": {"model": "m"}})
    writer = store.PartWriter(directory, store.schema(2, len(labels)))
    files = {  # file -> (folder, secondary, logits per window); pseudo-label: logit > 0
        "a/1.ogg": ("a", ["c"], [[3, -3, -3, -3], [-3, 2, -3, -3]]),
        "b/2.ogg": ("b", [], [[-3, -3, -3, -3]]),
        "d/3.ogg": ("d", ["x"], [[-3, -3, -3, 1]]),
    }
    for name, (folder, secondary, logits) in files.items():
        logits = np.asarray(logits, np.float32)
        n = len(logits)
        writer.add(store.FileRows(name, folder, secondary, 5.0 * n, np.arange(n) * 5.0, np.arange(n) * 5.0 + 5,
                                  np.ones((n, 2), np.float32), logits))
    writer.flush()
    mapping = surrogate_species(labels).restrict(["a", "b", "c"])
    baskets = store_baskets(tmp_path, "m", "train", mapping)
    assert baskets == {"a/1.ogg": frozenset("abc"), "b/2.ogg": frozenset("b"), "d/3.ogg": frozenset()}
    assert store_baskets(tmp_path, "m", "train", mapping, files=["b/2.ogg"]) == {"b/2.ogg": frozenset("b")}
