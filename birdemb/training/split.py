"""The validation split by file: every window of a file falls on the same side."""
from __future__ import annotations

import numpy as np
import polars as pl

SOUNDSCAPE_STRATUM = "\0soundscape"  # files without a folder species form their own stratum


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
    everyone = sorted(stratum_of)
    if not val_groups and not (folds and folds > 1) and len(everyone) >= 2:
        # every stratum has one file (many species, few files): hold out files across strata instead
        n_val = min(max(int(round(val_fraction * len(everyone))), 1), len(everyone) - 1)
        val_groups = [everyone[i] for i in rng.permutation(len(everyone))[:n_val]]
    is_val = np.isin(groups, np.asarray(val_groups, dtype=groups.dtype))
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def file_groups(rows: pl.DataFrame) -> np.ndarray:
    """One key per (dataset, file): files of different datasets never merge."""
    return (rows["dataset"] + "/" + rows["file"]).to_numpy()
