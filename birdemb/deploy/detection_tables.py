"""The text of each detection table, row by row, laid out as BirdNET-Analyzer 2.4 writes them
(birdnet_analyzer/analyze/utils.py), so tools and scripts built on its output read ours:

- Raven selection table: tab-separated, `RAVEN_COLUMNS`; view "Spectrogram 1", channel 1, the
  band as Low/High Freq (BirdNET's bandpass, 0 and 15000 Hz by default; written "0.0", not
  BirdNET's "0", because typed readers such as crowsetta want floats), confidence to 4
  decimals, `Begin Path` the audio file, `File Offset (s)` the start within it.
  A recording without detections gets one `nocall` row (0 to 3 s, confidence 1.0), so a
  combined table still knows the file; combining drops it. BirdNET 2.4 itself has no
  `Scientific Name` column; we add it after `Common Name`, as BirdNET-Analyzer's next layout does.
- Audacity labels: `start<TAB>end<TAB>Scientific name, Common name<TAB>confidence`, no header;
  empty for a recording without detections.
- BirdNET CSV: `CSV_COLUMNS`; Kaleidoscope CSV: `KALEIDOSCOPE_COLUMNS` (INDIR the grandparent
  folder of the file, FOLDER its folder, lat/lon -1 and week -1 when unknown, as BirdNET's
  defaults); header only for a recording without detections.

Times are written as the shortest decimal of the value rounded to microseconds ("3.0", as
BirdNET's `str(float)`), so they read back equal. CSV fields are quoted only where a comma
or quote needs it (BirdNET never quotes; identical output for names without commas)."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from birdemb.errors import BirdembError

RAVEN_COLUMNS = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                 "High Freq (Hz)", "Common Name", "Scientific Name", "Species Code", "Confidence",
                 "Begin Path", "File Offset (s)")
CSV_COLUMNS = ("Start (s)", "End (s)", "Scientific name", "Common name", "Confidence", "File")
KALEIDOSCOPE_COLUMNS = ("INDIR", "FOLDER", "IN FILE", "OFFSET", "DURATION", "scientific_name", "common_name",
                        "confidence", "lat", "lon", "week", "overlap", "sensitivity")
NOCALL = "nocall"
RAVEN_VIEW, RAVEN_CHANNEL = "Spectrogram 1", "1"
# what a Raven table must hold to be read back (BirdNET 2.4's tables lack `Scientific Name`)
RAVEN_REQUIRED = tuple(c for c in RAVEN_COLUMNS if c != "Scientific Name")
RAVEN_NUMBERS = {"Selection": int, "Channel": int, "Begin Time (s)": float, "End Time (s)": float,
                 "Low Freq (Hz)": float, "High Freq (Hz)": float, "Confidence": float, "File Offset (s)": float}


class DetectionTableError(BirdembError):
    """A detection table that cannot be written or read."""


def decimal(value: float) -> str:
    return str(round(float(value), 6) + 0.0)  # + 0.0: never "-0.0"


def confidence(value: float) -> str:
    return f"{float(value):.4f}"


def clean(text: str) -> str:
    """A name fit for one tab-separated cell on one line."""
    return " ".join(str(text).split())


def label_of(detection) -> str:
    """BirdNET's Audacity label "Scientific name, Common name" (the name alone when it has no other)."""
    scientific, common = clean(detection.scientific), clean(detection.common)
    return f"{scientific}, {common}" if common and common != scientific else scientific or common


def raven_row(selection: int, detection, offset_s: float, options, path: str) -> str:
    """One selection; `offset_s` shifts Begin/End Time onto the table's timeline (0 in a file's
    own table, the preceding recordings' durations in a combined one); `File Offset (s)` is
    always the start within the file."""
    common = clean(detection.common) or clean(detection.scientific)
    cells = (str(selection), RAVEN_VIEW, RAVEN_CHANNEL, decimal(detection.start_s + offset_s),
             decimal(detection.end_s + offset_s), decimal(options.low_hz), decimal(options.high_hz),
             common, clean(detection.scientific), clean(detection.code), confidence(detection.confidence),
             clean(path), decimal(detection.start_s))
    return "\t".join(cells) + "\n"


def nocall_row(selection: int, options, path: str) -> str:
    """BirdNET's placeholder for a recording without detections (0 to 3 s, confidence 1.0)."""
    cells = (str(selection), RAVEN_VIEW, RAVEN_CHANNEL, "0.0", "3.0", decimal(options.low_hz), decimal(options.high_hz),
             NOCALL, NOCALL, NOCALL, "1.0", clean(path), "0.0")
    return "\t".join(cells) + "\n"


def raven_header() -> str:
    return "\t".join(RAVEN_COLUMNS) + "\n"


def raven_file_text(detections, options, path: str) -> str:
    rows = [raven_row(i, d, 0.0, options, path) for i, d in enumerate(detections, 1)]
    return raven_header() + ("".join(rows) if rows else nocall_row(1, options, path))


def audacity_text(detections) -> str:
    return "".join(f"{decimal(d.start_s)}\t{decimal(d.end_s)}\t{label_of(d)}\t{confidence(d.confidence)}\n"
                   for d in detections)


def csv_text(rows, header=None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def csv_rows(detections, path: str) -> list[tuple]:
    return [(decimal(d.start_s), decimal(d.end_s), d.scientific, d.common or d.scientific,
             confidence(d.confidence), path) for d in detections]


def kaleidoscope_rows(detections, options, path: str) -> list[tuple]:
    folder_path, name = os.path.split(path)
    indir, folder = os.path.split(folder_path)
    place = (f"{-1 if options.lat is None else options.lat:.4f}", f"{-1 if options.lon is None else options.lon:.4f}",
             str(-1 if options.week is None else int(options.week)), str(float(options.overlap)),
             str(float(options.sensitivity)))
    return [(indir.rstrip("/"), folder, name, decimal(d.start_s), decimal(d.end_s - d.start_s), d.scientific,
             d.common or d.scientific, confidence(d.confidence), *place) for d in detections]


def read_raven_table(path) -> list[dict]:
    """The rows of a Raven selection table as dicts by column name, numbers as numbers; the
    header must hold BirdNET's columns (`RAVEN_REQUIRED`); blank lines are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DetectionTableError(f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})") from None
    if not lines:
        raise DetectionTableError(f"{path}: empty file, expected a Raven selection table header")
    header = [h.strip() for h in lines[0].split("\t")]
    missing = [c for c in RAVEN_REQUIRED if c not in header]
    if missing:
        raise DetectionTableError(f"{path}: not a BirdNET Raven selection table (no column {', '.join(missing)})")
    rows = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DetectionTableError(f"{path}, line {number}: {len(cells)} cells, the header has {len(header)}")
        row = dict(zip(header, (c.strip() for c in cells)))
        for column, kind in RAVEN_NUMBERS.items():
            if column in row:
                try:
                    row[column] = kind(row[column])
                except ValueError:
                    raise DetectionTableError(f"{path}, line {number}: {column} {row[column]!r} is not a number"
                                              ) from None
        rows.append(row)
    return rows
