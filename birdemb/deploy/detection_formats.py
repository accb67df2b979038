"""Where `birdemb detect` writes its detections and in which forms: per recording, BirdNET-
Analyzer 2.4's tables under the output folder, mirroring the input tree
(`<relative stem>.BirdNET.selection.table.txt`, `.BirdNET.results.txt`, `.BirdNET.results.csv`,
`.BirdNET.results.kaleidoscope.csv`), and across recordings its combined tables
(`BirdNET_SelectionTable.txt` with its `.list.txt` of audio files, `BirdNET_CombinedTable.csv`,
`BirdNET_Kaleidoscope.csv`) plus one `detections.parquet`. The text of each form is in
detection_tables.py. Every file is written whole or not at all (a temporary file in the same
folder, then `os.replace`), so a killed run never leaves half a table behind."""
from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from birdemb.deploy import detection_tables as tables
from birdemb.deploy.detection_tables import DetectionTableError, read_raven_table  # noqa: F401 (API)
from birdemb.errors import UsageError

FORMATS = ("raven", "audacity", "birdnet-csv", "kaleidoscope", "parquet")
ALIASES = {"table": "raven", "selection-table": "raven", "csv": "birdnet-csv"}  # BirdNET's --rtype names too
SUFFIXES = {"raven": ".BirdNET.selection.table.txt", "audacity": ".BirdNET.results.txt",
            "birdnet-csv": ".BirdNET.results.csv", "kaleidoscope": ".BirdNET.results.kaleidoscope.csv"}
COMBINED = {"raven": "BirdNET_SelectionTable.txt", "birdnet-csv": "BirdNET_CombinedTable.csv",
            "kaleidoscope": "BirdNET_Kaleidoscope.csv", "parquet": "detections.parquet"}
RAVEN_LIST = "BirdNET_SelectionTable.list.txt"  # the combined table's audio files, in order
PARQUET_COLUMNS = ("file", "start_s", "end_s", "scientific", "common", "code", "confidence")


@dataclass(frozen=True)
class Detection:
    file: str  # the recording's path relative to the audio root (POSIX)
    start_s: float
    end_s: float
    scientific: str
    common: str
    code: str  # species code: eBird code where known, else the label itself
    confidence: float


@dataclass(frozen=True)
class TableOptions:
    """What the tables record beside the detections: `audio_root` joins each relative path into
    `Begin Path`/`File`/Kaleidoscope's folders; the band (BirdNET: its bandpass, at most half the
    sample rate); place and week (None: BirdNET's -1), window overlap and sigmoid sensitivity."""
    audio_root: str = ""
    low_hz: float = 0.0
    high_hz: float = 15000.0
    lat: float | None = None
    lon: float | None = None
    week: int | None = None
    overlap: float = 0.0
    sensitivity: float = 1.0


class FormatError(UsageError):
    """An unknown --format value."""


def parse_formats(value: str | Iterable[str]) -> tuple[str, ...]:
    """`--format` ("raven,audacity", "all", BirdNET's "table"/"csv") -> formats in FORMATS order."""
    names = value.split(",") if isinstance(value, str) else [n for v in value for n in str(v).split(",")]
    chosen = set()
    for name in (n.strip().lower() for n in names):
        if name == "all":
            chosen.update(FORMATS)
        elif name in FORMATS or name in ALIASES:
            chosen.add(ALIASES.get(name, name))
        elif name:
            raise FormatError(f"--format: unknown format {name!r}; choose from {', '.join(FORMATS)} or all")
    if not chosen:
        raise FormatError(f"--format: no format given; choose from {', '.join(FORMATS)} or all")
    return tuple(f for f in FORMATS if f in chosen)


def _relative(relative: str) -> PurePosixPath:
    path = PurePosixPath(str(relative).replace("\\", "/"))
    if not path.name or path.is_absolute() or ".." in path.parts:
        raise DetectionTableError(f"{relative}: a recording's path must be relative to the audio root, inside it")
    return path


def per_file_paths(relative: str, out_dir: Path, formats) -> dict[str, Path]:
    """Format -> where its table for one recording goes: the recording's path under `out_dir`
    with its extension replaced by BirdNET's suffix (parquet has no per-recording table)."""
    stem = _relative(relative).with_suffix("").as_posix()
    return {f: Path(out_dir) / (stem + SUFFIXES[f]) for f in parse_formats(formats) if f in SUFFIXES}


def combined_paths(out_dir: Path, formats) -> dict[str, Path]:
    """Format -> its table across recordings (Audacity has none, as in BirdNET-Analyzer)."""
    return {f: Path(out_dir) / COMBINED[f] for f in parse_formats(formats) if f in COMBINED}


def begin_path(relative: str, options: TableOptions) -> str:
    """The recording as the tables name it: `audio_root` joined with its relative path."""
    return str(Path(options.audio_root) / relative) if options.audio_root else str(relative)


