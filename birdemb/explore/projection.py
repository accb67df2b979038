"""PaCMAP 2-D projections of stored embeddings and logits (the paper's Figures 1 and 5).

Points are labelled by their folder species where the dataset has one (train), else by the
model's own top pseudo-label (soundscapes). A seed fixes both the sample and PaCMAP, and
`max_points` caps the sample so a projection stays under a minute on a laptop CPU.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from birdemb import store
from birdemb.errors import BirdembError
from birdemb.labels.mapping import SpeciesMapping, surrogate_species
from birdemb.labels.schemes import pseudo_labels

OTHER = "other"  # files outside the top-N species or without a call: drawn in grey
MIN_POINTS = 8  # PaCMAP needs a few neighbours per point
CELLS_PER_CHUNK = 20_000_000


class ProjectionError(BirdembError, ValueError):
    """Too few points to project, or nothing to colour them by."""


@dataclass
class Projection:
    points: np.ndarray  # [n, 2] float32
    labels: list[str]
    title: str


def pacmap_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """PaCMAP of [n, d] vectors to [n, 2], deterministic for a given seed."""
    import pacmap

    logging.getLogger("pacmap").setLevel(logging.ERROR)  # its size warnings are expected on small sets
    vectors = np.asarray(vectors, dtype=np.float32)
    n = vectors.shape[0]
    if n < MIN_POINTS:
        raise ProjectionError(f"PaCMAP needs at least {MIN_POINTS} points, got {n}")
    # Default 10 neighbours; fewer on tiny sets, where PaCMAP would otherwise ask for more than exist.
    reducer = pacmap.PaCMAP(n_components=2, n_neighbors=min(10, n // 2), random_state=seed,
                            apply_pca=vectors.shape[1] > 100, verbose=False)
    return reducer.fit_transform(vectors, init="pca").astype(np.float32)


def sample_indices(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """At most max_points of range(n), uniformly at random under the seed, in ascending order."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def keep_top(labels: list[str | None], top_n: int) -> list[str]:
    """The top_n most frequent labels stay; the rest, and missing labels, become OTHER."""
    counts: dict[str, int] = {}
    for label in labels:
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    top = set(sorted(counts, key=lambda s: (-counts[s], s))[:top_n])
    return [label if label in top else OTHER for label in labels]


def _model_species(store_dir, model: str, dataset: str, taxonomy) -> SpeciesMapping:
    return surrogate_species(store.manifest(store_dir, model, dataset)["labels"], taxonomy)


def top_call(logits: np.ndarray, species: SpeciesMapping, threshold: float) -> list[str | None]:
    """Per row, the species with the highest logit if its sigmoid passes the threshold."""
    scores = species.species_logits(logits)
    best = scores.argmax(axis=1)
    passed = pseudo_labels(scores[np.arange(len(best)), best], threshold)
    return [species.names[j] if ok else None for j, ok in zip(best, passed)]


def _has_species(frame: pl.LazyFrame) -> bool:
    return bool(frame.select(pl.col("species").is_not_null().any()).collect().item())


