"""Stored windows -> arrays for training: embeddings from one model, surrogate logits from
another (or the same), and the species list.

Copies: the embedding column is read from Parquet into Arrow buffers, rechunked once into
one contiguous buffer (the only copy, and none when the rows sit in one chunk), then viewed
as numpy (`to_numpy()` on a fixed-size list is zero-copy) and as torch (`from_numpy`).
Training batches gather rows by index, so train/validation subsets are never materialised.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from birdemb import store
from birdemb.errors import UsageError
from birdemb.labels import species as species_mod
from birdemb.labels.folders import folder_species
from birdemb.labels.mapping import TAXONOMY_FILE
from birdemb.training.config import BAD_WINDOWS

ROW_COLUMNS = ["dataset", "file", "window", "start_s", "end_s", "species", "secondary_labels"]


@dataclass
class Windows:
    rows: pl.DataFrame  # ROW_COLUMNS, one row per (dataset, file, window)
    embeddings: np.ndarray  # [n, dim] float32, a read-only view of the Arrow buffer
    logits: np.ndarray | None  # [n, L] the surrogate's raw logits, its own label order
    embedding_manifest: dict  # manifest of the embedding partition (identity and layout)
    surrogate_labels: list[str] | None
    datasets: list[str]


def array_view(column: pl.Series) -> np.ndarray:
    """A polars Array column as a 2-D numpy view: at most one copy (the rechunk)."""
    if column.n_chunks() > 1:
        column = column.rechunk()
    return column.to_numpy()


def tensor_view(array: np.ndarray) -> torch.Tensor:
    """torch over the same memory (read-only arrays are never written through)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "non-writable array": we only read it
        return torch.from_numpy(array)


def store_datasets(store_dir: str | Path, model: str) -> list[str]:
    return [d for m, d, _ in store.partitions(store_dir) if m == model]


def _rows_for(store_dir, embeddings: str, surrogate: str, dataset: str) -> pl.DataFrame:
    """One dataset's rows with `embedding` from one model and `logits` from the surrogate."""
    if embeddings == surrogate:
        return store.collect(store.scan(store_dir, embeddings, dataset).select(*ROW_COLUMNS, "embedding", "logits"),
                             store_dir, embeddings, dataset)
    joined = store.join(store_dir, embeddings, surrogate, dataset)
    if isinstance(joined, pl.LazyFrame):
        try:
            joined = joined.collect()
        except Exception:  # name a damaged part of either model, if that is why
            for model in (embeddings, surrogate):
                store.collect(store.scan(store_dir, model, dataset), store_dir, model, dataset)
            raise
    if "secondary_labels" not in joined.columns:  # joins.join leaves out the metadata labels
        keys = ["dataset", "file", "window"]
        secondary = store.collect(store.scan(store_dir, embeddings, dataset).select(*keys, "secondary_labels"),
                                  store_dir, embeddings, dataset)
        joined = joined.join(secondary, on=keys, how="left", maintain_order="left")
    # a join's row order is not guaranteed; a fixed order keeps seeded runs identical
    return joined.select(*ROW_COLUMNS, "embedding", "logits").sort(["file", "window"])


def check_models(store_dir, embeddings: str, surrogate: str) -> None:
    """UsageError listing the store's models when `embeddings` or `surrogate` is not one."""
    models = sorted({model for model, _, _ in store.partitions(store_dir)})
    for name, model in (("embeddings", embeddings), ("surrogate", surrogate)):
        if model not in models:
            raise UsageError(f"{store_dir}: the store has no model {model!r} for `{name}` (its models: "
                             f"{', '.join(models) or 'none'})")


def load_windows(store_dir, embeddings: str, surrogate: str, datasets: list[str] | None = None) -> Windows:
    check_models(store_dir, embeddings, surrogate)
    available = store_datasets(store_dir, embeddings)
    datasets = list(datasets or available)
    unknown = [d for d in datasets if d not in available]
    if unknown:
        raise UsageError(f"{store_dir}: no {embeddings} rows for dataset(s) {', '.join(unknown)} "
                         f"(found: {', '.join(available) or 'none'})")
    frames = [_rows_for(store_dir, embeddings, surrogate, d) for d in datasets]
    frame = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    if frame.height == 0:
        raise UsageError(f"{store_dir}: no windows with both {embeddings} embeddings and {surrogate} logits")
    manifests = [store.manifest(store_dir, embeddings, d) for d in datasets]
    layouts = {str(m["layout"]) for m in manifests}
    if len(layouts) > 1:
        raise UsageError(f"datasets {', '.join(datasets)} were extracted with different window layouts")
    surrogate_manifest = store.manifest(store_dir, surrogate, datasets[0])
    logits_column = frame["logits"]
    has_logits = logits_column.dtype != pl.Null and logits_column.null_count() < frame.height
    return Windows(
        rows=frame.select(ROW_COLUMNS),
        embeddings=array_view(frame["embedding"]),
        logits=array_view(logits_column) if has_logits else None,
        embedding_manifest=manifests[0],
        surrogate_labels=surrogate_manifest.get("labels"),
        datasets=datasets,
    )


