"""Strong (time-stamped) labels: read annotation files into events, and map events onto windows.

`read_annotations` reads one file or a folder of them; each file's form is detected:

- plain CSV, the project's own form: header `file,start_s,end_s,label`;
- Raven selection tables (tab-separated, `Selection`, `Begin Time (s)`, `End Time (s)` and a
  label column), as Raven and BirdNET-Analyzer (`<stem>.BirdNET.selection.table.txt`) write them;
- Audacity label tracks (`start<TAB>end<TAB>label`, no header), as BirdNET-Analyzer writes them
  (`<stem>.BirdNET.results.txt`, label "Scientific name, Common name", then the confidence);
- BirdNET-Analyzer CSV results: `Start (s),End (s),Scientific name,Common name,Confidence,File`.

`events_to_windows` turns events into window labels: a window is positive for the species whose
events overlap it, negative for the rest, over the annotated files only.
"""
from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from birdemb.errors import BirdembError
from birdemb.labels.species import taxonomy_codes

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aif", ".aiff")
ANNOTATION_EXTENSIONS = (".csv", ".txt", ".tsv")
PLAIN_COLUMNS = ("file", "start_s", "end_s", "label")
RAVEN_LABEL_COLUMNS = ("Species Code", "Annotation", "Label", "label", "Class", "Common Name")
RAVEN_FILE_COLUMNS = ("Begin Path", "Begin File")
# annotation file name -> the stem of its audio file, most specific suffix first
NAME_SUFFIXES = (r"\.BirdNET\.selection\.table\.txt", r"\.Table\.\d+\.selections\.txt", r"\.BirdNET\.results\.txt",
                 r"\.BirdNET\.results\.csv", r"\.labels\.txt", r"\.selections\.txt", r"\.txt", r"\.csv")


@dataclass(frozen=True)
class Event:
    file: str  # relative to the audio root, POSIX separators (as the store's `file` column)
    start_s: float
    end_s: float
    label: str  # an eBird code where it can be mapped


class AnnotationError(BirdembError):
    """An annotation file that cannot be read, or events that cannot be mapped."""


def map_labels(text: str, taxonomy: dict | None = None) -> tuple[str, ...]:
    """The eBird codes of a label where the taxonomy knows it (every code of its scientific
    name), else the label as written.

    BirdNET labels "Scientific name_Common name" (and the Audacity form "Scientific name, Common
    name") and bare scientific names map by the lower-cased scientific name; eBird codes stay."""
    label = text.strip()
    if not taxonomy:
        return (label,)
    for separator in ("_", ", "):
        scientific = label.split(separator, 1)[0].strip().lower()
        if separator in label and " " in scientific and taxonomy_codes(taxonomy, scientific):
            return taxonomy_codes(taxonomy, scientific)
    return taxonomy_codes(taxonomy, label) or (label,)


