"""Exploratory statistics of pseudo-labels: call rates, species frequencies, KL divergence,
per-recording species sets, frequent itemsets and association rules (the paper's sections 4
and 7). Pure functions over birdemb.explore.hits.DatasetLabels or plain Python baskets; the
mining itself is mlxtend's FPGrowth, not a hand-written miner.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from birdemb.explore.hits import SOUNDSCAPE, TRAIN, DatasetLabels

# ---------------------------------------------------------------- windows


def call_rates(datasets: Sequence[DatasetLabels]) -> pl.DataFrame:
    """Per dataset: files, windows, windows with at least one pseudo-label, and their share."""
    return pl.DataFrame(
        {
            "dataset": [d.dataset for d in datasets],
            "kind": [d.kind for d in datasets],
            "files": [len(d.files) for d in datasets],
            "windows": [d.windows for d in datasets],
            "windows_with_call": [d.windows_with_call for d in datasets],
            "call_rate": [d.windows_with_call / d.windows if d.windows else 0.0 for d in datasets],
        },
        schema_overrides={"files": pl.Int64, "windows": pl.Int64, "windows_with_call": pl.Int64},
    )


def species_counts(dataset: DatasetLabels) -> dict[str, int]:
    """Species -> number of windows where it is pseudo-labelled."""
    counts = dataset.hits.group_by("species").len()
    return dict(zip(counts["species"].to_list(), counts["len"].to_list()))


def frequency_table(datasets: Sequence[DatasetLabels]) -> pl.DataFrame:
    """One row per species pseudo-labelled anywhere; per dataset `<name>_windows` (windows with
    the species) and `<name>_share` (its share of all pseudo-labels of that dataset, so each
    share column sums to 1). Ranked by the pooled soundscape share, then the pooled train share
    (the order of the paper's Figure 2 and Table 1), then by name."""
    counts = {d.dataset: species_counts(d) for d in datasets}
    species = sorted({s for c in counts.values() for s in c})
    columns: dict[str, list] = {"species": species}
    for d in datasets:
        c = counts[d.dataset]
        total = sum(c.values())
        columns[f"{d.dataset}_windows"] = [c.get(s, 0) for s in species]
        columns[f"{d.dataset}_share"] = [c.get(s, 0) / total if total else 0.0 for s in species]
    table = pl.DataFrame(columns, schema_overrides={f"{d.dataset}_windows": pl.Int64 for d in datasets})

    def pooled(kind):
        names = [f"{d.dataset}_windows" for d in datasets if d.kind == kind]
        if not names:
            return pl.lit(0)
        return pl.sum_horizontal(names)

    return (
        table.with_columns(_soundscape=pooled(SOUNDSCAPE), _train=pooled(TRAIN))
        .sort(["_soundscape", "_train", "species"], descending=[True, True, False])
        .drop("_soundscape", "_train")
    )


def kl_divergence(p_counts: Sequence[float], q_counts: Sequence[float], alpha: float = 1.0) -> float:
    """Kullback-Leibler divergence D(P || Q) = sum_i p_i * ln(p_i / q_i), in nats.

    P and Q are species distributions estimated from counts over the same species, in the same
    order, with additive (Laplace) smoothing: p_i = (c_i + alpha) / (sum_j c_j + alpha * K),
    K the number of species, so a species absent from one side has a small non-zero probability
    instead of an infinite divergence. alpha = 0 gives the unsmoothed estimate (inf if some
    q_i = 0 < p_i). The direction matters: D(soundscape || train) is the information lost when
    the train distribution stands in for the soundscape one.
    """
    p = np.asarray(p_counts, dtype=np.float64) + alpha
    q = np.asarray(q_counts, dtype=np.float64) + alpha
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError("P and Q need counts over the same species")
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    support = p > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(p[support] * np.log(p[support] / q[support])))