# ---------------------------------------------------------------- windows that hold NaN

SHOWN_BAD_WINDOWS = 3  # named in the message; the rest are counted


class BadWindowsWarning(UserWarning):
    """Stored windows left out because their embedding or logits hold NaN or infinite values."""


def _nonfinite(array: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (holds NaN, holds an infinity); all False without the array."""
    if array is None:
        return np.zeros(n, bool), np.zeros(n, bool)
    return np.isnan(array).any(axis=1), np.isinf(array).any(axis=1)


def bad_window_mask(windows: Windows) -> tuple[np.ndarray, list[str]]:
    """([n] bool: the window's embedding or surrogate logits hold NaN or +-inf, the reasons
    of the first SHOWN_BAD_WINDOWS, e.g. "train/amerob/x.ogg window 3: embedding holds NaN")."""
    n = len(windows.embeddings)
    checks = [(what, *_nonfinite(array, n)) for what, array in (("embedding holds", windows.embeddings),
                                                                ("surrogate logits hold", windows.logits))]
    bad = np.zeros(n, bool)
    for _, nan, inf in checks:
        bad |= nan | inf
    reasons = []
    for i in np.flatnonzero(bad)[:SHOWN_BAD_WINDOWS]:
        row = windows.rows.row(int(i), named=True)
        found = [f"{what} {'NaN' if nan[i] else 'infinite values'}" for what, nan, inf in checks
                 if nan[i] or inf[i]]
        reasons.append(f"{row['dataset']}/{row['file']} window {row['window']}: {' and '.join(found)}")
    return bad, reasons


def screen_windows(windows: Windows, policy: str = "skip", where="the store") -> tuple[Windows, int]:
    """(the windows without those holding NaN or infinite values, how many were left out).
    `policy` skip warns (BadWindowsWarning) naming the first few; error raises UsageError."""
    if policy not in BAD_WINDOWS:
        raise UsageError(f"`bad_windows` must be one of {', '.join(BAD_WINDOWS)}")
    bad, reasons = bad_window_mask(windows)
    count = int(bad.sum())
    if not count:
        return windows, 0
    listed = "; ".join(reasons) + (f"; and {count - len(reasons)} more" if count > len(reasons) else "")
    summary = f"{where}: {count} of {len(bad)} windows hold NaN or infinite values ({listed})"
    if policy == "error" or count == len(bad):
        raise UsageError(summary + ("; every window is bad" if count == len(bad) else
                                    "; `bad_windows=skip` leaves them out"))
    warnings.warn(summary + "; left out of training and evaluation", BadWindowsWarning, stacklevel=2)
    keep = ~bad
    return Windows(
        rows=windows.rows.filter(pl.Series(keep)),
        embeddings=windows.embeddings[keep],
        logits=None if windows.logits is None else windows.logits[keep],
        embedding_manifest=windows.embedding_manifest,
        surrogate_labels=windows.surrogate_labels,
        datasets=windows.datasets,
    ), count


# ---------------------------------------------------------------- species and mapping


def choose_species(store_dir, embeddings: str, windows: Windows, species_list=None, metadata=None) -> list[str]:
    """--species-list, else the metadata's primary labels, else the species of the store's
    `train` rows (folders / primary labels), else of the rows loaded."""
    if species_list:
        return species_mod.read_species_list(species_list)
    if metadata:
        return species_mod.species_from_metadata(metadata)
    if "train" in store_datasets(store_dir, embeddings):
        values = store.collect(store.scan(store_dir, embeddings, "train").select("species").unique(), store_dir,
                               embeddings, "train")["species"]
    else:
        values = windows.rows["species"]
    found = folder_species(values.to_list())
    if not found:
        raise UsageError("no species list: the rows have no folder species; give `species_list` or `metadata`")
    return found


def find_taxonomy(taxonomy=None, metadata=None) -> dict[str, str] | None:
    if taxonomy:
        return species_mod.read_taxonomy(taxonomy)
    if metadata and (Path(metadata).parent / TAXONOMY_FILE).is_file():
        return species_mod.read_taxonomy(Path(metadata).parent / TAXONOMY_FILE)
    return None
