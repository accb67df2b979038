"""Folder-name conventions of BirdNET-Analyzer's trainer, read from the store's `species` column.

- `a` : the recording is a positive for species a;
- `a,b` : multi-label, a positive for both;
- `-a` : a known negative for a (no positives); `b,-a` : positive for b, negative for a;
- `noise`, `background`, `other`, `silence` (any case, also with a `-` prefix): a non-event class,
  never a species and never a positive.

Whitespace around items is stripped and empty items are ignored. None (a soundscape: no folder)
has no folder label.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from birdemb.errors import BirdembError

NON_EVENT = ("noise", "background", "other", "silence")


class FolderError(BirdembError):
    """A folder name whose labels contradict each other."""


@dataclass(frozen=True)
class FolderLabel:
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    non_event: bool


@lru_cache(maxsize=65536)
def _parse(name: str) -> FolderLabel | None:
    positives: list[str] = []
    negatives: list[str] = []
    non_event = False
    for item in name.split(","):
        item = item.strip()
        negative = item.startswith("-")
        code = item[1:].strip() if negative else item
        if not code:
            continue
        if code.lower() in NON_EVENT:
            non_event = True
        elif code not in (negatives if negative else positives):
            (negatives if negative else positives).append(code)
    if not (positives or negatives or non_event):
        return None
    both = sorted(set(positives) & set(negatives))
    if both:
        raise FolderError(f"folder {name!r}: {', '.join(both)} is both a positive and a negative ('-' prefix)")
    return FolderLabel(tuple(positives), tuple(negatives), non_event)


def parse_folder(name: str | None) -> FolderLabel | None:
    """The labels of one folder name; None for None (soundscapes) and for a name with no items."""
    if not isinstance(name, str):
        return None
    return _parse(name)


def folder_species(values) -> list[str]:
    """Sorted unique positive species over folder names (negatives and non-event classes are
    not species): ["amerob", "amerob,norcar", "-blujay", "Noise", None] -> ["amerob", "norcar"]."""
    found: set[str] = set()
    for value in set(v for v in values if isinstance(v, str)):
        label = _parse(value)
        if label is not None:
            found.update(label.positives)
    return sorted(found)


def folder_matrices(values, species) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positive [n, S] bool, negative [n, S] bool, non_event [n] bool) of folder names against
    `species`; species outside the list are ignored. Each distinct name is parsed once."""
    column = {code: j for j, code in enumerate(species)}
    distinct: dict = {}
    rows = np.fromiter((distinct.setdefault(v if isinstance(v, str) else None, len(distinct)) for v in values),
                       dtype=np.int64)
    positive = np.zeros((len(distinct), len(species)), dtype=bool)
    negative = np.zeros((len(distinct), len(species)), dtype=bool)
    non_event = np.zeros(len(distinct), dtype=bool)
    for value, k in distinct.items():
        label = parse_folder(value)
        if label is None:
            continue
        positive[k, [column[c] for c in label.positives if c in column]] = True
        negative[k, [column[c] for c in label.negatives if c in column]] = True
        non_event[k] = label.non_event
    return positive[rows], negative[rows], non_event[rows]
