"""Find the audio files of a corpus and their labels.

A BirdCLEF tree (`train_audio/<species>/*.ogg`, species = folder) or a flat folder of
soundscapes (no species). `train_metadata.csv`, when given, supplies primary and secondary
labels by its `filename` column (paths relative to the audio folder).
"""
from __future__ import annotations

import ast
import csv
from dataclasses import dataclass, field
from pathlib import Path

from birdemb.errors import BirdembError
from birdemb.runtime.audio import AUDIO_EXTENSIONS


class CorpusError(BirdembError):
    """A missing folder, an empty corpus, or an unreadable metadata file."""


@dataclass(frozen=True)
class AudioItem:
    file: str  # relative to the audio folder, POSIX separators
    species: str | None
    secondary_labels: tuple[str, ...] = field(default=())


def discover(audio_dir: str | Path, metadata: str | Path | None = None) -> list[AudioItem]:
    root = Path(audio_dir)
    if not root.is_dir():
        raise CorpusError(f"{audio_dir}: no such folder")
    paths = sorted(
        p for p in root.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )
    if not paths:
        raise CorpusError(f"{audio_dir}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    labels = read_metadata(metadata) if metadata else {}
    items = []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        folder_species = path.parent.name if path.parent != root else None
        primary, secondary = labels.get(relative, (folder_species, ()))
        items.append(AudioItem(relative, primary, tuple(secondary)))
    return items


def read_metadata(path: str | Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """filename -> (primary_label, secondary_labels) from a BirdCLEF train_metadata.csv."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: metadata file not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"primary_label", "filename"} - set(reader.fieldnames or [])
        if missing:
            raise CorpusError(f"{path}: metadata lacks column(s) {', '.join(sorted(missing))}")
        return {
            row["filename"].replace("\\", "/"): (
                row["primary_label"],
                tuple(parse_label_list(row.get("secondary_labels") or "[]")),
            )
            for row in reader
        }


def parse_label_list(text: str) -> list[str]:
    """BirdCLEF writes secondary labels as a Python list literal: "['amecro', 'norcar']"."""
    text = text.strip()
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return [t.strip(" '\"") for t in text.strip("[]").split(",") if t.strip(" '\"")]
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
