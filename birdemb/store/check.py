"""Verifying a store: every partition's manifest, parts and failure log, as problem records.

Each Problem names the file at fault, says what is wrong in one line, and says which repair
(birdemb.store.repair) fixes it, if one can without a person's judgement.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from birdemb.store.files import read_text
from birdemb.store.layout import FAILURES, MANIFEST, StoreError
from birdemb.store.location import Folder, as_folder
from birdemb.store.manifest import canonical, describe_groups, differences, parameter_groups
from birdemb.store.parts import PartMeta, meta_of, open_part, part_files
from birdemb.store.reader import failure_log, partitions
from birdemb.store.writer import schema as row_schema

QUARANTINE_PART = "quarantine"  # move the part aside; the next extract redoes its files
REBUILD_MANIFEST = "rebuild manifest"  # from the parts' metadata
DROP_FAILURE_LINES = "drop failure lines"  # rewrite the log without its half-written lines
SHOWN = 3


@dataclass(frozen=True)
class Problem:
    path: str
    problem: str
    repair: str | None = None  # None: needs a person

    def line(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class PartReport:
    """One part read whole: its footer, and every file's window numbers (None when unreadable)."""

    part: Folder
    meta: PartMeta | None = None
    windows: dict[str, list[int]] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Report:
    partitions: int = 0
    parts: int = 0
    files: int = 0
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        state = "clean" if not self.problems else f"{len(self.problems)} problem(s)"
        return f"{self.partitions} partition(s), {self.parts} part(s), {self.files} file(s) checked: {state}"


def check_store(store: str | Path) -> Report:
    report = Report()
    for _, _, directory in partitions(store):
        parts = [read_whole(part) for part in part_files(directory)]
        report.partitions += 1
        report.parts += len(parts)
        report.files += len({file for p in parts for file in p.windows})
        report.problems += check_partition(directory, parts)
    return report


def read_whole(part: Folder) -> PartReport:
    """The footer and every row group: a part pyarrow reads this far is readable."""
    report = PartReport(part)
    try:
        handle = open_part(part)
        report.meta = meta_of(handle.schema_arrow)
        for group in range(handle.num_row_groups):
            table = handle.read_row_group(group)
            for file, window in zip(table.column("file").to_pylist(), table.column("window").to_pylist()):
                report.windows.setdefault(file, []).append(window)
    except (pa.ArrowException, OSError, ValueError, KeyError) as error:
        report.error = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return report


def check_partition(directory: Folder, parts: list[PartReport] | None = None) -> list[Problem]:
    parts = [read_whole(part) for part in part_files(directory)] if parts is None else parts
    readable = [p for p in parts if p.error is None]
    problems = [Problem(str(p.part), f"unreadable part ({p.error})", QUARANTINE_PART) for p in parts if p.error]
    manifest, manifest_problems = _check_manifest(directory, readable)
    problems += manifest_problems
    problems += _check_parameters(manifest, readable)
    problems += _check_schemas(manifest, readable)
    problems += _check_windows(readable)
    problems += _check_duplicates(readable)
    problems += _check_failures(directory)
    return problems


def _check_manifest(directory: Folder, parts: list[PartReport]) -> tuple[dict | None, list[Problem]]:
    """The partition's manifest (None when lost or damaged) and what is wrong with it."""
    path = as_folder(directory) / MANIFEST
    what = "damaged manifest (no `parameters`)"
    try:
        text = read_text(path)
        found = None if text is None else json.loads(text)
    except ValueError as error:  # not JSON, or cut inside a character
        text, found, what = "", None, f"damaged manifest, not valid JSON ({error})"
    if isinstance(found, dict) and isinstance(found.get("parameters"), dict):
        return found, []
    if text is None:
        if not parts:
            return None, []  # an empty partition: nothing written yet
        what = "manifest missing"
    repair = REBUILD_MANIFEST if _rebuildable(parts) else None
    return None, [Problem(str(path), f"{what}; {_rebuild_note(parts)}", repair)]


