"""Writing rows: the Parquet schema, whole files buffered into parts written atomically,
stored files whose audio changed replaced in place, failures recorded, and half-written
temporaries of a killed job removed."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from birdemb.store.files import atomic_write_text, delete_quietly, file_names, read_text, write_error
from birdemb.store.layout import FAILURES, TEMPORARY_GLOBS, StoreError
from birdemb.store.location import Folder, as_folder, local_path, on_filesystem
from birdemb.store.manifest import read_manifest
from birdemb.store.parts import part_name, read_meta, read_part, write_part


def schema(embedding_dim: int, n_labels: int | None) -> pa.Schema:
    logits_type = pa.list_(pa.float32(), n_labels) if n_labels else pa.null()  # no classifier
    return pa.schema(
        [
            pa.field("file", pa.string(), nullable=False),
            pa.field("species", pa.string()),
            pa.field("secondary_labels", pa.list_(pa.string())),
            pa.field("window", pa.int32(), nullable=False),
            pa.field("start_s", pa.float64(), nullable=False),
            pa.field("end_s", pa.float64(), nullable=False),
            pa.field("file_duration_s", pa.float64(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), embedding_dim), nullable=False),
            pa.field("logits", logits_type),
        ]
    )


def remove_stale_temporaries(directory: Folder) -> int:
    """Delete half-written parts and manifests left by a killed job (they never had their
    final name). Call only while holding the partition's lock."""
    stale = [name for pattern in TEMPORARY_GLOBS for name in file_names(directory, pattern)]
    filesystem, target = on_filesystem(as_folder(directory))
    for name in stale:
        delete_quietly(filesystem, f"{target}/{name}")
    return len(stale)


@dataclass
class FileRows:
    """Every window of one audio file, ready to store."""

    file: str
    species: str | None
    secondary_labels: list[str]
    duration_s: float
    start_s: np.ndarray
    end_s: np.ndarray
    embedding: np.ndarray  # [n, dim] float32
    logits: np.ndarray | None  # [n, labels] float32
    fingerprint: dict | None = None  # of the audio file the rows came from (see parts.fingerprint)

    @property
    def n_windows(self) -> int:
        return len(self.start_s)


class PartWriter:
    """Buffers whole files and writes them as parts, atomically, when asked to flush.

    Each part carries the partition's manifest and its files' fingerprints in its footer.
    A file already stored (`stored`: file -> the part holding it) is replaced where it
    lies: its part is rewritten with the new rows instead of the old ones and moved over
    itself in one rename, so a reader (or a kill) sees the old version or the new one,
    never both and never neither.

    With `flush_windows`, `add` flushes by itself once that many windows are pending, so the
    rows held stay bounded however long the files (a job passes its spill bound)."""

    def __init__(self, directory: Folder, part_schema: pa.Schema, manifest: dict | None = None,
                 stored: dict[str, Folder] | None = None, flush_windows: int | None = None):
        self.directory = as_folder(directory)
        self.schema = part_schema
        self.manifest = manifest if manifest is not None else read_manifest(self.directory)
        self.stored = dict(stored or {})
        self.flush_windows = flush_windows
        self._pending: list[FileRows] = []

    @property
    def pending_files(self) -> int:
        return len(self._pending)

    @property
    def pending_windows(self) -> int:
        return sum(rows.n_windows for rows in self._pending)

    def add(self, rows: FileRows) -> None:
        self._pending.append(rows)
        if self.flush_windows is not None and self.pending_windows >= self.flush_windows:
            self.flush()

    def flush(self) -> Folder | None:
        """Write what is pending: new files as one new part (returned), replaced files into
        their parts. What was written leaves the buffer at once, so a flush that fails (a
        full disk) and is retried never writes a file twice."""
        new = [rows for rows in self._pending if rows.file not in self.stored]
        written = None
        if new:
            written = self.directory / part_name()
            write_part(written, rows_to_table(new, self.schema), self.manifest, _prints(new))
            self._pending = [rows for rows in self._pending if rows.file in self.stored]
        while self._pending:
            old_part = self.stored[self._pending[0].file]
            group = [rows for rows in self._pending if self.stored[rows.file] == old_part]
            self._replace(old_part, group)
            self._pending = [rows for rows in self._pending if self.stored[rows.file] != old_part]
        return written

    def adopt(self, spilled) -> Folder:
        """Give a spilled file's finished hidden part (store.spill.Spilled) its part-* name, in
        one rename: readers see the whole file or nothing. Only files stored nowhere yet spill;
        a stored file's rows are replaced in memory, inside the part that holds them."""
        if spilled.file in self.stored:
            delete_quietly(*on_filesystem(as_folder(spilled.path)))
            raise StoreError(f"{spilled.path}: {spilled.file} is already stored in {self.stored[spilled.file]}; "
                             "a stored file's new rows are written in memory, not spilled")
        part = self.directory / part_name()
        filesystem, target = on_filesystem(part)
        try:
            filesystem.move(on_filesystem(as_folder(spilled.path))[1], target)
        except OSError as error:
            delete_quietly(*on_filesystem(as_folder(spilled.path)))
            raise write_error(part, error) from None
        self.stored[spilled.file] = part
        return part

    def _replace(self, part: Folder, files: list[FileRows]) -> None:
        names = [rows.file for rows in files]
        old = read_part(part)
        kept = old.filter(pc.invert(pc.is_in(old.column("file"), value_set=pa.array(names, pa.string()))))
        kept = kept.replace_schema_metadata(None).cast(self.schema)
        table = pa.concat_tables([kept, rows_to_table(files, self.schema)])
        prints = {f: p for f, p in read_meta(part).fingerprints.items() if f not in names} | _prints(files)
        write_part(part, table, self.manifest, prints)


