"""Everything a run needs from the store, computed once and shared by the folds, `evaluate`
and `labels`: windows, species, the surrogate mapping, labels, and the split by file."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from birdemb.errors import UsageError
from birdemb.labels.mapping import SpeciesMapping, map_species
from birdemb.labels.schemes import has_call, make_labels
from birdemb.training import metrics
from birdemb.training.config import DataOptions, LabelOptions
from birdemb.training.split import file_groups, split_by_file
from birdemb.training.windows import Windows, choose_species, find_taxonomy, load_windows


@dataclass
class Prepared:
    windows: Windows
    species: list[str]
    mapping: SpeciesMapping
    labels: np.ndarray  # [n, S] float32 0/1
    species_logits: np.ndarray | None  # [n, S] surrogate logits in species order (-inf: lacks it)
    call: np.ndarray | None  # [n] bool: the window has a call
    groups: np.ndarray  # [n] file key


def prepare(data: DataOptions, labels: LabelOptions, needs_surrogate: bool = False) -> Prepared:
    """Load the windows and build labels. `needs_surrogate`: the caller needs surrogate logits
    even for folder labels (a warm start)."""
    windows = load_windows(data.store, data.embeddings, data.surrogate, data.datasets)
    species = choose_species(data.store, data.embeddings, windows, data.species_list, data.metadata)
    taxonomy = find_taxonomy(data.taxonomy, data.metadata)
    if windows.logits is None:
        if labels.scheme != "folder" or needs_surrogate:
            raise UsageError(f"the surrogate {data.surrogate!r} stored no logits; use a classifier model "
                             "as `surrogate`, or `labels=folder`")
        mapping = map_species(None, species, None)
    else:
        mapping = map_species(windows.surrogate_labels, species, taxonomy)
    species_logits = call = None
    if windows.logits is not None:
        species_logits = mapping.species_logits(windows.logits)
        call = has_call(mapping.call_logit(windows.logits), labels.threshold)
    rows = windows.rows
    y = make_labels(
        labels.scheme, species, species_logits, call, rows["species"].to_list(),
        rows["secondary_labels"].to_list() if labels.secondary else None, labels.threshold,
    )
    return Prepared(windows, species, mapping, y, species_logits, call, file_groups(rows))


def split(data: DataOptions, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    train_rows, val_rows = split_by_file(
        prepared.groups, prepared.windows.rows["species"].to_list(), data.val_fraction, data.seed,
        data.folds, data.fold,
    )
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise UsageError(f"the split by file left {len(train_rows)} training and {len(val_rows)} validation "
                         "windows; more files are needed (or another `val_fraction`)")
    return train_rows, val_rows


def passthrough_scores(prepared: Prepared, val_rows: np.ndarray) -> dict | None:
    """The surrogate's own mapped logits scored on the validation windows."""
    if prepared.species_logits is None:
        return None
    return metrics.score(prepared.labels[val_rows], prepared.species_logits[val_rows], prepared.species)
