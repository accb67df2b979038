"""Writing rows: the Parquet schema, whole files buffered into parts written atomically,
failures recorded, and half-written parts of a killed job removed."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from birdemb.store.files import atomic_write_text, file_names, read_text
from birdemb.store.layout import FAILURES
from birdemb.store.location import Folder, as_folder, local_path, on_filesystem


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
    """Delete half-written parts left by a killed job (they never had their final name)."""
    stale = file_names(directory, ".part-*.tmp")
    filesystem, target = on_filesystem(as_folder(directory))
    for name in stale:
        try:
            filesystem.delete_file(f"{target}/{name}")
        except FileNotFoundError:
            pass
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

    @property
    def n_windows(self) -> int:
        return len(self.start_s)


class PartWriter:
    """Buffers whole files and writes them as one part, atomically, when asked to flush."""

    def __init__(self, directory: Folder, part_schema: pa.Schema):
        self.directory = as_folder(directory)
        self.schema = part_schema
        self._pending: list[FileRows] = []

    @property
    def pending_files(self) -> int:
        return len(self._pending)

    def add(self, rows: FileRows) -> None:
        self._pending.append(rows)

    def flush(self) -> Folder | None:
        if not self._pending:
            return None
        table = rows_to_table(self._pending, self.schema)
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.parquet"
        filesystem, target = on_filesystem(self.directory)
        tmp = f"{target}/.{name}.tmp"
        pq.write_table(table, tmp, compression="zstd", filesystem=filesystem)
        filesystem.move(tmp, f"{target}/{name}")  # only complete parts get a part-* name
        self._pending = []
        return self.directory / name


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


def record_failure(directory: Folder, file: str, error: str) -> None:
    line = json.dumps({"file": file, "error": error, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n"
    here = local_path(as_folder(directory))
    if here is not None:
        with open(here / FAILURES, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
        return
    path = as_folder(directory) / FAILURES
    filesystem, target = on_filesystem(path)
    try:
        with filesystem.open_append_stream(target) as stream:
            stream.write(line.encode("utf-8"))
    except (NotImplementedError, pa.ArrowNotImplementedError):  # object stores cannot append
        atomic_write_text(path, (read_text(path) or "") + line)
