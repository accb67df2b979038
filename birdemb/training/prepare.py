"""Everything a run needs from the store, computed once and shared by the folds, `evaluate`
and `labels`: windows, species, the surrogate mapping, training labels, ground truth (folder
labels of the files, or annotations), and the split by file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from birdemb.errors import UsageError
from birdemb.labels.annotations import Event, events_to_windows, read_annotations
from birdemb.labels.folders import folder_matrices
from birdemb.labels.mapping import SpeciesMapping, map_species
from birdemb.labels.schemes import has_call, make_labels, secondary_matrix
from birdemb.runtime.head import HeadWeights, head_logits
from birdemb.training import metrics
from birdemb.training.config import DataOptions, LabelOptions
from birdemb.training.split import file_groups, split_by_file
from birdemb.training.windows import Windows, choose_species, find_taxonomy, load_windows, screen_windows

FOLDER_TRUTH, ANNOTATION_TRUTH = "folder labels", "annotations"


@dataclass
class Prepared:
    windows: Windows
    species: list[str]
    mapping: SpeciesMapping
    labels: np.ndarray  # [n, S] float32 0/1: the training targets of the label scheme
    species_logits: np.ndarray | None  # [n, S] surrogate logits in species order (-inf: lacks it)
    call: np.ndarray | None  # [n] bool: the window has a call
    groups: np.ndarray  # [n] file key
    usable: np.ndarray  # [n] bool: windows the scheme labels (annotations: annotated files only)
    truth: np.ndarray | None = None  # [n, S] ground truth where known (truth_rows)
    truth_rows: np.ndarray | None = None  # [n] bool
    truth_source: str | None = None  # FOLDER_TRUTH or ANNOTATION_TRUTH
    bad_windows: int = 0  # stored windows left out: their embedding or logits hold NaN or inf


def prepare(data: DataOptions, labels: LabelOptions, needs_surrogate: bool = False) -> Prepared:
    """Load the windows and build labels and ground truth. `needs_surrogate`: the caller needs
    the surrogate's mapping even for folder labels (a warm start from its classifier)."""
    check_options(labels)
    windows = load_windows(data.store, data.embeddings, data.surrogate, data.datasets)
    windows, bad_windows = screen_windows(windows, data.bad_windows, data.store)
    species = choose_species(data.store, data.embeddings, windows, data.species_list, data.metadata)
    taxonomy = find_taxonomy(data.taxonomy, data.metadata)
    uses_logits = labels.scheme in ("species", "pseudo")
    if windows.logits is None and (uses_logits or needs_surrogate):
        raise UsageError(f"the surrogate {data.surrogate!r} stored no logits; use a classifier model "
                         "as `surrogate`, or `labels=folder`")
    surrogate_labels = windows.surrogate_labels if windows.logits is not None else None
    mapping = map_species(surrogate_labels, species, taxonomy, required=uses_logits)
    species_logits = call = None
    if windows.logits is not None and (mapping.index >= 0).any():
        species_logits = mapping.species_logits(windows.logits)
        call = has_call(mapping.call_logit(windows.logits, labels.call_rule), labels.threshold)
    rows = windows.rows
    folders = rows["species"].to_list()
    secondary = rows["secondary_labels"].to_list() if labels.secondary else None
    truth, truth_rows, source = folder_truth(folders, species, secondary)
    usable = np.ones(rows.height, dtype=bool)
    if labels.annotations:
        events = read_annotations(labels.annotations, taxonomy=taxonomy)
        truth, truth_rows = events_to_windows(match_files(events, rows["file"].to_list()), rows["file"].to_list(),
                                              rows["start_s"].to_numpy(), rows["end_s"].to_numpy(), species)
        source = ANNOTATION_TRUTH
        if not truth_rows.any():
            raise UsageError(f"{labels.annotations}: no annotated file is in the store's rows")
    if labels.scheme == "annotations":
        if not labels.annotations:
            raise UsageError("`labels=annotations` needs `annotations` (a file or folder of annotations)")
        y, usable = truth.astype(np.float32), truth_rows.copy()
    else:
        y = make_labels(labels.scheme, species, species_logits, call, folders, secondary, labels.threshold)
    return Prepared(windows, species, mapping, y, species_logits, call, file_groups(rows), usable,
                    truth, truth_rows, source, bad_windows)


