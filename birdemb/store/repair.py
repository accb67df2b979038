"""Repairing what `check` finds, without deleting anything the store held: damaged or stray
parts are moved into the partition's _quarantine/ folder (so the next extract redoes exactly
their files), a lost or damaged manifest is rebuilt from the parts' metadata (a damaged one
is set aside first), and half-written lines are dropped from the failure log."""
from __future__ import annotations

import json
from pathlib import Path

from birdemb.store.check import DROP_FAILURE_LINES, QUARANTINE_PART, REBUILD_MANIFEST, Problem, check_partition
from birdemb.store.files import atomic_write_text, move_aside, read_text
from birdemb.store.layout import FAILURES, MANIFEST, QUARANTINE, StoreError
from birdemb.store.location import Folder, as_folder
from birdemb.store.lock import PartitionLock
from birdemb.store.manifest import manifest_from_parts
from birdemb.store.reader import failure_record, partitions


def repair_store(store: str | Path) -> list[str]:
    """Repair every partition with repairable problems; one line per action taken."""
    actions = []
    for _, _, directory in partitions(store):
        if any(p.repair for p in check_partition(directory)):
            actions += repair_partition(directory)
    return actions


def repair_partition(directory: Folder) -> list[str]:
    """Under the partition's lock (no extract may write meanwhile), check again and repair."""
    with PartitionLock(directory):
        problems = check_partition(directory)
        actions = _quarantine_parts(directory, problems)
        if any(p.repair == REBUILD_MANIFEST for p in problems):
            actions += _rebuild_manifest(directory)
        if any(p.repair == DROP_FAILURE_LINES for p in problems):
            actions += _drop_failure_lines(directory)
    return actions


def _quarantine_parts(directory: Folder, problems: list[Problem]) -> list[str]:
    folder = as_folder(directory)
    parts = sorted({p.path for p in problems if p.repair == QUARANTINE_PART})
    return [f"{path}: moved to {move_aside(folder / _name(path), folder / QUARANTINE)}" for path in parts]


def _rebuild_manifest(directory: Folder) -> list[str]:
    folder = as_folder(directory)
    actions = []
    if read_text(folder / MANIFEST, errors="replace") is not None:
        aside = move_aside(folder / MANIFEST, folder / QUARANTINE)
        actions.append(f"{folder / MANIFEST}: damaged copy moved to {aside}")
    try:
        rebuilt = manifest_from_parts(directory)
    except StoreError as error:
        return actions + [f"{folder / MANIFEST}: not rebuilt ({error})"]
    if rebuilt is None:
        return actions + [f"{folder / MANIFEST}: not rebuilt (no parts left to rebuild it from)"]
    atomic_write_text(folder / MANIFEST, json.dumps(rebuilt, indent=1))
    return actions + [f"{folder / MANIFEST}: rebuilt from the parts' metadata"]


def _drop_failure_lines(directory: Folder) -> list[str]:
    path = as_folder(directory) / FAILURES
    lines = (read_text(path, errors="replace") or "").splitlines()
    kept = [line for line in lines if failure_record(line) is not None]
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
    return [f"{path}: dropped {len(lines) - len(kept)} half-written line(s)"]


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]
