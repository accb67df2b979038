"""The app's labels: every yes / no / unsure decision, saved at once and never lost.

Two files, side by side, both rewritten whole at each click:

  annotations.csv            the plain form `file,start_s,end_s,label` that `train-head
                             --annotations` reads: one event per window and species decided YES
  annotations.decisions.csv  every decision (`file,start_s,end_s,label,decision`, decision yes,
                             no or unsure): the source of truth; annotations.csv is derived from it

A "no" is not an event: with `--labels annotations` a window of an annotated file is negative
for every species without an overlapping event, so no and unsure need no line in the plain CSV
(they are kept for the review queue and for the person). Each write takes an exclusive lock
(fcntl on `<file>.lock`), re-reads the decisions, applies the one change, writes temporary
files and os.replace()s them, so two browser tabs clicking at once both land and a reader never
sees half a file."""
from __future__ import annotations

import csv
import fcntl
import io
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from birdemb.errors import BirdembError
from birdemb.labels.annotations import PLAIN_COLUMNS

DECISIONS = ("yes", "no", "unsure")
DECISION_COLUMNS = (*PLAIN_COLUMNS, "decision")


class LabelsError(BirdembError):
    """A labels file that cannot be read or written."""


@dataclass(frozen=True)
class Decision:
    file: str
    start_s: float
    end_s: float
    label: str
    decision: str

    @property
    def key(self) -> tuple[str, float, str]:
        return (self.file, round(self.start_s, 3), self.label)


def decisions_path(annotations: str | Path) -> Path:
    path = Path(annotations)
    return path.with_name(path.stem + ".decisions.csv")


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_decisions(annotations: str | Path) -> dict[tuple, Decision]:
    """The latest decision per (file, start, label); {} before the first click."""
    path = decisions_path(annotations)
    if not path.is_file():
        return {}
    found: dict[tuple, Decision] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not set(DECISION_COLUMNS) <= set(reader.fieldnames):
            raise LabelsError(f"{path}: expected the columns {','.join(DECISION_COLUMNS)}")
        for number, row in enumerate(reader, start=2):
            try:
                decision = Decision(row["file"], float(row["start_s"]), float(row["end_s"]), row["label"],
                                    row["decision"])
            except (TypeError, ValueError):
                raise LabelsError(f"{path}, line {number}: not a decision ({row})") from None
            found[decision.key] = decision
    return found


def _csv_text(columns, rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def _replace(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_all(annotations: str | Path, decisions: dict[tuple, Decision]) -> None:
    """Both files from `decisions` (the caller holds the lock)."""
    path = Path(annotations)
    ordered = sorted(decisions.values(), key=lambda d: (d.file, d.start_s, d.label))
    _replace(decisions_path(path), _csv_text(DECISION_COLUMNS, [
        (d.file, f"{d.start_s:g}", f"{d.end_s:g}", d.label, d.decision) for d in ordered]))
    _replace(path, _csv_text(PLAIN_COLUMNS, [
        (d.file, f"{d.start_s:g}", f"{d.end_s:g}", d.label) for d in ordered if d.decision == "yes"]))


def record(annotations: str | Path, file: str, start_s: float, end_s: float, label: str, decision: str) -> Decision:
    """Save one decision now (replacing an earlier one for the same window and label)."""
    if decision not in DECISIONS:
        raise LabelsError(f"{decision!r}: a decision is one of {', '.join(DECISIONS)}")
    made = Decision(file, float(start_s), float(end_s), label, decision)
    path = Path(annotations)
    try:
        with _locked(path):
            decisions = read_decisions(path)  # re-read under the lock: another tab may have written
            decisions[made.key] = made
            write_all(path, decisions)
    except OSError as error:
        raise LabelsError(f"{path}: cannot save the label ({error.strerror or error})") from None
    return made
