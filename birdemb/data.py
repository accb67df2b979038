"""Stored windows -> arrays for training: embeddings from one model, surrogate logits from
another (or the same), the species list and mapping, and a validation split by file.

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

from birdemb import species as species_mod
from birdemb import store
from birdemb.errors import UsageError

ROW_COLUMNS = ["dataset", "file", "window", "species", "secondary_labels"]
TAXONOMY_FILE = "eBird_Taxonomy_v2021.csv"
SOUNDSCAPE_STRATUM = "\0soundscape"  # files without a folder species form their own stratum


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
        return store.scan(store_dir, embeddings, dataset).select(*ROW_COLUMNS, "embedding", "logits").collect()
    from birdemb.joins import join

    joined = join(store_dir, embeddings, surrogate, dataset)
    if isinstance(joined, pl.LazyFrame):
        joined = joined.collect()
    if "secondary_labels" not in joined.columns:  # joins.join leaves out the metadata labels
        keys = ["dataset", "file", "window"]
        secondary = store.scan(store_dir, embeddings, dataset).select(*keys, "secondary_labels").collect()
        joined = joined.join(secondary, on=keys, how="left", maintain_order="left")
    # a join's row order is not guaranteed; a fixed order keeps seeded runs identical
    return joined.select(*ROW_COLUMNS, "embedding", "logits").sort(["file", "window"])


def load_windows(store_dir, embeddings: str, surrogate: str, datasets: list[str] | None = None) -> Windows:
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


# ---------------------------------------------------------------- species and mapping


def choose_species(store_dir, embeddings: str, windows: Windows, species_list=None, metadata=None) -> list[str]:
    """--species-list, else the metadata's primary labels, else the species of the store's
    `train` rows (folders / primary labels), else of the rows loaded."""
    if species_list:
        return species_mod.read_species_list(species_list)
    if metadata:
        return species_mod.species_from_metadata(metadata)
    if "train" in store_datasets(store_dir, embeddings):
        values = store.scan(store_dir, embeddings, "train").select("species").unique().collect()["species"]
    else:
        values = windows.rows["species"]
    found = species_mod.species_from_values(values.to_list())
    if not found:
        raise UsageError("no species list: the rows have no folder species; give --species-list or --metadata")
    return found


def find_taxonomy(taxonomy=None, metadata=None) -> dict[str, str] | None:
    if taxonomy:
        return species_mod.read_taxonomy(taxonomy)
    if metadata and (Path(metadata).parent / TAXONOMY_FILE).is_file():
        return species_mod.read_taxonomy(Path(metadata).parent / TAXONOMY_FILE)
    return None


@dataclass
class Mapping:
    index: np.ndarray  # species j -> surrogate logit column, -1 when the surrogate lacks it
    bird_columns: np.ndarray  # surrogate columns with an eBird code (what counts as "a call")
    report: str

    def as_dict(self, species: list[str]) -> dict:
        return {
            "matched": int((self.index >= 0).sum()),
            "species": len(species),
            "missing": [s for s, i in zip(species, self.index) if i < 0],
            "report": self.report,
        }


def map_surrogate(surrogate_labels: list[str] | None, species: list[str], taxonomy: dict | None) -> Mapping:
    if not surrogate_labels:
        return Mapping(np.full(len(species), -1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                       "the surrogate has no classifier: no species mapped")
    codes = species_mod.label_codes(surrogate_labels, taxonomy)
    if taxonomy is None and any(code is None for code in codes):
        raise UsageError("the surrogate's labels are scientific names (BirdNET): map them to eBird codes with "
                         f"--taxonomy {TAXONOMY_FILE} (or put it beside --metadata)")
    index = species_mod.label_index(surrogate_labels, species, taxonomy)
    # with a taxonomy, only its codes are birds (BirdNET's "Engine_Engine" maps to itself otherwise)
    bird_codes = set(taxonomy.values()) if taxonomy else None
    birds = np.asarray([j for j, code in enumerate(codes)
                        if code is not None and (bird_codes is None or code in bird_codes)], dtype=np.int64)
    return Mapping(index, birds, species_mod.mapping_report(index, species))


def bird_max_logit(logits: np.ndarray, bird_columns: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Per window, the max logit over the surrogate's bird labels (chunked: a gather of
    6,522 columns at once would copy the whole logit matrix)."""
    out = np.full(len(logits), -np.inf, dtype=np.float32)
    if len(bird_columns) == 0:
        return out
    for start in range(0, len(logits), chunk):
        out[start:start + chunk] = logits[start:start + chunk][:, bird_columns].max(axis=1)
    return out


# ---------------------------------------------------------------- split by file


def split_by_file(groups: np.ndarray, strata: list, val_fraction: float = 0.2, seed: int = 0,
                  folds: int = 0, fold: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): every window of a file falls on the same side.

    Files are shuffled (seeded) within each stratum (folder species; soundscapes together),
    so each species keeps about `val_fraction` of its files for validation. With `folds` > 1,
    files are dealt round-robin into folds and fold `fold` is the validation set."""
    groups = np.asarray(groups)
    stratum_of: dict[str, str] = {}
    for group, stratum in zip(groups.tolist(), strata):
        stratum_of.setdefault(group, SOUNDSCAPE_STRATUM if stratum is None else stratum)
    by_stratum: dict[str, list[str]] = {}
    for group, stratum in stratum_of.items():
        by_stratum.setdefault(stratum, []).append(group)
    rng = np.random.default_rng(seed)
    val_groups: list[str] = []
    dealt = 0
    for stratum in sorted(by_stratum):
        members = sorted(by_stratum[stratum])
        members = [members[i] for i in rng.permutation(len(members))]
        if folds and folds > 1:
            val_groups += [g for k, g in enumerate(members) if (dealt + k) % folds == fold]
            dealt += len(members)
        else:
            n_val = int(round(val_fraction * len(members)))
            if len(members) >= 2:
                n_val = min(max(n_val, 1), len(members) - 1)  # both sides get each species
            val_groups += members[:n_val]
    is_val = np.isin(groups, np.asarray(val_groups, dtype=groups.dtype))
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def file_groups(rows: pl.DataFrame) -> np.ndarray:
    """One key per (dataset, file): files of different datasets never merge."""
    return (rows["dataset"] + "/" + rows["file"]).to_numpy()


# ---------------------------------------------------------------- batches


class IndexBatches(torch.utils.data.Dataset):
    """dataset[index list] -> (x[index], y[index]): one gather per batch, no subset copies."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: torch.Tensor):
        return self.x[index], self.y[index]


class RowBatches:
    """Batches of row indices as int64 tensors: shuffled by a seeded generator each epoch, or
    in order. (torch's samplers yield one Python int per row, which costs more than the step.)"""

    def __init__(self, rows: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0):
        self.rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.rows) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        rows = self.rows[torch.randperm(len(self.rows), generator=self.generator)] if self.shuffle else self.rows
        return iter(rows.split(self.batch_size))


def batch_loader(x: torch.Tensor, y: torch.Tensor, rows: np.ndarray, batch_size: int,
                 shuffle: bool, seed: int = 0) -> torch.utils.data.DataLoader:
    from torch.utils.data import DataLoader

    return DataLoader(IndexBatches(x, y), sampler=RowBatches(rows, batch_size, shuffle, seed),
                      batch_size=None, num_workers=0)