def _chunks(frame: pl.LazyFrame, width: int):
    return frame.collect_batches(chunk_size=max(256, CELLS_PER_CHUNK // max(1, width)))


def window_projection(store_dir, model: str, dataset: str, top_n: int = 10, max_points: int = 20_000,
                      seed: int = 0, taxonomy: dict[str, str] | None = None, threshold: float = 0.5) -> Projection:
    """Per-window embeddings of the top_n species (Figure 1): windows of other species and
    windows without a call are left out, then at most max_points windows are projected."""
    frame = store.scan(store_dir, model, dataset).with_row_index("row")
    if _has_species(frame):
        labelled = frame.select("row", "species").collect()
        rows, labels = labelled["row"].to_numpy(), labelled["species"].to_list()
        source = "folder species"
    else:
        species = _model_species(store_dir, model, dataset, taxonomy)
        rows, labels = [], []
        for chunk in _chunks(frame.select("row", "logits"), len(species.names)):
            if chunk["logits"].null_count():
                raise ProjectionError(f"{dataset} has no folder species and {model} no logits: nothing to colour by")
            rows.append(chunk["row"].to_numpy())
            labels += top_call(chunk["logits"].to_numpy(), species, threshold)
        rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        source = f"{model} top pseudo-label > {threshold}"
    labels = keep_top(labels, top_n)
    chosen = np.asarray([i for i, label in enumerate(labels) if label != OTHER], dtype=np.int64)
    chosen = chosen[sample_indices(len(chosen), max_points, seed)]
    wanted = pl.Series(rows[chosen]).cast(pl.UInt32)
    embeddings = frame.filter(pl.col("row").is_in(wanted.implode())).select("row", "embedding").sort("row").collect()
    points = pacmap_2d(embeddings["embedding"].to_numpy(), seed)
    title = f"{model} embeddings of {len(chosen)} {dataset} windows, top {top_n} species ({source})"
    return Projection(points, [labels[i] for i in chosen], title)


def file_vectors(store_dir, model: str, dataset: str, files: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Per file (in the given order): mean of its window embeddings, max of its window logits
    (None for a model without logits)."""
    position = {f: i for i, f in enumerate(files)}
    frame = store.scan(store_dir, model, dataset).filter(pl.col("file").is_in(pl.Series(files).implode()))
    dim = store.manifest(store_dir, model, dataset).get("embedding_dim") or 1
    sums = counts = maxima = None
    for chunk in _chunks(frame.select("file", "embedding", "logits"), dim):
        index = np.asarray([position[f] for f in chunk["file"].to_list()])
        embedding = chunk["embedding"].to_numpy().astype(np.float64)
        if sums is None:
            sums = np.zeros((len(files), embedding.shape[1]))
            counts = np.zeros(len(files))
        np.add.at(sums, index, embedding)
        np.add.at(counts, index, 1)
        if not chunk["logits"].null_count():
            logits = chunk["logits"].to_numpy()
            if maxima is None:
                maxima = np.full((len(files), logits.shape[1]), -np.inf, dtype=np.float32)
            np.maximum.at(maxima, index, logits)
    return (sums / counts[:, None]).astype(np.float32), maxima


def file_projections(store_dir, model: str, dataset: str, top_n: int = 10, max_points: int = 20_000,
                     seed: int = 0, taxonomy: dict[str, str] | None = None, threshold: float = 0.5) -> list[Projection]:
    """Per-file vectors (Figure 5): PaCMAP of mean embeddings and, if the model has logits, of
    max logits; files coloured by their top_n species, others grey."""
    frame = store.scan(store_dir, model, dataset)
    per_file = frame.group_by("file").agg(pl.col("species").first()).sort("file").collect()
    files = per_file["file"].to_list()
    files = [files[i] for i in sample_indices(len(files), max_points, seed)]
    mean_embedding, max_logits = file_vectors(store_dir, model, dataset, files)
    if _has_species(frame):
        species_of = dict(zip(per_file["file"].to_list(), per_file["species"].to_list()))
        labels, source = [species_of[f] for f in files], "folder species"
    elif max_logits is not None:
        labels = top_call(max_logits, _model_species(store_dir, model, dataset, taxonomy), threshold)
        source = f"top pseudo-label > {threshold}"
    else:
        labels, source = [None] * len(files), "no labels"
    labels = keep_top(labels, top_n)
    projections = [Projection(pacmap_2d(mean_embedding, seed), labels, f"mean embedding per file ({len(files)} files)")]
    if max_logits is not None:
        projections.append(Projection(pacmap_2d(max_logits, seed), labels, f"max logits per file ({len(files)} files)"))
    for p in projections:
        p.title += f"\n{model}, {dataset}, coloured by {source}"
    return projections