def _prints(files: list[FileRows]) -> dict:
    return {rows.file: rows.fingerprint for rows in files if rows.fingerprint is not None}


def rows_to_table(files: list[FileRows], part_schema: pa.Schema) -> pa.Table:
    counts = [f.n_windows for f in files]
    dim = part_schema.field("embedding").type.list_size
    logits_type = part_schema.field("logits").type

    def repeat(values):
        return [v for v, n in zip(values, counts) for _ in range(n)]

    embedding = np.concatenate([f.embedding for f in files]).astype(np.float32, copy=False)
    columns = {
        "file": pa.array(repeat([f.file for f in files]), pa.string()),
        "species": pa.array(repeat([f.species for f in files]), pa.string()),
        "secondary_labels": pa.array(repeat([f.secondary_labels for f in files]), pa.list_(pa.string())),
        "window": pa.array(np.concatenate([np.arange(n, dtype=np.int32) for n in counts])),
        "start_s": pa.array(np.concatenate([f.start_s for f in files]).astype(np.float64)),
        "end_s": pa.array(np.concatenate([f.end_s for f in files]).astype(np.float64)),
        "file_duration_s": pa.array(repeat([f.duration_s for f in files]), pa.float64()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embedding.reshape(-1)), dim),
    }
    if files[0].logits is None:
        columns["logits"] = pa.nulls(sum(counts), logits_type)
    else:
        logits = np.concatenate([f.logits for f in files]).astype(np.float32, copy=False)
        columns["logits"] = pa.FixedSizeListArray.from_arrays(
            pa.array(logits.reshape(-1)), logits_type.list_size
        )
    return pa.Table.from_pydict(columns, schema=part_schema)


def record_failure(directory: Folder, file: str, error: str, fingerprint: dict | None = None) -> None:
    """Append one JSON line. A line left half-written by a killed job is closed first, so it
    stays one bad line (readers skip it) and never swallows this one."""
    record = {"file": file, "error": error, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if fingerprint is not None:
        record["fingerprint"] = fingerprint
    line = json.dumps(record) + "\n"
    path = as_folder(directory) / FAILURES
    try:
        _append(path, line)
    except OSError as failure:
        raise write_error(path, failure) from None


def _append(path: Folder, line: str) -> None:
    here = local_path(path)
    if here is not None:
        with open(here, "a+b") as handle:
            if handle.tell() > 0:
                handle.seek(handle.tell() - 1)
                if handle.read(1) != b"\n":
                    line = "\n" + line
            handle.write(line.encode("utf-8"))
            handle.flush()
        return
    filesystem, target = on_filesystem(path)
    existing = read_text(path) or ""
    if existing and not existing.endswith("\n"):
        line = "\n" + line
    try:
        with filesystem.open_append_stream(target) as stream:
            stream.write(line.encode("utf-8"))
    except (NotImplementedError, pa.ArrowNotImplementedError):  # object stores cannot append
        atomic_write_text(path, existing + line)
