"""One long file's rows streamed to disk as they are made, so no process ever holds more than
SPILL_ROWS of them: a 24 h recording extracts in the memory of a 1 min one.

A SpillPart is written by the worker that extracts the file, beside the parts, under hidden
names that only ever match `.part-*.tmp`: first a scratch of row chunks (Arrow IPC), then, once
the file's duration is known (every row carries it), the finished part, re-read one chunk at a
time. The parent then moves it to a part-* name in one rename (PartWriter.adopt). A kill at any
moment leaves only hidden temporaries, which the next job removes: never a half part visible to
readers, never a file's rows twice. Local stores only: on object stores a rename is a copy.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from birdemb.store.files import delete_quietly, write_error
from birdemb.store.location import on_filesystem
from birdemb.store.parts import footer
from birdemb.store.writer import FileRows, rows_to_table

SPILL_ROWS = 512  # windows one file may hold in memory: ~15 MB of BirdNET rows (1,024 + 6,522 floats each), 43 min of audio
SCRATCH_CODEC = "lz4"  # the scratch lives seconds: fast beats small


@dataclass(frozen=True)
class SpillTarget:
    """Where and how a job's long files spill: the partition's local folder, its row schema and
    manifest (as every part's footer carries it), and the most windows held in memory."""

    directory: Path
    schema: pa.Schema
    manifest: dict | None
    max_rows: int = SPILL_ROWS


@dataclass(frozen=True)
class Spill:
    """One file's leave to spill into `target`, with its fingerprint (taken before decoding) for
    the part's footer. Only files stored nowhere yet get one: a changed file's rows replace its
    old ones inside their part, in memory (see PartWriter)."""

    target: SpillTarget
    fingerprint: dict | None


@dataclass(frozen=True)
class Spilled:
    """A file's rows as a complete part under a hidden name, waiting for PartWriter.adopt."""

    path: Path
    file: str
    n_windows: int
    duration_s: float
    fingerprint: dict | None


class SpillPart:
    """Rows of one file, appended chunk by chunk (windows numbered on from the last chunk's),
    closed into a finished hidden part, or discarded. A failed write discards what was written
    and raises one StoreError (a full disk says how to resume)."""

    def __init__(self, spill: Spill, file: str, species: str | None, secondary_labels: list[str]):
        self.spill = spill
        self.file, self.species, self.secondary_labels = file, species, list(secondary_labels)
        stem = spill.target.directory / f".part-spill-{uuid.uuid4().hex[:12]}"
        self.scratch = stem.with_name(f"{stem.name}.rows.tmp")
        self.path = stem.with_name(f"{stem.name}.tmp")
        self.n_windows = 0
        self._sink = self._writer = None

    def append(self, start_s: np.ndarray, end_s: np.ndarray, embedding: np.ndarray, logits: np.ndarray | None):
        schema = self.spill.target.schema
        rows = FileRows(self.file, self.species, self.secondary_labels, float("nan"), start_s, end_s, embedding, logits)
        first, self.n_windows = self.n_windows, self.n_windows + rows.n_windows
        table = _set(rows_to_table([rows], schema), "window", np.arange(first, self.n_windows, dtype=np.int32))
        try:
            if self._writer is None:
                self._sink = pa.OSFile(str(self.scratch), "wb")
                self._writer = pa.ipc.new_file(self._sink, schema,
                                               options=pa.ipc.IpcWriteOptions(compression=SCRATCH_CODEC))
            self._writer.write_table(table)
        except OSError as error:
            self.discard()
            raise write_error(self.path, error) from None

    def close(self, duration_s: float) -> Spilled:
        """The finished part: every chunk with the file's duration, the footer as write_part's."""
        try:
            self._close_scratch()
            schema = self.spill.target.schema
            metadata = footer(self.spill.target.manifest, _prints(self.file, self.spill.fingerprint))
            with pa.OSFile(str(self.scratch), "rb") as source, \
                    pq.ParquetWriter(str(self.path), schema.with_metadata(metadata), compression="zstd") as out:
                chunks = pa.ipc.open_file(source)
                for k in range(chunks.num_record_batches):
                    table = pa.Table.from_batches([chunks.get_batch(k)])
                    out.write_table(_set(table, "file_duration_s", np.full(table.num_rows, duration_s)))
        except OSError as error:
            self.discard()
            raise write_error(self.path, error) from None
        _delete(self.scratch)
        return Spilled(self.path, self.file, self.n_windows, duration_s, self.spill.fingerprint)

    def discard(self) -> None:
        try:
            self._close_scratch()
        except OSError:
            pass
        for path in (self.scratch, self.path):
            _delete(path)

    def _close_scratch(self) -> None:
        writer, sink, self._writer, self._sink = self._writer, self._sink, None, None
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()


def _set(table: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))


def _prints(file: str, fingerprint: dict | None) -> dict:
    return {} if fingerprint is None else {file: fingerprint}


def _delete(path: Path) -> None:
    delete_quietly(*on_filesystem(path))