class _Reader:
    """Reads annotation files against one audio root; caches the audio index and resolved paths."""

    def __init__(self, audio_root, taxonomy, min_confidence):
        self.root = Path(audio_root) if audio_root is not None else None
        if self.root is not None and not self.root.is_dir():
            raise AnnotationError(f"{self.root}: `audio_root` is not a folder")
        self.taxonomy = taxonomy
        self.min_confidence = float(min_confidence)
        self._index: tuple[dict[str, list[str]], dict[str, list[str]]] | None = None
        self._resolved: dict[tuple[str, str], str] = {}
        self._derived: dict[Path, str] = {}

    def audio(self, by: str) -> dict[str, list[str]]:
        """The audio files under the root (relative, POSIX), by file name ("name") or by stem."""
        if self._index is None:
            self._index = ({}, {})
            for folder, dirs, names in os.walk(self.root):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(n for n in names if n.lower().endswith(AUDIO_EXTENSIONS)):
                    relative = Path(folder, name).relative_to(self.root).as_posix()
                    self._index[0].setdefault(name, []).append(relative)
                    self._index[1].setdefault(name.rsplit(".", 1)[0], []).append(relative)
        return self._index[0 if by == "name" else 1]

    def _relative(self, path: Path) -> str | None:
        """`path` relative to the audio root (POSIX) when it lies under it."""
        for candidate, root in ((Path(os.path.abspath(path)), Path(os.path.abspath(self.root))),
                                (path.resolve(), self.root.resolve())):
            try:
                return candidate.relative_to(root).as_posix()
            except ValueError:
                continue
        return None

    def resolve(self, written: str, table: Path) -> str:
        """A path as written in an annotation -> relative to the audio root where it can be."""
        text = written.strip()
        if self.root is None or not text:
            return text
        key = (text, str(table.parent))
        if key not in self._resolved:
            self._resolved[key] = self._resolve(text, table)
        return self._resolved[key]

    def _resolve(self, text: str, table: Path) -> str:
        windows = "\\" in text or re.match(r"^[A-Za-z]:", text) is not None
        pure = PureWindowsPath(text) if windows else PurePosixPath(text)
        if not windows and pure.is_absolute():
            relative = self._relative(Path(text))
            if relative is not None:
                return relative
        elif not pure.is_absolute() and not pure.drive:
            posix = pure.as_posix()
            if ".." not in pure.parts and (self.root / posix).is_file():
                return posix
            for base in (table.parent, Path.cwd()):
                relative = self._relative(base / posix)
                if relative is not None and (self.root / relative).is_file():
                    return relative
        # moved from elsewhere: the audio file whose path ends with the most of the written parts
        parts = pure.parts[1:] if pure.anchor else pure.parts
        best, best_depth = [], 0
        for candidate in self.audio("name").get(pure.name, []):
            tail = candidate.split("/")
            depth = next((k for k in range(min(len(tail), len(parts)), 0, -1) if tail[-k:] == list(parts[-k:])), 0)
            if depth > best_depth:
                best, best_depth = [candidate], depth
            elif depth == best_depth and depth:
                best.append(candidate)
        if len(best) == 1:
            return best[0]
        return pure.as_posix() if not pure.anchor else text

    def file_of(self, written: str, table: Path, folder: Path | None) -> str:
        """The path a row names, resolved; or, when it names none, the table's own audio file."""
        if written:
            return self.resolve(written, table)
        if table not in self._derived:
            self._derived[table] = self.audio_for(table, folder)
        return self._derived[table]

    def below(self, path, line, confidence: str) -> bool:
        return bool(confidence) and _number(path, line, confidence) < self.min_confidence

    def audio_for(self, table: Path, folder: Path | None) -> str:
        """The audio file a per-file table belongs to, found from the table's own name."""
        if self.root is None:
            raise AnnotationError(f"{table}: names no audio file; give `audio_root` to find it from the table's name")
        stems = [table.name[:m.start()] for s in NAME_SUFFIXES if (m := re.search(s + "$", table.name))]
        for stem in dict.fromkeys(s for s in stems if s):
            matches = self.audio("stem").get(stem, [])
            if len(matches) > 1 and folder is not None:  # the same sub-folder as the table's, if unique
                where = table.parent.relative_to(folder).as_posix()
                same = [a for a in matches if (a.rsplit("/", 1)[0] if "/" in a else ".") == where]
                matches = same if len(same) == 1 else matches
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise AnnotationError(f"{table}: several audio files under {self.root} have the stem {stem!r} "
                                      f"({', '.join(matches[:5])}); name the file in the table")
        shown = " or ".join(repr(s) for s in dict.fromkeys(stems)) or repr(table.name)
        raise AnnotationError(f"{table}: no audio file named {shown} (any of {', '.join(AUDIO_EXTENSIONS)}) "
                              f"under {self.root}")

    def read(self, path: Path, folder: Path | None = None) -> list[Event] | None:
        """The file's events, or None when the file is in no annotation form."""
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            text = path.read_text(encoding="latin-1")
        except OSError as error:
            raise AnnotationError(f"{path}: cannot be read ({error.strerror or error})") from None
        lines = text.splitlines()
        first = next((i for i, line in enumerate(lines) if line.strip()), None)
        if first is None:
            return []
        form = _detect(lines[first])
        if form is None:
            return None
        return getattr(self, f"_{form}")(path, lines, first, folder)

    def _plain(self, path, lines, first, folder):
        header = [h.strip() for h in next(csv.reader([lines[first]]))]
        col = {name: header.index(name) for name in PLAIN_COLUMNS}
        events = []
        for number, cells in _rows(lines, first, lambda line: next(csv.reader([line]))):
            cell = _getter(cells)
            file = self.resolve(cell(col["file"]), path)
            events.extend(_events(path, number, file, cell(col["start_s"]), cell(col["end_s"]),
                                 map_labels(cell(col["label"]), self.taxonomy)))
        return events

    def _raven(self, path, lines, first, folder):
        header = [h.strip() for h in lines[first].split("\t")]
        col = {name: i for i, name in reversed(list(enumerate(header)))}
        labels = [col[c] for c in RAVEN_LABEL_COLUMNS if c in col]
        if not labels:
            raise AnnotationError(f"{path}: Raven selection table without a label column "
                                  f"(one of {', '.join(RAVEN_LABEL_COLUMNS)})")
        file_col = next((col[c] for c in RAVEN_FILE_COLUMNS if c in col), None)
        offset_col = col.get("File Offset (s)") if file_col is not None else None
        seen, events = set(), []
        for number, cells in _rows(lines, first, lambda line: line.split("\t")):
            cell = _getter(cells)
            selection = cell(col["Selection"])
            if selection and selection in seen:  # the same selection in another view
                continue
            seen.add(selection)
            begin, end = cell(col["Begin Time (s)"]), cell(col["End Time (s)"])
            if offset_col is not None and cell(offset_col):  # a multi-file table: times within the file
                b, e, offset = (_number(path, number, v) for v in (begin, end, cell(offset_col)))
                begin, end = offset, offset + (e - b)
            if self.below(path, number, cell(col.get("Confidence"))):
                continue
            label = next((cell(i) for i in labels if cell(i)), "")
            file = self.file_of(cell(file_col), path, folder)
            events.extend(_events(path, number, file, begin, end, map_labels(label, self.taxonomy)))
        return events

    def _audacity(self, path, lines, first, folder):
        events = []
        for number, cells in _rows(lines, first - 1, lambda line: line.split("\t")):
            if cells[0].startswith("\\"):  # a frequency range of the label above
                continue
            if len(cells) < 2:
                raise AnnotationError(f"{path}, line {number}: expected start, end and label separated by tabs")
            cell = _getter(cells)
            if self.below(path, number, cell(3)):
                continue
            file = self.file_of("", path, folder)
            events.extend(_events(path, number, file, cell(0), cell(1), map_labels(cell(2), self.taxonomy)))
        return events

    def _birdnet(self, path, lines, first, folder):
        header = [h.strip() for h in next(csv.reader([lines[first]]))]
        col = {name: i for i, name in reversed(list(enumerate(header)))}
        if "Scientific name" not in col:
            raise AnnotationError(f"{path}: BirdNET results without a `Scientific name` column")
        events = []
        for number, cells in _rows(lines, first, lambda line: next(csv.reader([line]))):
            cell = _getter(cells)
            if self.below(path, number, cell(col.get("Confidence"))):
                continue
            file = self.file_of(cell(col.get("File")), path, folder)
            labels = map_labels(cell(col["Scientific name"]), self.taxonomy)
            events.extend(_events(path, number, file, cell(col["Start (s)"]), cell(col["End (s)"]), labels))
        return events