def kl_table(frequencies: pl.DataFrame, datasets: Sequence[DatasetLabels], alpha: float = 1.0) -> pl.DataFrame:
    """D(soundscape || train) for every soundscape and train dataset pair, over all species of
    the frequency table, with `alpha` Laplace smoothing (see kl_divergence)."""
    rows = []
    for p in (d for d in datasets if d.kind == SOUNDSCAPE):
        for q in (d for d in datasets if d.kind == TRAIN):
            rows.append({
                "p": p.dataset, "q": q.dataset,
                "kl_nats": kl_divergence(frequencies[f"{p.dataset}_windows"], frequencies[f"{q.dataset}_windows"], alpha),
                "species": frequencies.height, "alpha": alpha,
            })
    schema = {"p": pl.String, "q": pl.String, "kl_nats": pl.Float64, "species": pl.Int64, "alpha": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


# ---------------------------------------------------------------- recordings


def file_species_sets(dataset: DatasetLabels) -> dict[str, frozenset[str]]:
    """Recording -> the species pseudo-labelled in any of its windows (empty sets kept)."""
    grouped = dataset.hits.group_by("file").agg(pl.col("species").unique())
    found = {f: frozenset(s) for f, s in zip(grouped["file"].to_list(), grouped["species"].to_list())}
    return {f: found.get(f, frozenset()) for f in dataset.files}


def itemset_sizes(baskets: Sequence[frozenset[str]]) -> pl.DataFrame:
    """How many recordings hold exactly k species, k = 0 .. max (the paper's Figure 3)."""
    sizes = np.asarray([len(b) for b in baskets], dtype=np.int64)
    ks = np.arange(0, (sizes.max() if sizes.size else 0) + 1)
    files = np.asarray([(sizes == k).sum() for k in ks], dtype=np.int64)
    share = files / sizes.size if sizes.size else files * 0.0
    return pl.DataFrame({"species_per_recording": ks, "recordings": files, "share": share})


def _basket_frame(baskets: Sequence[frozenset[str]]):
    """One-hot pandas frame (recordings x species), the input mlxtend expects."""
    import pandas as pd

    items = sorted({s for b in baskets for s in b})
    column = {s: j for j, s in enumerate(items)}
    onehot = np.zeros((len(baskets), len(items)), dtype=bool)
    for i, basket in enumerate(baskets):
        onehot[i, [column[s] for s in basket]] = True
    return pd.DataFrame(onehot, columns=items)


def _itemset_text(items) -> str:
    return " + ".join(sorted(items))


def frequent_itemsets(baskets: Sequence[frozenset[str]], min_support: float, max_len: int | None = None) -> pl.DataFrame:
    """FPGrowth (mlxtend) over recordings: itemsets in at least `min_support` of all recordings
    (recordings without species count in the denominator). Columns: itemset (sorted species,
    joined by " + "), size, recordings, support; sorted by support then size then name."""
    from mlxtend.frequent_patterns import fpgrowth

    schema = {"itemset": pl.String, "size": pl.Int64, "recordings": pl.Int64, "support": pl.Float64}
    frame = _basket_frame(baskets)
    if frame.shape[1] == 0:
        return pl.DataFrame(schema=schema)
    found = fpgrowth(frame, min_support=min_support, use_colnames=True, max_len=max_len)
    table = pl.DataFrame(
        {
            "itemset": [_itemset_text(s) for s in found["itemsets"]],
            "size": [len(s) for s in found["itemsets"]],
            "recordings": [round(x * len(baskets)) for x in found["support"]],
            "support": found["support"].to_numpy(dtype=np.float64),
        },
        schema=schema,
    )
    return table.sort(["support", "size", "itemset"], descending=[True, True, False])


def association_rules(itemsets: pl.DataFrame, recordings: int, min_confidence: float = 0.8) -> pl.DataFrame:
    """Rules A -> C (mlxtend) from frequent itemsets with confidence P(C | A) >= min_confidence.
    Columns: antecedent, consequent (species joined by " + "), support, confidence, lift;
    sorted by confidence, lift, then text."""
    import pandas as pd
    from mlxtend.frequent_patterns import association_rules as mine_rules

    schema = {"antecedent": pl.String, "consequent": pl.String, "support": pl.Float64,
              "confidence": pl.Float64, "lift": pl.Float64}
    if itemsets.filter(pl.col("size") > 1).is_empty():
        return pl.DataFrame(schema=schema)
    frame = pd.DataFrame({
        "support": itemsets["support"].to_list(),
        "itemsets": [frozenset(s.split(" + ")) for s in itemsets["itemset"].to_list()],
    })
    with np.errstate(divide="ignore", invalid="ignore"):  # mlxtend's unused metrics divide by zero on certain rules
        rules = mine_rules(frame, num_itemsets=recordings, metric="confidence", min_threshold=min_confidence)
    table = pl.DataFrame(
        {
            "antecedent": [_itemset_text(a) for a in rules["antecedents"]],
            "consequent": [_itemset_text(c) for c in rules["consequents"]],
            "support": rules["support"].to_numpy(dtype=np.float64),
            "confidence": rules["confidence"].to_numpy(dtype=np.float64),
            "lift": rules["lift"].to_numpy(dtype=np.float64),
        },
        schema=schema,
    )
    return table.sort(["confidence", "lift", "antecedent", "consequent"], descending=[True, True, False, False])
