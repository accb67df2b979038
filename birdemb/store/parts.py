"""Part files one at a time: written atomically with their own metadata (the manifest they
were written under and the fingerprint of every audio file they hold), read with damage
reported as a StoreError that names the part.

Fingerprints live in the part's footer, not in a column or a sidecar: they appear and
disappear with the rows they describe (one atomic rename), a kill can never leave them out
of step, and the row schema (which old parts and every reader share) stays as it was.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from birdemb.store.files import delete_quietly, file_names, write_error
from birdemb.store.layout import FINGERPRINTS_KEY, PART_GLOB, PART_MANIFEST_KEY, StoreError, check_hint
from birdemb.store.location import Folder, as_folder, on_filesystem


def part_files(directory: Folder) -> list[Folder]:
    folder = as_folder(directory)
    return [folder / name for name in file_names(folder, PART_GLOB)]


def fingerprint(path) -> dict | None:
    """What tells a changed audio file: its size and modification time (ns). A repaired or
    re-encoded copy changes both; reading the content would cost a pass over the corpus on
    every run. None when the file cannot be stat'ed (the worker then reports why)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def damaged(part: Folder, error: BaseException) -> StoreError:
    reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return StoreError(f"{part}: damaged or unreadable part ({reason}); {check_hint(as_folder(part).parent)}")


@dataclass
class PartMeta:
    """What a part's footer says: its manifest (None for parts written before parts carried
    one), its files' fingerprints, and its row schema without metadata."""

    manifest: dict | None
    fingerprints: dict = field(default_factory=dict)
    schema: pa.Schema | None = None


def open_part(part: Folder) -> pq.ParquetFile:
    filesystem, target = on_filesystem(part)
    return pq.ParquetFile(filesystem.open_input_file(target))


def meta_of(schema: pa.Schema) -> PartMeta:
    values = schema.metadata or {}
    manifest = json.loads(values[PART_MANIFEST_KEY]) if PART_MANIFEST_KEY in values else None
    prints = json.loads(values[FINGERPRINTS_KEY]) if FINGERPRINTS_KEY in values else {}
    return PartMeta(manifest, prints, schema.remove_metadata())


def read_meta(part: Folder) -> PartMeta:
    """The part's footer only (cheap); a part cut short has none."""
    try:
        return meta_of(open_part(part).schema_arrow)
    except (pa.ArrowException, OSError, ValueError) as error:  # ValueError: JSON in the metadata
        raise damaged(part, error) from None


def read_part(part: Folder, columns: list[str] | None = None) -> pa.Table:
    try:
        filesystem, target = on_filesystem(part)
        return pq.read_table(target, columns=columns, filesystem=filesystem)
    except (pa.ArrowException, OSError) as error:
        raise damaged(part, error) from None


def column_matrix(table: pa.Table, name: str) -> np.ndarray:
    """A fixed-size list column (embedding, logits) of rows read from parts as one [rows, size]
    array, without a Python object per row."""
    column = table.column(name).combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(table), column.type.list_size)


def part_name() -> str:
    """Names sort in the order parts were written (to the microsecond), and never collide."""
    now = time.time()
    stamp = f"{time.strftime('%Y%m%dT%H%M%S', time.localtime(now))}.{int(now % 1 * 1e6):06d}"
    return f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"


def footer(manifest: dict | None, fingerprints: dict) -> dict[bytes, bytes]:
    """A part's key-value metadata: its manifest and its files' fingerprints."""
    values = {FINGERPRINTS_KEY: json.dumps(fingerprints, sort_keys=True).encode()}
    if manifest is not None:
        values[PART_MANIFEST_KEY] = json.dumps(manifest, sort_keys=True).encode()
    return values


def write_part(part: Folder, table: pa.Table, manifest: dict | None, fingerprints: dict) -> None:
    """Write under a hidden name, then move into place (over an older version of the same
    part, if any): readers see the old part or the new one, never half of one. A failed write
    leaves no temporary and ends in one StoreError (a full disk says how to resume)."""
    table = table.replace_schema_metadata(footer(manifest, fingerprints))
    filesystem, target = on_filesystem(part)
    tmp = f"{target.rsplit('/', 1)[0]}/.{as_folder(part).name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd", filesystem=filesystem)
        filesystem.move(tmp, target)  # only complete parts get a part-* name
    except OSError as error:
        delete_quietly(filesystem, tmp)
        raise write_error(part, error) from None


@dataclass(frozen=True)
class Stored:
    """Where a file's rows are, and the fingerprint of the audio they came from (None in
    parts written before parts carried fingerprints)."""

    part: Folder
    fingerprint: dict | None


def part_contents(part: Folder) -> tuple[PartMeta, list[str]]:
    """A part's footer metadata and the files it holds, from one open."""
    try:
        handle = open_part(part)
        meta = meta_of(handle.schema_arrow)
        return meta, handle.read(columns=["file"]).column("file").unique().to_pylist()
    except (pa.ArrowException, OSError, ValueError) as error:
        raise damaged(part, error) from None


def stored_index(directory: Folder) -> dict[str, Stored]:
    """file -> Stored for every file with rows in the partition (each part holds whole files)."""
    index: dict[str, Stored] = {}
    for part in part_files(directory):
        meta, files = part_contents(part)
        for file in files:
            index[file] = Stored(part, meta.fingerprints.get(file))
    return index
