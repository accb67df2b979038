"""A species co-occurrence prior for soundscape scores (the paper's future work).

The prior is estimated at the recording level from training labels: each recording is a
basket of species (its folder species, its metadata secondary labels and the surrogate's
pseudo-labels of any of its windows, the same baskets `birdemb eda` mines with FPGrowth).
With n recordings, c_i recordings holding species i and c_ij holding both i and j:

    P(j)     = (c_j + 1/2) / (n + 1)                      (never 0: a log needs it)
    P(j | i) = (c_ij + k P(j)) / (c_i + k)                 (shrunk towards P(j), pseudo-count k)
    L[i, j]  = log(P(j | i) / P(j)), L[i, i] = 0           (pointwise mutual information)

A species seen in few recordings keeps L near 0 (k pulls P(j|i) back to P(j)); one never seen
gives exactly 0. For one soundscape with probabilities p[t, j] (windows x species), species i's
evidence is e_i = max_t p[t, i], and each species' logits move by one bounded constant:

    logit p'[t, j] = logit p[t, j] + clip(alpha * sum_i e_i L[i, j], -bound, bound)

So alpha = 0 is the identity, a species that co-occurs with a confidently present one rises,
one that never does falls, and within a species of one soundscape the window order never
changes (the shift is the same for all its windows). The evidence comes from the unadjusted
scores: one step, no iteration, so the result does not depend on species order.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from birdemb.errors import UsageError
from birdemb.runtime.head import sigmoid

ALPHAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # the grid alpha is chosen from on training folds
BOUND = 3.0  # largest logit shift: odds change by at most e^3 (about 20x) either way


@dataclass(frozen=True)
class CooccurrencePrior:
    species: list[str]
    recordings: int  # n
    counts: np.ndarray  # [K] recordings holding species i
    joint: np.ndarray  # [K, K] recordings holding both i and j (diagonal: counts)
    pseudo_count: float  # k

    @property
    def marginal(self) -> np.ndarray:
        return (self.counts + 0.5) / (self.recordings + 1.0)

    @property
    def conditional(self) -> np.ndarray:
        """[i, j] = P(j | i), shrunk towards P(j) with pseudo-count k."""
        p = self.marginal
        return (self.joint + self.pseudo_count * p[None, :]) / (self.counts[:, None] + self.pseudo_count)

    @property
    def log_lift(self) -> np.ndarray:
        """[i, j] = log(P(j | i) / P(j)); zero on the diagonal (a species is not its own evidence)."""
        lift = np.log(self.conditional / self.marginal[None, :])
        np.fill_diagonal(lift, 0.0)
        return lift

    def restrict(self, species: list[str]) -> CooccurrencePrior:
        """The same counts for `species` in the given order; a species never counted gets zeros."""
        position = {s: i for i, s in enumerate(self.species)}
        index = np.asarray([position.get(s, -1) for s in species], dtype=np.int64)
        known = index >= 0
        counts = np.zeros(len(species), dtype=np.int64)
        counts[known] = self.counts[index[known]]
        joint = np.zeros((len(species), len(species)), dtype=np.int64)
        joint[np.ix_(known, known)] = self.joint[np.ix_(index[known], index[known])]
        return CooccurrencePrior(list(species), self.recordings, counts, joint, self.pseudo_count)


def estimate_prior(baskets: Iterable[Iterable[str]], species: Sequence[str],
                   pseudo_count: float = 1.0) -> CooccurrencePrior:
    """Count recordings and species pairs over baskets (one per recording; an empty basket still
    counts as a recording). Species outside `species` are ignored."""
    if pseudo_count <= 0:
        raise UsageError(f"the co-occurrence pseudo-count must be positive, not {pseudo_count}")
    column = {s: j for j, s in enumerate(species)}
    rows = []
    for basket in baskets:
        row = np.zeros(len(species), dtype=np.int64)
        row[[column[s] for s in set(basket) if s in column]] = 1
        rows.append(row)
    onehot = np.asarray(rows, dtype=np.int64).reshape(len(rows), len(species))
    joint = onehot.T @ onehot
    return CooccurrencePrior(list(species), len(rows), np.diag(joint).copy(), joint, float(pseudo_count))


def logit_shift(probabilities: np.ndarray, log_lift: np.ndarray, alpha: float, bound: float = BOUND) -> np.ndarray:
    """Per species, the one logit shift of a soundscape: clip(alpha * e @ L, -bound, bound)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or log_lift.shape != (p.shape[1], p.shape[1]):
        raise UsageError(f"co-occurrence: probabilities {p.shape} need a [windows, species] matrix and a square "
                         f"prior over the same species, not {log_lift.shape}")
    evidence = p.max(axis=0) if len(p) else np.zeros(p.shape[1])
    return np.clip(alpha * (evidence @ log_lift), -bound, bound)


