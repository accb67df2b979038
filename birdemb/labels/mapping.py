"""The one species mapping: a species list and, for each species, the surrogate's logit column.

Training maps the surrogate onto a chosen species list (`map_species`); exploration takes
every species the surrogate can name (`surrogate_species`). Both give a SpeciesMapping, so
pseudo-labels and "has a call" mean the same thing in `train-head` and in `eda`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from birdemb.errors import UsageError
from birdemb.labels.species import (
    all_taxonomy_codes,
    is_birdnet_label,
    is_non_event_label,
    label_codes,
    label_index,
    mapping_report,
    select_logits,
)

TAXONOMY_FILE = "eBird_Taxonomy_v2021.csv"
CALL_RULES = ("list", "any-bird")


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

    def call_logit(self, logits: np.ndarray, rule: str = "list", chunk: int = 4096) -> np.ndarray:
        """Per window, the max logit over the labels that make "a call": the species of the
        list the surrogate knows (rule "list", the paper's equation 2), or every bird label
        of the surrogate (rule "any-bird"). Non-bird labels never do. Chunked: a gather of
        6,522 columns at once would copy the whole logit matrix."""
        if rule not in CALL_RULES:
            raise UsageError(f"`call_rule` must be one of {', '.join(CALL_RULES)}, not {rule!r}")
        columns = self.bird_columns if rule == "any-bird" else np.unique(self.index[self.index >= 0])
        out = np.full(len(logits), -np.inf, dtype=np.float32)
        if len(columns) == 0:
            return out
        for start in range(0, len(logits), chunk):
            out[start:start + chunk] = logits[start:start + chunk][:, columns].max(axis=1)
        return out


def _bird_columns(codes: list[tuple[str, ...]], taxonomy: dict | None) -> np.ndarray:
    # with a taxonomy, only its codes are birds (it lists birds only: frogs and insects are out)
    bird_codes = all_taxonomy_codes(taxonomy) if taxonomy else None
    return np.asarray([j for j, found in enumerate(codes)
                       if found and (bird_codes is None or any(c in bird_codes for c in found))], dtype=np.int64)


def map_species(surrogate_labels: list[str] | None, species: list[str], taxonomy: dict | None,
                required: bool = True) -> SpeciesMapping:
    """The surrogate's labels mapped onto `species` (eBird codes), through the taxonomy for
    BirdNET's scientific names. Without a taxonomy BirdNET's labels map to nothing: an error
    when the mapping is `required` (labels from the surrogate), else an empty mapping."""
    if not surrogate_labels or (not required and taxonomy is None
                                and any(is_birdnet_label(label) for label in surrogate_labels)):
        return SpeciesMapping(list(species), np.full(len(species), -1, dtype=np.int64), np.zeros(0, dtype=np.int64))
    codes = label_codes(surrogate_labels, taxonomy)
    if taxonomy is None and any(is_birdnet_label(label) for label in surrogate_labels):
        raise UsageError("the surrogate's labels are scientific names (BirdNET): map them to eBird codes with "
                         f"`taxonomy` ({TAXONOMY_FILE}, or put that file beside `metadata`)")
    return SpeciesMapping(list(species), label_index(surrogate_labels, species, taxonomy),
                          _bird_columns(codes, taxonomy))


def surrogate_species(model_labels: list[str], taxonomy: dict | None = None) -> SpeciesMapping:
    """Every species the surrogate can name, with its logit column (first column wins); its
    non-species classes (engine, dog, human voice, ...) are left out. BirdNET without a
    taxonomy is named by its common names, so exploration still works (frogs and insects are
    then in; a taxonomy keeps birds only)."""
    birdnet = any(is_birdnet_label(label) for label in model_labels)
    codes = label_codes(model_labels, taxonomy)
    if birdnet and taxonomy is None:
        names = [None if is_non_event_label(label) else label.split("_", 1)[1] if is_birdnet_label(label) else label
                 for label in model_labels]
        first: dict[str, int] = {}
        for column, name in enumerate(names):
            if name is not None:
                first.setdefault(name, column)
        index = np.asarray(list(first.values()), dtype=np.int64)
        return SpeciesMapping(list(first), index, index.copy(), "common name")
    unique = list(dict.fromkeys(code for found in codes for code in found))
    return SpeciesMapping(unique, label_index(model_labels, unique, taxonomy), _bird_columns(codes, taxonomy))
