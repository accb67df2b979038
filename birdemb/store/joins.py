"""Joins across models: one model's embeddings beside another model's logits, window by window.

The paper trains heads on one backbone's embeddings with another backbone (the surrogate)
labelling the same windows. Rows pair up on (dataset, file, window), which only means the
same audio when both partitions were cut with the same window layout from the same files;
`join` checks that first and names what differs.
"""
from __future__ import annotations

from pathlib import Path

from birdemb.store.layout import StoreError
from birdemb.store.reader import manifest, partitions, scan

SHOWN = 5  # names listed in an error before "..."
LAYOUT_KEYS = ("window_s", "min_audio_s", "hop_s")


def join(store_dir: str | Path, embeddings_model: str, logits_model: str, dataset: str | None = None):
    """A polars LazyFrame with columns dataset, file, species, window, start_s, end_s,
    embedding (from `embeddings_model`) and logits (from `logits_model`, in its manifest's
    label order), one row per window. With dataset=None, every dataset both models hold."""
    import polars as pl

    datasets = _common_datasets(store_dir, embeddings_model, logits_model, dataset)
    for name in datasets:
        _check_layouts(store_dir, embeddings_model, logits_model, name)
    left = scan(store_dir, embeddings_model).filter(pl.col("dataset").is_in(datasets))
    right = scan(store_dir, logits_model).filter(pl.col("dataset").is_in(datasets))
    _check_same_windows(left, right, embeddings_model, logits_model)
    keys = ["dataset", "file", "window"]
    return (
        left.select(*keys, "species", "start_s", "end_s", "embedding")
        .join(right.select(*keys, "logits"), on=keys, how="inner")
        .select("dataset", "file", "species", "window", "start_s", "end_s", "embedding", "logits")
        .sort(keys)
    )


def _common_datasets(store_dir, embeddings_model: str, logits_model: str, dataset: str | None) -> list[str]:
    held = {model: set() for model in (embeddings_model, logits_model)}
    for model, name, _ in partitions(store_dir):
        if model in held and (dataset is None or name == dataset):
            held[model].add(name)
    for model, names in held.items():
        if not names:
            what = f"model={model}" + (f", dataset={dataset}" if dataset else "")
            raise StoreError(f"{store_dir}: nothing to join, no partition for {what}")
    only_a = held[embeddings_model] - held[logits_model]
    only_b = held[logits_model] - held[embeddings_model]
    if only_a or only_b:
        raise StoreError(
            f"{store_dir}: the two models hold different datasets "
            f"(only in {embeddings_model}: {_names(only_a)}; only in {logits_model}: {_names(only_b)}); "
            "pass dataset= to join one"
        )
    return sorted(held[embeddings_model])


def _check_layouts(store_dir, embeddings_model: str, logits_model: str, dataset: str) -> None:
    a = manifest(store_dir, embeddings_model, dataset)
    b = manifest(store_dir, logits_model, dataset)
    if b.get("labels") is None:
        raise StoreError(f"{store_dir}: model={logits_model} has no classifier, so no logits to join")
    layout_a, layout_b = a["parameters"]["layout"], b["parameters"]["layout"]
    differences = [
        f"{key} {layout_a.get(key)} vs {layout_b.get(key)}"
        for key in LAYOUT_KEYS
        if layout_a.get(key) != layout_b.get(key)
    ]
    if differences:
        raise StoreError(
            f"{store_dir}, dataset={dataset}: {embeddings_model} and {logits_model} were cut into different "
            f"windows ({', '.join(differences)}); extract both with the same `window_s` and `min_audio_s`"
        )


def _check_same_windows(left, right, embeddings_model: str, logits_model: str) -> None:
    """Both models hold the same files, each with the same number of windows."""
    import polars as pl

    def counts(frame):
        return frame.group_by("dataset", "file").agg(pl.len().alias("windows")).collect()

    a, b = counts(left), counts(right)
    both = a.join(b, on=["dataset", "file"], how="full", suffix="_b", coalesce=True)
    only_a = both.filter(pl.col("windows_b").is_null())["file"].sort().to_list()
    only_b = both.filter(pl.col("windows").is_null())["file"].sort().to_list()
    differ = both.filter(
        pl.col("windows").is_not_null() & pl.col("windows_b").is_not_null() & (pl.col("windows") != pl.col("windows_b"))
    ).sort("file")
    problems = []
    if only_a:
        problems.append(f"{len(only_a)} files only in {embeddings_model}: {_names(only_a)}")
    if only_b:
        problems.append(f"{len(only_b)} files only in {logits_model}: {_names(only_b)}")
    if differ.height:
        shown = [
            f"{row['file']} ({embeddings_model} {row['windows']}, {logits_model} {row['windows_b']})"
            for row in differ.head(SHOWN).iter_rows(named=True)
        ]
        problems.append(
            f"{differ.height} files with different window counts: {', '.join(shown)}"
            + (" ..." if differ.height > SHOWN else "")
        )
    if problems:
        raise StoreError(f"cannot join {embeddings_model} embeddings with {logits_model} logits: {'; '.join(problems)}")


def _names(values) -> str:
    values = sorted(values)
    if not values:
        return "none"
    return ", ".join(values[:SHOWN]) + (" ..." if len(values) > SHOWN else "")