def adjust(probabilities: np.ndarray, log_lift: np.ndarray, alpha: float, bound: float = BOUND) -> np.ndarray:
    """One soundscape's probabilities [windows, species] after the co-occurrence prior."""
    p = np.asarray(probabilities, dtype=np.float64)
    shift = logit_shift(p, log_lift, alpha, bound)
    if alpha == 0:
        return p.copy()
    with np.errstate(divide="ignore"):
        logits = np.log(p) - np.log1p(-p)  # 0 -> -inf and 1 -> +inf stay where they are
    return sigmoid(logits + shift[None, :])


# ---------------------------------------------------------------- evaluation on soundscapes


def stacked(probabilities: Sequence[np.ndarray],
            truth: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soundscapes' windows one under another: (truth, scores, soundscape index per window)."""
    groups = np.concatenate([np.full(len(p), i) for i, p in enumerate(probabilities)])
    return np.concatenate(truth), np.concatenate(probabilities), groups


def soundscape_scores(probabilities: Sequence[np.ndarray], truth: Sequence[np.ndarray], log_lift: np.ndarray | None,
                      alpha: float, bound: float = BOUND) -> dict:
    """Macro ROC-AUC over all windows of the soundscapes, and per soundscape (max over its
    windows), after the prior (none when log_lift is None or alpha is 0). Species with no
    positive or no negative are skipped, as training.metrics does."""
    from birdemb.training.metrics import file_level, macro_auroc

    if log_lift is not None and alpha:
        probabilities = [adjust(p, log_lift, alpha, bound) for p in probabilities]
    y, s, groups = stacked(probabilities, truth)
    y_file, s_file, _ = file_level(y, s, groups)
    return {"window_auroc": macro_auroc(y, s), "file_auroc": macro_auroc(y_file, s_file)}


def choose_alpha(folds: Sequence[tuple[np.ndarray, Sequence[np.ndarray], Sequence[np.ndarray]]],
                 alphas: Sequence[float] = ALPHAS, bound: float = BOUND) -> tuple[float, dict[float, float]]:
    """alpha with the best mean window macro AUC over validation folds, each given as (log_lift
    estimated without that fold, its soundscapes' probabilities, their truth); ties go to the
    smaller alpha, so the prior is only used where it helps. Returns (alpha, mean AUC per alpha)."""
    if not folds:
        raise UsageError("choosing alpha needs at least one validation fold")
    means = {}
    for alpha in alphas:
        values = [soundscape_scores(p, y, lift, alpha, bound)["window_auroc"] for lift, p, y in folds]
        means[alpha] = float(np.nanmean(values))
    best = max(means.values())
    return min(a for a, v in means.items() if v >= best - 1e-12), means


# ---------------------------------------------------------------- baskets from a store


def store_baskets(store_dir, surrogate: str, dataset: str, mapping, threshold: float = 0.5,
                  files: Iterable[str] | None = None) -> dict[str, frozenset[str]]:
    """Recording -> its species: the folder species, the metadata's secondary labels and the
    surrogate's pseudo-labels (sigmoid > threshold in any window, birdemb.explore.hits, as
    `birdemb eda`), over `mapping`'s species (a birdemb.labels.mapping.SpeciesMapping);
    only `files` when given (a training fold)."""

    from birdemb import store
    from birdemb.explore.hits import load_dataset_labels
    from birdemb.explore.stats import file_species_sets

    labels = load_dataset_labels(store_dir, surrogate, dataset, mapping, threshold)
    baskets = {f: set(s) for f, s in file_species_sets(labels).items()}
    rows = store.scan(store_dir, surrogate, dataset).select("file", "species", "secondary_labels").collect()
    for file, folder, secondary in rows.unique(["file"]).iter_rows():
        baskets.setdefault(file, set()).update(([folder] if folder else []) + list(secondary or []))
    kept = set(mapping.names)
    wanted = set(files) if files is not None else None
    return {f: frozenset(s & kept) for f, s in sorted(baskets.items()) if wanted is None or f in wanted}