def _checked(detections, relative: str) -> list[Detection]:
    """The recording's detections in BirdNET's order (by start, the most confident first)."""
    for d in detections:
        if d.file != relative:
            raise DetectionTableError(f"{relative}: a detection of another recording ({d.file}) among its own")
        if not (math.isfinite(d.start_s) and math.isfinite(d.end_s) and 0 <= d.start_s < d.end_s):
            raise DetectionTableError(f"{relative}: detection of {d.scientific} from {d.start_s} s to {d.end_s} s "
                                      "(a detection must start at 0 s or later and end after it starts)")
        if not math.isfinite(d.confidence):
            raise DetectionTableError(f"{relative}: detection of {d.scientific} at {d.start_s} s has confidence "
                                      f"{d.confidence}")
    return sorted(detections, key=lambda d: (d.start_s, -d.confidence, d.end_s))


def write_file_tables(detections: list[Detection], relative: str, duration_s: float, out_dir: Path, formats,
                      options: TableOptions = TableOptions()) -> list[Path]:
    """One recording's tables, each written atomically; returns their paths. A recording
    without detections gets BirdNET's forms of "nothing": a Raven table with one `nocall` row,
    an empty Audacity file, CSV and Kaleidoscope headers alone. (`duration_s` is not needed by
    the per-recording forms; it is taken so the caller passes the same facts as for combining.)"""
    relative = _relative(relative).as_posix()
    ordered = _checked(detections, relative)
    path = begin_path(relative, options)
    texts = {"raven": lambda: tables.raven_file_text(ordered, options, path),
             "audacity": lambda: tables.audacity_text(ordered),
             "birdnet-csv": lambda: tables.csv_text(tables.csv_rows(ordered, path), tables.CSV_COLUMNS),
             "kaleidoscope": lambda: tables.csv_text(tables.kaleidoscope_rows(ordered, options, path),
                                                     tables.KALEIDOSCOPE_COLUMNS)}
    written = []
    for form, target in per_file_paths(relative, out_dir, formats).items():
        write_text(target, texts[form]())
        written.append(target)
    return written


def write_combined_tables(results: list[tuple[str, float, list[Detection]]], out_dir: Path, formats,
                          options: TableOptions = TableOptions()) -> list[Path]:
    """The tables across recordings, from (relative path, duration in s, detections) per
    recording in order; returns their paths. In the combined Raven table Begin/End Time run on
    one timeline, each recording starting where the ones before it end (the sum of their
    durations, as Raven plays the files of `BirdNET_SelectionTable.list.txt` back to back),
    `File Offset (s)` is the time within the file, and `nocall` rows are left out."""
    recordings = []
    for relative, duration_s, detections in results:
        relative = _relative(relative).as_posix()
        if not (math.isfinite(duration_s) and duration_s >= 0):
            raise DetectionTableError(f"{relative}: duration {duration_s} s is not a length")
        recordings.append((relative, float(duration_s), _checked(detections, relative), begin_path(relative, options)))
    written = []
    for form, target in combined_paths(out_dir, formats).items():
        if form == "raven":
            rows, offset = [], 0.0
            for _, duration_s, detections, path in recordings:
                rows += [tables.raven_row(len(rows) + i, d, offset, options, path) for i, d in enumerate(detections, 1)]
                offset += duration_s
            write_text(target, tables.raven_header() + "".join(rows))
            write_text(target.with_name(RAVEN_LIST), "".join(tables.clean(r[3]) + "\n" for r in recordings))
            written += [target, target.with_name(RAVEN_LIST)]
            continue
        if form == "parquet":
            write_parquet(target, [d for r in recordings for d in r[2]])
        else:
            make = tables.csv_rows if form == "birdnet-csv" else lambda ds, p: tables.kaleidoscope_rows(ds, options, p)
            header = tables.CSV_COLUMNS if form == "birdnet-csv" else tables.KALEIDOSCOPE_COLUMNS
            write_text(target, tables.csv_text([row for _, _, ds, p in recordings for row in make(ds, p)], header))
        written.append(target)
    return written


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))


def write_parquet(path: Path, detections: list[Detection]) -> None:
    """One row per detection, PARQUET_COLUMNS, times and confidences as float64 (exact)."""
    schema = pa.schema([(c, pa.float64() if c.endswith("_s") or c == "confidence" else pa.string())
                        for c in PARQUET_COLUMNS])
    table = pa.table({c: [getattr(d, c) for d in detections] for c in PARQUET_COLUMNS}, schema=schema)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def atomic_write(path: Path, write) -> None:
    """`write(temporary path)`, then move it onto `path`: readers see the old file or the whole
    new one. The temporary is hidden (read_annotations skips it) and removed on failure."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        raise DetectionTableError(f"{path}: could not write ({error.strerror or error})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