def check_options(labels: LabelOptions) -> None:
    if not 0 < labels.threshold < 1:
        raise UsageError(f"`threshold` must be a probability between 0 and 1 (got {labels.threshold:g})")


def check_training_labels(prepared: Prepared, labels: LabelOptions, train_rows: np.ndarray) -> None:
    """UsageError when the training windows hold no positive label at all (or no negative):
    there is nothing to learn. A single species without a positive is fine (metrics skip it)."""
    y = prepared.labels[train_rows] > 0.5
    missing = "positive" if not y.any() else "negative" if y.all() else None
    if missing:
        source = f"`labels={labels.scheme}`" + (f" with `threshold={labels.threshold:g}`"
                                                if labels.scheme in ("species", "pseudo") else "")
        raise UsageError(f"{source} gives no {missing} label on any of the {len(train_rows)} training windows; "
                         "nothing to learn (try another label scheme or threshold)")


def folder_truth(folders: list, species: list[str], secondary=None):
    """Ground truth from folder names: a window's folder species (multi-label folders, known
    negatives and noise folders as their conventions say); None where no row has a folder."""
    positive, _, _ = folder_matrices(folders, species)
    if secondary is not None:
        positive |= secondary_matrix(secondary, species)
    known = np.asarray([folder is not None for folder in folders], dtype=bool)
    if not known.any():
        return None, None, None
    return positive.astype(np.float32), known, FOLDER_TRUTH


def match_files(events: list[Event], stored: list[str]) -> list[Event]:
    """Events whose file is not a stored path are matched to the one stored file with the same
    name (annotation tools often record only the name, or an absolute path)."""
    known = set(stored)
    by_name: dict[str, list[str]] = {}
    for file in known:
        by_name.setdefault(PurePosixPath(file).name, []).append(file)
    matched = []
    for event in events:
        file = event.file.replace("\\", "/")
        if file not in known:
            candidates = by_name.get(PurePosixPath(file).name, [])
            file = candidates[0] if len(candidates) == 1 else file
        matched.append(Event(file, event.start_s, event.end_s, event.label))
    return matched


def split(data: DataOptions, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) by file, over the windows the scheme labels."""
    usable = np.flatnonzero(prepared.usable)
    strata = prepared.windows.rows["species"].to_list()  # the folder: each keeps its share of files
    train_rows, val_rows = split_by_file(prepared.groups[usable], [strata[i] for i in usable], data.val_fraction,
                                         data.seed, data.folds, data.fold)
    train_rows, val_rows = usable[train_rows], usable[val_rows]
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise UsageError(f"the split by file left {len(train_rows)} training and {len(val_rows)} validation "
                         "windows; more files are needed (or another `val_fraction`)")
    return train_rows, val_rows


def validation_target(prepared: Prepared, val_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(rows, targets, what they are) for model selection: ground truth of the held-out
    windows where it is known, else the scheme's own labels (agreement with the surrogate)."""
    if prepared.truth is not None:
        known = val_rows[prepared.truth_rows[val_rows]]
        if len(known) and metrics.scored_species(prepared.truth[known]).any():
            return known, prepared.truth[known], prepared.truth_source
    return val_rows, prepared.labels[val_rows], "training labels"


def passthrough_scores(prepared: Prepared, rows: np.ndarray, target: np.ndarray) -> dict | None:
    """The surrogate's own mapped logits scored on `rows` against `target`."""
    if prepared.species_logits is None:
        return None
    return metrics.score(target, prepared.species_logits[rows], prepared.species)


def head_scores(head: HeadWeights, prepared: Prepared, rows: np.ndarray) -> np.ndarray:
    """A head's logits on stored windows, as inference computes them (adding the surrogate's
    stored logits where the head does)."""
    windows = prepared.windows
    if head.uses_backbone_logits and windows.logits is None:
        raise UsageError("the head adds the surrogate's own logits, and these rows have none")
    logits = windows.logits[rows] if head.uses_backbone_logits else None
    return head_logits(head, windows.embeddings[rows], logits)
