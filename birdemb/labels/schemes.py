"""Window labels from a surrogate model's logits: pseudo, species (equation 4) and folder.

Every array here is indexed [window, species] in the species-list order of
birdemb.labels.species; surrogate logits arrive already mapped onto that order by
`species.select_logits`, so a
species the surrogate lacks has logit -inf and is never a surrogate positive.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from birdemb.errors import UsageError
from birdemb.labels.folders import folder_matrices
from birdemb.runtime.head import sigmoid

SCHEMES = ("species", "pseudo", "folder", "annotations")


class LabelError(UsageError):
    """A label scheme that cannot apply to the rows given."""


def pseudo_labels(species_logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """y[i, j] = sigmoid(logit) > threshold: the surrogate's own thresholded call."""
    return sigmoid(species_logits) > threshold


def has_call(call_logits_max: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """A window has a call when the most confident of the labels that make a call passes the
    threshold. `call_logits_max` is, per window, that max logit (SpeciesMapping.call_logit:
    the list's species by the paper's equation 2, or every bird label of the surrogate)."""
    return sigmoid(call_logits_max) > threshold


def secondary_matrix(secondary: list[list[str] | None], species: list[str]) -> np.ndarray:
    column = {code: j for j, code in enumerate(species)}
    out = np.zeros((len(secondary), len(species)), dtype=bool)
    for i, codes in enumerate(secondary):
        for code in codes or []:
            if code in column:
                out[i, column[code]] = True
    return out


def make_labels(
    scheme: str,
    species: list[str],
    species_logits: np.ndarray | None,
    call: np.ndarray | None,
    folders: list[str | None],
    secondary: list[list[str] | None] | None = None,
    threshold: float = 0.5,
) -> np.ndarray:
    """Labels [n, len(species)] as float32 0/1 for one scheme.

    species: pseudo OR (window has a call AND species is a folder species) -- equation (4);
             with `secondary`, the metadata's secondary labels join the folder species. A
             species the surrogate lacks gets its folder label on every window of its folders.
    pseudo:  the surrogate's thresholded probabilities.
    folder:  the folder species on every window (the naive baseline; no surrogate needed).
    Folder names follow BirdNET-Analyzer's trainer (birdemb.labels.folders): `a,b` is both,
    `-a` a known negative for a, and `noise`/`background`/`other`/`silence` windows are
    negatives for every species, whatever the surrogate says. Soundscape windows (no
    folder) get only the pseudo part under `species`. (`annotations` labels come from
    birdemb.labels.annotations.events_to_windows.)"""
    if scheme not in SCHEMES:
        raise LabelError(f"unknown label scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    positive, negative, non_event = folder_matrices(folders, species)
    if secondary is not None:
        positive |= secondary_matrix(secondary, species) & ~non_event[:, None]
    if scheme == "folder":
        if any(folder is None for folder in folders):
            raise LabelError("`labels=folder` needs a folder species on every window; soundscapes have "
                             "none (use `labels=pseudo` or `labels=species` for soundscape windows)")
        labels = positive
    elif scheme == "annotations":
        raise LabelError("`labels=annotations` labels come from the annotations, not from a scheme here")
    else:
        if species_logits is None:
            raise LabelError(f"`labels={scheme}` needs surrogate logits, and the surrogate has none")
        labels = pseudo_labels(species_logits, threshold)
        if scheme == "species":
            # the surrogate cannot hear a species it does not know: that species' folder label
            # stands on every window of its folders (as with `labels=folder`)
            unknown = ~np.isfinite(species_logits).any(axis=0) if len(species_logits) else np.zeros(len(species), bool)
            labels |= positive & (np.asarray(call, dtype=bool)[:, None] | unknown[None, :])
    labels &= ~negative
    labels[non_event] = False
    return labels.astype(np.float32)


@dataclass
class LabelStats:
    windows: int
    windows_with_call: int
    windows_with_label: int
    positives: dict[str, int]  # species -> windows labelled positive

    def as_dict(self) -> dict:
        return {
            "windows": self.windows,
            "windows_with_call": self.windows_with_call,
            "windows_with_label": self.windows_with_label,
            "positives": self.positives,
        }

    def table(self) -> str:
        lines = [
            f"{self.windows} windows, {self.windows_with_call} with a call, "
            f"{self.windows_with_label} with at least one positive label",
            f"{'species':<12} {'positives':>9}",
        ]
        lines += [f"{code:<12} {count:>9}" for code, count in self.positives.items()]
        return "\n".join(lines)


def label_stats(labels: np.ndarray, species: list[str], call: np.ndarray | None = None) -> LabelStats:
    labels = np.asarray(labels) > 0.5
    counts = labels.sum(axis=0)
    return LabelStats(
        windows=int(labels.shape[0]),
        windows_with_call=int(np.asarray(call, dtype=bool).sum()) if call is not None else 0,
        windows_with_label=int(labels.any(axis=1).sum()),
        positives={code: int(c) for code, c in zip(species, counts)},
    )
