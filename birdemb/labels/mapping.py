"""The one species mapping: a species list and, for each species, the surrogate's logit column.

Training maps the surrogate onto a chosen species list (`map_species`); exploration takes
every species the surrogate can name (`surrogate_species`). Both give a SpeciesMapping, so
pseudo-labels and "has a call" mean the same thing in `train-head` and in `eda`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from birdemb.errors import UsageError
from birdemb.labels.species import is_birdnet_label, label_codes, label_index, mapping_report, select_logits

TAXONOMY_FILE = "eBird_Taxonomy_v2021.csv"


@dataclass
class SpeciesMapping:
    names: list[str]  # the species, in column order of everything indexed by species
    index: np.ndarray  # species j -> surrogate logit column, -1 when the surrogate lacks it
    bird_columns: np.ndarray  # surrogate columns that name a bird (what counts as "a call")
    naming: str = "ebird"  # "ebird" codes, or BirdNET "common name"s when there is no taxonomy

    @property
    def report(self) -> str:
        if not len(self.index) or (self.index < 0).all() and not len(self.bird_columns):
            return "the surrogate has no classifier: no species mapped"
        return mapping_report(self.index, self.names)

    def as_dict(self) -> dict:
        return {
            "matched": int((self.index >= 0).sum()),
            "species": len(self.names),
            "missing": [s for s, i in zip(self.names, self.index) if i < 0],
            "report": self.report,
        }

    def restrict(self, species: list[str]) -> SpeciesMapping:
        """Only `species`, in the given order (species the surrogate cannot name get column -1)."""
        position = {name: i for i, name in enumerate(self.names)}
        index = np.asarray([self.index[position[s]] if s in position else -1 for s in species], dtype=np.int64)
        return SpeciesMapping(list(species), index, self.bird_columns, self.naming)

    def species_logits(self, logits: np.ndarray) -> np.ndarray:
        """Surrogate logits [n, L] -> [n, species]; -inf where the surrogate lacks a species."""
        return select_logits(logits, self.index)

    def call_logit(self, logits: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Per window, the max logit over the surrogate's bird labels (chunked: a gather of
        6,522 columns at once would copy the whole logit matrix)."""
        out = np.full(len(logits), -np.inf, dtype=np.float32)
        if len(self.bird_columns) == 0:
            return out
        for start in range(0, len(logits), chunk):
            out[start:start + chunk] = logits[start:start + chunk][:, self.bird_columns].max(axis=1)
        return out


def _bird_columns(codes: list[str | None], taxonomy: dict[str, str] | None) -> np.ndarray:
    # with a taxonomy, only its codes are birds (BirdNET's "Engine_Engine" maps to itself otherwise)
    bird_codes = set(taxonomy.values()) if taxonomy else None
    return np.asarray([j for j, code in enumerate(codes)
                       if code is not None and (bird_codes is None or code in bird_codes)], dtype=np.int64)


def map_species(surrogate_labels: list[str] | None, species: list[str], taxonomy: dict | None) -> SpeciesMapping:
    """The surrogate's labels mapped onto `species` (eBird codes), through the taxonomy for
    BirdNET's scientific names."""
    if not surrogate_labels:
        return SpeciesMapping(list(species), np.full(len(species), -1, dtype=np.int64), np.zeros(0, dtype=np.int64))
    codes = label_codes(surrogate_labels, taxonomy)
    if taxonomy is None and any(code is None for code in codes):
        raise UsageError("the surrogate's labels are scientific names (BirdNET): map them to eBird codes with "
                         f"`taxonomy` ({TAXONOMY_FILE}, or put that file beside `metadata`)")
    return SpeciesMapping(list(species), label_index(surrogate_labels, species, taxonomy),
                          _bird_columns(codes, taxonomy))


def surrogate_species(model_labels: list[str], taxonomy: dict[str, str] | None = None) -> SpeciesMapping:
    """Every species the surrogate can name, with its logit column (first column wins).
    BirdNET without a taxonomy is named by its common names, so exploration still works."""
    birdnet = any(is_birdnet_label(label) for label in model_labels)
    codes = label_codes(model_labels, taxonomy)
    if birdnet and taxonomy is None:
        names = [label.split("_", 1)[1] if is_birdnet_label(label) else label for label in model_labels]
        unique = list(dict.fromkeys(names))
        first: dict[str, int] = {}
        for column, name in enumerate(names):
            first.setdefault(name, column)
        index = np.asarray([first[name] for name in unique], dtype=np.int64)
        return SpeciesMapping(unique, index, np.arange(len(model_labels), dtype=np.int64), "common name")
    unique = list(dict.fromkeys(code for code in codes if code is not None))
    return SpeciesMapping(unique, label_index(model_labels, unique, taxonomy), _bird_columns(codes, taxonomy))
