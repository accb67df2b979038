"""The species list, and the mapping of a model's labels onto it.

One source of truth: every later step (labels, heads, submissions) gets its species order
from `species_list(...)` and its logit columns from `label_index(...)`. Column j of anything
indexed by the species list belongs to species j; nothing here ever sorts an index list.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from birdemb.errors import BirdembError


class SpeciesError(BirdembError):
    """A species list or taxonomy that cannot be read."""


def species_from_metadata(metadata: str | Path) -> list[str]:
    """Sorted unique primary labels of a BirdCLEF train_metadata.csv."""
    path = Path(metadata)
    if not path.is_file():
        raise SpeciesError(f"{path}: metadata file not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if "primary_label" not in (reader.fieldnames or []):
            raise SpeciesError(f"{path}: no primary_label column")
        return sorted({row["primary_label"] for row in reader if row["primary_label"]})


def species_from_folders(train_audio: str | Path) -> list[str]:
    """Sorted names of the species folders of a train_audio tree."""
    root = Path(train_audio)
    if not root.is_dir():
        raise SpeciesError(f"{root}: no such folder")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_species_list(path: str | Path) -> list[str]:
    """A species list kept as given (order matters): a text file with one code per line, a
    JSON list, or a sample_submission.csv (its columns after row_id)."""
    path = Path(path)
    if not path.is_file():
        raise SpeciesError(f"{path}: species list not found")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".json":
        values = json.loads(text)
    elif path.suffix == ".csv":
        header = next(csv.reader(text.splitlines()))
        values = header[1:] if header and header[0] == "row_id" else header
    else:
        values = [line.strip() for line in text.splitlines() if line.strip()]
    if len(set(values)) != len(values):
        raise SpeciesError(f"{path}: species list has duplicates")
    return list(values)


def read_taxonomy(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Scientific name (lower case) -> its eBird species codes, from eBird_Taxonomy_v2021.csv.
    A few scientific names carry two codes (31 in the 2021 taxonomy); a model label with that
    name stands for both."""
    path = Path(path)
    if not path.is_file():
        raise SpeciesError(f"{path}: taxonomy file not found")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"SCI_NAME", "SPECIES_CODE"} <= set(reader.fieldnames or []):
            raise SpeciesError(f"{path}: taxonomy needs SCI_NAME and SPECIES_CODE columns")
        codes: dict[str, tuple[str, ...]] = {}
        for row in reader:
            name, code = row["SCI_NAME"].strip().lower(), row["SPECIES_CODE"].strip()
            if code not in codes.get(name, ()):
                codes[name] = codes.get(name, ()) + (code,)
        return codes


def taxonomy_codes(taxonomy: dict, scientific: str) -> tuple[str, ...]:
    """The eBird codes of a scientific name (a taxonomy's values may be one code or a tuple)."""
    value = taxonomy.get(scientific.strip().lower())
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def all_taxonomy_codes(taxonomy: dict) -> set[str]:
    return {code for value in taxonomy.values() for code in ((value,) if isinstance(value, str) else value)}


def is_birdnet_label(label: str) -> bool:
    """BirdNET labels are "Scientific name_Common name"; Perch labels are bare eBird codes."""
    return "_" in label and " " in label.split("_", 1)[0]


def is_non_event_label(label: str) -> bool:
    """BirdNET's classes that are not species ("Engine_Engine", "Human vocal_Human vocal",
    "Dog_Dog", ...) repeat one name on both sides of the underscore."""
    name, _, common = label.partition("_")
    return bool(common) and name == common


def label_codes(model_labels: list[str], taxonomy: dict | None = None) -> list[tuple[str, ...]]:
    """The eBird codes of each model label, in logit order (an empty tuple: none).

    Perch labels are eBird codes already. BirdNET labels are "Scientific name_Common name"
    and go through the taxonomy by scientific name (every code of that name); without a
    taxonomy they map to nothing. BirdNET's non-species classes never map to a code.
    """
    codes: list[tuple[str, ...]] = []
    for label in model_labels:
        if is_non_event_label(label):
            codes.append(())
        elif is_birdnet_label(label):
            codes.append(taxonomy_codes(taxonomy, label.split("_", 1)[0]) if taxonomy else ())
        else:
            codes.append((label.strip(),))
    return codes


def label_index(model_labels: list[str], species: list[str], taxonomy: dict | None = None) -> np.ndarray:
    """For species j, the logit column of the model that predicts it, or -1 if none."""
    column_of: dict[str, int] = {}
    for column, codes in enumerate(label_codes(model_labels, taxonomy)):
        for code in codes:
            column_of.setdefault(code, column)
    return np.asarray([column_of.get(code, -1) for code in species], dtype=np.int64)


def select_logits(logits: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Model logits [n, L] -> species logits [n, len(index)]; -inf where the model lacks a species."""
    logits = np.asarray(logits, dtype=np.float32)
    out = np.full((logits.shape[0], len(index)), -np.inf, dtype=np.float32)
    known = index >= 0
    out[:, known] = logits[:, index[known]]
    return out


def mapping_report(index: np.ndarray, species: list[str]) -> str:
    missing = [s for s, i in zip(species, index) if i < 0]
    text = f"{len(species) - len(missing)} of {len(species)} species found in the model's labels"
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        text += f"; missing: {shown}"
    return text


def read_taxonomy_names(path: str | Path) -> dict[str, tuple[str, str]]:
    """eBird code -> (scientific name, common name), from eBird_Taxonomy_v2021.csv (its
    SPECIES_CODE, SCI_NAME and PRIMARY_COM_NAME columns)."""
    path = Path(path)
    if not path.is_file():
        raise SpeciesError(f"{path}: taxonomy file not found")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"SCI_NAME", "SPECIES_CODE", "PRIMARY_COM_NAME"} <= set(reader.fieldnames or []):
            raise SpeciesError(f"{path}: taxonomy needs SPECIES_CODE, SCI_NAME and PRIMARY_COM_NAME columns")
        return {row["SPECIES_CODE"].strip(): (row["SCI_NAME"].strip(), row["PRIMARY_COM_NAME"].strip())
                for row in reader}