def _rebuildable(parts: list[PartReport]) -> bool:
    manifests = {p.part.name: p.meta.manifest for p in parts}
    return bool(manifests) and None not in manifests.values() and len(parameter_groups(manifests)) == 1


def _rebuild_note(parts: list[PartReport]) -> str:
    if _rebuildable(parts):
        return "repair rebuilds it from the parts' metadata"
    bare = [p.part.name for p in parts if p.meta.manifest is None]
    if not parts:
        return "no readable part to rebuild it from"
    if bare:
        return (f"{_names(bare)} carry no parameters (written before parts did): restore {MANIFEST} "
                "from a backup, or extract into a new `dataset`")
    groups = parameter_groups({p.part.name: p.meta.manifest for p in parts})
    return f"parts disagree on parameters ({describe_groups(groups)}): quarantine the wrong ones by hand"


def _check_parameters(manifest: dict | None, parts: list[PartReport]) -> list[Problem]:
    if manifest is None:
        return []
    expected = manifest["parameters"]
    return [
        Problem(str(p.part), f"written with other parameters than {MANIFEST} "
                f"({differences(expected, p.meta.manifest['parameters'], '{key}: manifest {old!r}, part {new!r}')})",
                QUARANTINE_PART)
        for p in parts
        if p.meta.manifest is not None and canonical(p.meta.manifest["parameters"]) != canonical(expected)
    ]


def _check_schemas(manifest: dict | None, parts: list[PartReport]) -> list[Problem]:
    expected = _expected_schema(manifest, parts)
    return [
        Problem(str(p.part), f"columns differ from the partition's ({_schema_difference(expected, p.meta.schema)})",
                QUARANTINE_PART)
        for p in parts
        if expected is not None and not p.meta.schema.equals(expected)
    ]


def _expected_schema(manifest: dict | None, parts: list[PartReport]) -> pa.Schema | None:
    """From the manifest's shapes when it has them, else the schema most parts share."""
    if manifest is not None and manifest.get("embedding_dim"):
        return row_schema(manifest["embedding_dim"], manifest.get("n_labels"))
    if not parts:
        return None
    schemas = [p.meta.schema for p in parts]
    return max(schemas, key=lambda s: sum(s.equals(t) for t in schemas))


def _schema_difference(expected: pa.Schema, found: pa.Schema) -> str:
    lines = [f"{f.name}: {f.type}" for f in found if f.name not in expected.names or expected.field(f.name) != f]
    missing = [name for name in expected.names if name not in found.names]
    return "; ".join(lines + [f"{name} missing" for name in missing]) or "field order or nullability"


def _check_windows(parts: list[PartReport]) -> list[Problem]:
    problems = []
    for p in parts:
        broken = sorted(file for file, windows in p.windows.items() if sorted(windows) != list(range(len(windows))))
        if broken:
            problems.append(Problem(str(p.part), f"windows not numbered 0, 1, ... for {_names(broken)}",
                                    QUARANTINE_PART))
    return problems


def _check_duplicates(parts: list[PartReport]) -> list[Problem]:
    """A file's rows in two parts: the older part (names sort by time) is the one set aside."""
    holder: dict[str, PartReport] = {}
    doubled: dict[str, tuple[str, list[str]]] = {}  # older part -> (newer part, files)
    for p in sorted(parts, key=lambda p: p.part.name, reverse=True):
        for file in p.windows:
            if file in holder:
                doubled.setdefault(str(p.part), (holder[file].part.name, []))[1].append(file)
            else:
                holder[file] = p
    return [
        Problem(older, f"{len(files)} file(s) also stored in {newer}: {_names(sorted(files))}", QUARANTINE_PART)
        for older, (newer, files) in sorted(doubled.items())
    ]


def _check_failures(directory: Folder) -> list[Problem]:
    try:
        log = failure_log(directory)
    except (StoreError, OSError) as error:
        return [Problem(str(as_folder(directory) / FAILURES), f"unreadable ({error})", None)]
    path = str(as_folder(directory) / FAILURES)
    return [Problem(path, f"line {n} is half-written (not a JSON record)", DROP_FAILURE_LINES) for n in log.bad_lines]


def _names(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
