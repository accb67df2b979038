"""EDA statistics checked against counts computed by hand, and the report end to end."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from birdemb import store
from birdemb.explore import stats
from birdemb.explore.hits import SOUNDSCAPE, TRAIN, load_store_labels
from birdemb.explore.report import EdaOptions, run_eda
from birdemb.explore.sample_store import ALWAYS_WITH, SOUNDSCAPE_ONLY, write_sample_store
from birdemb.labels.mapping import surrogate_species
from birdemb.labels.species import SpeciesError

# ---------------------------------------------------------------- a hand-made store
# Labels are eBird codes (Perch style). A window has species j when logit_j > 0 (sigmoid > 0.5).
LABELS = ["a", "b", "c"]
TRAIN_LOGITS = {  # file -> (folder species, logits per window)
    "a/f1.ogg": ("a", [[2, 1, -3], [1, -1, -1]]),  # w0: a, b   w1: a
    "b/f2.ogg": ("b", [[-1, -1, -1], [-1, 3, -1]]),  # w0: -      w1: b
}
SOUNDSCAPE_LOGITS = {
    "s1.ogg": (None, [[-5, -5, 2], [-5, -5, -5], [-5, 0.5, 2], [-5, -5, -5]]),  # c | - | b, c | -
}


def write_partition(root, dataset, files, model="m", labels=LABELS):
    directory = store.partition_dir(root, model, dataset)
    store.check_or_write_manifest(directory, {"model": model, "labels": labels, "embedding_dim": 4,
                                              "n_labels": len(labels), "parameters": {"model": model}})
    writer = store.PartWriter(directory, store.schema(4, len(labels)))
    for name, (species, logits) in files.items():
        logits = np.asarray(logits, dtype=np.float32)
        n = len(logits)
        writer.add(store.FileRows(name, species, [], 5.0 * n, np.arange(n) * 5.0, np.arange(n) * 5.0 + 5,
                                  np.ones((n, 4), np.float32), logits))
    writer.flush()


@pytest.fixture()
def hand_store(tmp_path):
    write_partition(tmp_path, "train", TRAIN_LOGITS)
    write_partition(tmp_path, "scape", SOUNDSCAPE_LOGITS)
    return tmp_path


def load(root, threshold=0.5, species_list=None):
    species = surrogate_species(LABELS)
    if species_list is not None:
        species = species.restrict(species_list)
    return load_store_labels(root, "m", species, threshold)


def test_call_rates_match_hand_counts(hand_store):
    rates = stats.call_rates(load(hand_store))
    assert rates.to_dicts() == [
        {"dataset": "train", "kind": TRAIN, "files": 2, "windows": 4, "windows_with_call": 3, "call_rate": 0.75},
        {"dataset": "scape", "kind": SOUNDSCAPE, "files": 1, "windows": 4, "windows_with_call": 2, "call_rate": 0.5},
    ]


def test_threshold_is_on_the_sigmoid(hand_store):
    # sigmoid(x) > 0.9 <=> x > 2.197: only the logit 3 (f2, w1, b) passes; the logits 2 do not.
    rates = stats.call_rates(load(hand_store, threshold=0.9))
    assert rates["windows_with_call"].to_list() == [1, 0]


def test_frequencies_ranked_by_soundscape_then_train(hand_store):
    table = stats.frequency_table(load(hand_store))
    assert table["species"].to_list() == ["c", "b", "a"]
    assert table["scape_windows"].to_list() == [2, 1, 0]
    assert table["train_windows"].to_list() == [0, 2, 2]
    assert table["scape_share"].to_list() == pytest.approx([2 / 3, 1 / 3, 0])
    assert table["train_share"].to_list() == pytest.approx([0, 0.5, 0.5])


def test_species_list_restricts_the_universe(hand_store):
    datasets = load(hand_store, species_list=["b", "zzz"])  # zzz: unknown to the model, never present
    assert stats.call_rates(datasets)["windows_with_call"].to_list() == [2, 1]
    assert stats.frequency_table(datasets)["species"].to_list() == ["b"]


def test_a_species_list_the_surrogate_does_not_know_is_refused(hand_store, tmp_path):
    with pytest.raises(SpeciesError, match="none of the 2 species"):
        run_eda(hand_store, "m", tmp_path / "out", species_list=["xxx", "yyy"])


def test_kl_divergence_against_hand_computation(hand_store):
    datasets = load(hand_store)
    table = stats.kl_table(stats.frequency_table(datasets), datasets, alpha=1.0)
    # Species order c, b, a. Soundscape counts 2, 1, 0 -> +1 -> 3/6, 2/6, 1/6;
    # train counts 0, 2, 2 -> +1 -> 1/7, 3/7, 3/7.
    p, q = [3 / 6, 2 / 6, 1 / 6], [1 / 7, 3 / 7, 3 / 7]
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert table.to_dicts() == [{"p": "scape", "q": "train", "kl_nats": pytest.approx(expected),
                                 "species": 3, "alpha": 1.0}]


def test_kl_divergence_properties():
    assert stats.kl_divergence([5, 3, 0], [5, 3, 0]) == pytest.approx(0.0)
    assert stats.kl_divergence([1, 0], [0, 1], alpha=0.0) == math.inf  # P puts mass where Q has none
    assert stats.kl_divergence([0, 1], [1, 1], alpha=0.0) == pytest.approx(math.log(2))
    # not symmetric: the direction is part of the definition
    assert stats.kl_divergence([9, 1], [5, 5]) != pytest.approx(stats.kl_divergence([5, 5], [9, 1]))


def test_file_species_sets_keep_silent_files(hand_store):
    train, scape = load(hand_store)
    assert stats.file_species_sets(train) == {"a/f1.ogg": {"a", "b"}, "b/f2.ogg": {"b"}}
    assert stats.file_species_sets(load(hand_store, threshold=0.9)[1]) == {"s1.ogg": frozenset()}
    assert stats.itemset_sizes(list(stats.file_species_sets(train).values())).to_dicts() == [
        {"species_per_recording": 0, "recordings": 0, "share": 0.0},
        {"species_per_recording": 1, "recordings": 1, "share": 0.5},
        {"species_per_recording": 2, "recordings": 1, "share": 0.5},
    ]


def test_birdnet_labels_map_through_the_taxonomy_or_fall_back_to_common_names():
    labels = ["Turdus migratorius_American Robin", "Cardinalis cardinalis_Northern Cardinal", "Engine_Engine"]
    by_code = surrogate_species(labels, {"turdus migratorius": "amerob", "cardinalis cardinalis": "norcar"})
    # BirdNET's non-species classes (engine, dog, human voice...) are never a species, so never a call
    assert (by_code.names, by_code.index.tolist(), by_code.naming) == (["amerob", "norcar"], [0, 1], "ebird")
    by_name = surrogate_species(labels)
    assert (by_name.names, by_name.naming) == (["American Robin", "Northern Cardinal"], "common name")


# ---------------------------------------------------------------- FPGrowth on hand-made baskets
BASKETS = [frozenset(b) for b in ({"a", "b"}, {"a", "b", "c"}, {"a", "b"}, {"c"}, set())]
# supports over 5 recordings: a 3/5, b 3/5, c 2/5, ab 3/5, ac 1/5, bc 1/5, abc 1/5


def test_frequent_itemsets_match_hand_counts():
    found = stats.frequent_itemsets(BASKETS, min_support=0.4)
    assert found.select("itemset", "recordings").to_dicts() == [
        {"itemset": "a + b", "recordings": 3}, {"itemset": "a", "recordings": 3},
        {"itemset": "b", "recordings": 3}, {"itemset": "c", "recordings": 2},
    ]
    assert found["support"].to_list() == pytest.approx([0.6, 0.6, 0.6, 0.4])
    every = stats.frequent_itemsets(BASKETS, min_support=0.2)
    assert dict(zip(every["itemset"], every["recordings"])) == {
        "a": 3, "b": 3, "c": 2, "a + b": 3, "a + c": 1, "b + c": 1, "a + b + c": 1}
    assert stats.frequent_itemsets(BASKETS, min_support=0.2, max_len=2)["size"].max() == 2


def test_association_rules_match_hand_computation():
    rules = stats.association_rules(stats.frequent_itemsets(BASKETS, min_support=0.2), len(BASKETS), 0.8)
    # conf(a -> b) = s(ab)/s(a) = 1; conf(a+c -> b) = s(abc)/s(ac) = 1; conf(a+b -> c) = 1/3 (dropped);
    # lift(a -> b) = 1 / s(b) = 5/3.
    assert set(zip(rules["antecedent"], rules["consequent"])) == {("a", "b"), ("b", "a"), ("a + c", "b"), ("b + c", "a")}
    assert rules["confidence"].to_list() == pytest.approx([1.0] * 4)
    assert rules["lift"].to_list() == pytest.approx([5 / 3] * 4)
    assert stats.association_rules(stats.frequent_itemsets(BASKETS, 0.2), len(BASKETS), 0.3).height > 4


def test_no_itemsets_and_no_rules_are_empty_tables():
    empty = stats.frequent_itemsets([frozenset()] * 3, min_support=0.5)
    assert empty.is_empty() and empty.columns == ["itemset", "size", "recordings", "support"]
    assert stats.association_rules(empty, 3).is_empty()


# ---------------------------------------------------------------- the report


def test_report_finds_the_planted_structure(tmp_path):
    root = write_sample_store(tmp_path / "store")
    report = run_eda(root, "toy", tmp_path / "out", options=EdaOptions(min_support=0.1))
    frequencies = report.tables["species_frequency"]
    soundscape_only = frequencies.filter(pl.col("species").is_in(list(SOUNDSCAPE_ONLY)))
    assert soundscape_only["train_windows"].to_list() == [0, 0]  # shown although no train folder has them
    assert (soundscape_only["soundscape_windows"] > 0).all()
    rules = report.tables["rules_soundscape"]
    for species, partner in ALWAYS_WITH.items():  # planted: species never calls without partner
        rule = rules.filter((pl.col("antecedent") == species) & (pl.col("consequent") == partner))
        assert rule["confidence"].to_list() == [1.0]
    rates = report.tables["call_rates"]
    assert rates["windows"].to_list() == [6 * 8 * 4, 12 * 24]
    index = report.index.read_text()
    for name in report.tables:
        assert (tmp_path / "out" / f"{name}.csv").stat().st_size > 0
        assert (tmp_path / "out" / f"{name}.md").read_text().count("|") > 0
        assert f"({name}.csv)" in index
    for path in report.figures.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({path.name})" in index
