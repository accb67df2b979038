"""Which species the surrogate hears in each stored window, for exploration.

Pseudo-labels are sigmoid(logit) > threshold on the surrogate's raw logits, mapped to species
names through birdemb.labels.mapping (the one mapping training uses too). They are kept as a
sparse list of hits (file, window, species), never as a dense windows x labels matrix: a
BirdNET store has 6,522 labels per window and millions of windows.

Species names:
  - Perch-style labels are eBird codes already.
  - BirdNET labels ("Scientific_Common") become eBird codes through the taxonomy
    (eBird_Taxonomy_v2021.csv); labels the taxonomy does not know are left out.
  - BirdNET without a taxonomy falls back to BirdNET's common name (e.g. "American Robin"),
    so exploration still works; train folders use eBird codes, so pass --taxonomy to compare
    pseudo-labels with folder labels or to use an eBird --species-list.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from birdemb import store
from birdemb.labels.mapping import SpeciesMapping
from birdemb.labels.schemes import pseudo_labels
from birdemb.labels.species import SpeciesError

TRAIN, SOUNDSCAPE = "train", "soundscape"
CELLS_PER_CHUNK = 5_000_000  # logits held in memory at once (sigmoid in float64: ~40 MB a copy)


@dataclass
class DatasetLabels:
    """Pseudo-labels of one dataset: every file, the window count, and the sparse hits."""

    dataset: str
    kind: str  # TRAIN (rows carry a folder species) or SOUNDSCAPE (species is null)
    files: list[str]
    windows: int
    windows_with_call: int
    hits: pl.DataFrame = field(repr=False)  # columns file, window, species: one row per pseudo-label


def load_dataset_labels(store_dir, surrogate: str, dataset: str, species: SpeciesMapping, threshold: float) -> DatasetLabels:
    """Read one dataset's logits in chunks and keep only the pseudo-label hits. The dataset is
    TRAIN if its rows carry a folder species, else SOUNDSCAPE."""
    names = np.asarray(species.names, dtype=object)
    n_labels = len(store.manifest(store_dir, surrogate, dataset)["labels"])
    chunk_rows = max(256, CELLS_PER_CHUNK // max(1, n_labels))
    frame = store.scan(store_dir, surrogate, dataset).select("file", "window", "species", "logits")
    files: set[str] = set()
    labelled = False
    windows = with_call = 0
    hit_parts = []
    for chunk in frame.collect_batches(chunk_size=chunk_rows):
        if chunk["logits"].null_count():
            raise SpeciesError(f"{surrogate} stores no logits (dataset {dataset}); choose a surrogate with a classifier")
        present = pseudo_labels(species.species_logits(chunk["logits"].to_numpy()), threshold)
        files.update(chunk["file"].unique().to_list())
        labelled = labelled or chunk["species"].is_not_null().any()
        windows += chunk.height
        with_call += int(present.any(axis=1).sum())
        rows, cols = np.nonzero(present)
        hit_parts.append(pl.DataFrame({
            "file": chunk["file"].gather(rows),
            "window": chunk["window"].gather(rows),
            "species": pl.Series(names[cols].tolist(), dtype=pl.String),
        }))
    hits = pl.concat(hit_parts) if hit_parts else pl.DataFrame(schema={"file": pl.String, "window": pl.Int32, "species": pl.String})
    return DatasetLabels(dataset, TRAIN if labelled else SOUNDSCAPE, sorted(files), windows, with_call, hits)


def load_store_labels(store_dir, surrogate: str, species: SpeciesMapping, threshold: float) -> list[DatasetLabels]:
    """Pseudo-labels of every dataset the surrogate has in the store, train datasets first."""
    datasets = [d for model, d, _ in store.partitions(store_dir) if model == surrogate]
    if not datasets:
        raise store.StoreError(f"{store_dir}: no datasets for model={surrogate}")
    loaded = [load_dataset_labels(store_dir, surrogate, d, species, threshold) for d in datasets]
    return sorted(loaded, key=lambda d: (d.kind != TRAIN, d.dataset))
