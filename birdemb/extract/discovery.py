"""Find the audio files of a corpus and their labels.

A BirdCLEF tree (`train_audio/<species>/*.ogg`, species = folder) or a flat folder of
soundscapes (no species). `train_metadata.csv`, when given, supplies primary and secondary
labels by its `filename` column (paths relative to the audio folder). Symlinked folders are
followed; a folder or file that cannot be read is reported, never silently skipped.
"""
from __future__ import annotations

import ast
import csv
import os
import warnings
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


class CorpusWarning(UserWarning):
    """A folder or file of the corpus that cannot be read, so its audio is left out."""


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str  # "permission denied", "symbolic link loop (not followed)", ...

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def discover(audio_dir: str | Path, metadata: str | Path | None = None,
             problems: list[Problem] | None = None) -> list[AudioItem]:
    """The corpus's audio files, symlinked folders followed. What cannot be read is appended
    to `problems` when given, else reported as a CorpusWarning: it is never silently skipped."""
    root = Path(audio_dir)
    if not root.is_dir():
        raise CorpusError(f"{audio_dir}: no such folder")
    paths, found_problems = find_audio(root)
    if problems is None:
        for problem in found_problems:
            warnings.warn(str(problem), CorpusWarning, stacklevel=2)
    else:
        problems.extend(found_problems)
    if not paths:
        unread = f"; {len(found_problems)} unreadable, e.g. {found_problems[0]}" if found_problems else ""
        raise CorpusError(f"{audio_dir}: no audio files ({', '.join(AUDIO_EXTENSIONS)}){unread}")
    labels = read_metadata(metadata) if metadata else {}
    items = []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        folder_species = path.parent.name if path.parent != root else None
        primary, secondary = labels.get(relative, (folder_species, ()))
        items.append(AudioItem(relative, primary, tuple(secondary)))
    return items


def find_audio(root: Path) -> tuple[list[Path], list[Problem]]:
    """Audio files under `root` (sorted, paths as seen through symlinked folders) and the
    folders and files that could not be read. A folder link back to one of its own
    ancestors is a loop: it is reported, not followed."""
    paths, problems = [], []
    stack = [(root, frozenset([os.path.realpath(root)]))]  # a folder and the real paths above it
    while stack:
        folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as scan:
                entries = list(scan)
        except OSError as error:
            problems.append(Problem(str(folder), _reason(error)))
            continue
        for entry in entries:
            path = Path(entry.path)
            if _is_dir(entry):
                real = os.path.realpath(path)
                if real in ancestors:
                    problems.append(Problem(str(path), f"symbolic link loop back to {real} (not followed)"))
                else:
                    stack.append((path, ancestors | {real}))
            elif entry.is_symlink() and not path.exists():  # it may have been a species folder
                problems.append(Problem(str(path), "broken symbolic link"))
            elif path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith("."):
                problem = _unreadable(path)
                if problem is None:
                    paths.append(path)
                else:
                    problems.append(Problem(str(path), problem))
    return sorted(paths), sorted(problems, key=lambda p: p.path)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symbolic links
    except OSError:
        return False


def _unreadable(path: Path) -> str | None:
    """Why an audio file cannot be read, or None: it would otherwise fail later as if it were
    damaged audio."""
    if not path.is_file():
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def _reason(error: OSError) -> str:
    if isinstance(error, PermissionError):
        return "permission denied (folder not searched)"
    return f"{error.strerror or type(error).__name__} (folder not searched)"


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