def _detect(head: str) -> str | None:
    """The form of an annotation file from its first non-empty line."""
    if "\t" in head:
        fields = [f.strip() for f in head.split("\t")]
        if {"Selection", "Begin Time (s)", "End Time (s)"} <= set(fields):
            return "raven"
        try:
            float(fields[0]), float(fields[1])
            return "audacity"
        except ValueError:
            return None
    fields = {f.strip() for f in next(csv.reader([head]))}
    if set(PLAIN_COLUMNS) <= fields:
        return "plain"
    if {"Start (s)", "End (s)"} <= fields:
        return "birdnet"
    return None


def _rows(lines, header_index, split):
    """(line number, cells) of each non-empty line after the header."""
    for index in range(header_index + 1, len(lines)):
        if lines[index].strip():
            yield index + 1, split(lines[index])


def _getter(cells):
    return lambda i: cells[i].strip() if i is not None and i < len(cells) else ""


def _number(path, line, value) -> float:
    if isinstance(value, float):
        return value
    try:
        number = float(value)
    except ValueError:
        raise AnnotationError(f"{path}, line {line}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise AnnotationError(f"{path}, line {line}: {value!r} is not a finite number")
    return number


def _events(path, number, file, begin, end, labels: tuple[str, ...]) -> list[Event]:  # one per eBird code
    return [_event(path, number, file, begin, end, label) for label in labels]


def _event(path, line, file, start, end, label) -> Event:
    start, end = _number(path, line, start), _number(path, line, end)
    if end <= start:
        raise AnnotationError(f"{path}, line {line}: the event ends ({end:g} s) at or before it starts ({start:g} s)")
    if not label or not file:
        raise AnnotationError(f"{path}, line {line}: no {'label' if not label else 'file'}")
    return Event(file, start, end, label)


def read_annotations(path, audio_root=None, taxonomy: dict[str, str] | None = None, *,
                     min_confidence: float = 0.0) -> list[Event]:
    """Events of an annotation file, or of every annotation file (.csv, .txt, .tsv) under a
    folder, recursively and in sorted order; files of a folder that are in no annotation form
    (a README, BirdNET's parameter file) are skipped. Sorted by (file, start_s, label).

    `audio_root`: event files are made relative to it (POSIX) where they lie under it, and a
    per-file table that names no audio file finds it there by its own name; without it, files
    are kept as written. `taxonomy` (`species.read_taxonomy`) maps BirdNET labels to eBird codes.
    `min_confidence` drops rows with a lower confidence (BirdNET results, tables and labels).
    A BirdNET table's `nocall` row (a file analysed without detections) is kept as an event
    labelled "nocall", so the file counts as annotated with no species."""
    path = Path(path)
    reader = _Reader(audio_root, taxonomy, min_confidence)
    if path.is_dir():
        tables = sorted((p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in ANNOTATION_EXTENSIONS
                         and not any(part.startswith(".") for part in p.relative_to(path).parts)),
                        key=lambda p: p.relative_to(path).as_posix())
        read = [(t, reader.read(t, path)) for t in tables]
        read = [(t, events) for t, events in read if events is not None]
        if not read:
            raise AnnotationError(f"{path}: no annotation files (plain CSV, Raven, Audacity or BirdNET) in the folder")
        events = [event for _, found in read for event in found]
    elif path.is_file():
        events = reader.read(path)
        if events is None:
            raise AnnotationError(f"{path}: not an annotation file: expected a plain CSV ({','.join(PLAIN_COLUMNS)}), "
                                  "a Raven selection table, an Audacity label track or BirdNET results")
    else:
        raise AnnotationError(f"{path}: annotation file or folder not found")
    return sorted(events, key=lambda e: (e.file, e.start_s, e.label, e.end_s))


def events_to_windows(events, files, start_s, end_s, species, min_overlap_s: float = 0.0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Window labels from events: (labels float32 [n, len(species)] 0/1, annotated bool [n]).

    Window i is positive for species j when an event labelled species[j] in the same file
    overlaps it by more than `min_overlap_s` seconds (min of the ends - max of the starts).
    `annotated[i]` says window i's file has at least one event of any label (events of labels
    outside `species` count there, not in `labels`). Windows are sorted by (file, start), each
    event finds its candidate windows by binary search, and the candidates are checked exactly."""
    starts, ends = np.asarray(start_s, dtype=np.float64), np.asarray(end_s, dtype=np.float64)
    n = len(files)
    if starts.shape != (n,) or ends.shape != (n,):
        raise AnnotationError(f"windows: `files`, `start_s` and `end_s` differ in length ({n} files)")
    if not (np.isfinite(starts).all() and np.isfinite(ends).all()):
        raise AnnotationError("windows: `start_s` and `end_s` must be finite")
    labels = np.zeros((n, len(species)), dtype=np.float32)
    events = list(events)
    if n == 0 or not events:
        return labels, np.zeros(n, dtype=bool)
    index: dict = {}
    codes = np.fromiter((index.setdefault(f, len(index)) for f in files), dtype=np.int64, count=n)
    ev_code = np.fromiter((index.get(e.file, -1) for e in events), dtype=np.int64, count=len(events))
    marked = np.zeros(len(index), dtype=bool)
    marked[ev_code[ev_code >= 0]] = True
    annotated = marked[codes]
    column = {code: j for j, code in enumerate(species)}
    ev_col = np.fromiter((column.get(e.label, -1) for e in events), dtype=np.int64, count=len(events))
    keep = (ev_code >= 0) & (ev_col >= 0)
    if not keep.any():
        return labels, annotated
    ec, ej = ev_code[keep], ev_col[keep]
    es = np.fromiter((e.start_s for e in events), dtype=np.float64, count=len(events))[keep]
    ee = np.fromiter((e.end_s for e in events), dtype=np.float64, count=len(events))[keep]

    order = np.lexsort((starts, codes))
    wc, ws = codes[order], starts[order]
    heads = np.flatnonzero(np.r_[True, wc[1:] != wc[:-1]])
    longest = np.zeros(len(index))
    longest[wc[heads]] = np.maximum.reduceat(np.maximum(ends - starts, 0.0)[order], heads)
    first, last = np.searchsorted(wc, ec, "left"), np.searchsorted(wc, ec, "right")
    # one sorted key over (file, start); the exact check below removes what rounding lets in
    t0, width = ws.min(), float(ws.max() - ws.min()) + 1.0
    key = wc * width + (ws - t0)
    margin = 1e-6 + 8 * np.spacing(float(np.abs(key).max()) + width)
    low = np.clip(es + min_overlap_s - longest[ec] - t0, -0.5, width - 0.5) - margin
    high = np.clip(ee - min_overlap_s - t0, -0.5, width - 0.5) + margin
    lo = np.clip(np.searchsorted(key, ec * width + low, "left"), first, last)
    hi = np.clip(np.searchsorted(key, ec * width + high, "right"), first, last)
    counts = np.maximum(hi - lo, 0)
    pair_event = np.repeat(np.arange(len(ec)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    window = order[np.repeat(lo, counts) + offsets]
    overlap = np.minimum(ee[pair_event], ends[window]) - np.maximum(es[pair_event], starts[window])
    hit = overlap > min_overlap_s
    labels[window[hit], ej[pair_event[hit]]] = 1.0
    return labels, annotated
