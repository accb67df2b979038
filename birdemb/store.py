"""The feature store: layout, schema, manifest, atomic resumable writes, and scans.

Layout (a contract): STORE/embeddings/model=<model>/dataset=<dataset>/*.parquet, one row per
(file, window). Beside the parts, in the same folder:
  _manifest.json   what produced the rows (model, weights hash, layout, labels, code version)
  _failures.jsonl  one line per file that could not be processed, with the reason
  _lock            held while an extraction writes, so two jobs never interleave
Part files appear only complete (written under a hidden name, then renamed) and each holds
whole files only, so a killed job leaves nothing partial behind.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "_manifest.json"
FAILURES = "_failures.jsonl"
LOCK = "_lock"
PART_GLOB = "part-*.parquet"


class StoreError(Exception):
    """A store that is missing, locked, or written with other parameters."""


def partition_dir(store: str | Path, model: str, dataset: str) -> Path:
    return Path(store) / "embeddings" / f"model={model}" / f"dataset={dataset}"


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


# ---------------------------------------------------------------- manifest


def read_manifest(directory: Path) -> dict | None:
    path = Path(directory) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def check_or_write_manifest(directory: Path, manifest: dict) -> None:
    """Write the manifest for a new partition, or refuse one written with other parameters."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = read_manifest(directory)
    if existing is None:
        _atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=1))
        return
    old, new = existing["parameters"], manifest["parameters"]
    differences = [
        f"{key}: stored {old.get(key)!r}, asked {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    if differences:
        raise StoreError(
            f"{directory} was written with other parameters ({'; '.join(differences)}); "
            "use another --dataset or --store"
        )


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- writing


class PartitionLock:
    """An exclusive lock on a partition for the life of one extraction."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self._handle = open(directory / LOCK, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise StoreError(f"{directory} is being written by another job (lock held)") from None

    def release(self) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def remove_stale_temporaries(directory: Path) -> int:
    """Delete half-written parts left by a killed job (they never had their final name)."""
    stale = list(Path(directory).glob(".part-*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
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

    def __init__(self, directory: Path, part_schema: pa.Schema):
        self.directory = Path(directory)
        self.schema = part_schema
        self._pending: list[FileRows] = []

    @property
    def pending_files(self) -> int:
        return len(self._pending)

    def add(self, rows: FileRows) -> None:
        self._pending.append(rows)

    def flush(self) -> Path | None:
        if not self._pending:
            return None
        table = rows_to_table(self._pending, self.schema)
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = self.directory / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, self.directory / name)
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


def record_failure(directory: Path, file: str, error: str) -> None:
    line = json.dumps({"file": file, "error": error, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    with open(Path(directory) / FAILURES, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()


# ---------------------------------------------------------------- reading


def part_files(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob(PART_GLOB))


def stored_files(directory: Path) -> set[str]:
    """Files with rows in a partition (each part holds whole files only)."""
    files: set[str] = set()
    for part in part_files(directory):
        column = pq.read_table(part, columns=["file"]).column("file")
        files.update(column.unique().to_pylist())
    return files


def failures(directory: Path) -> dict[str, str]:
    """Files whose latest attempt failed and that have no rows: file -> error."""
    path = Path(directory) / FAILURES
    if not path.exists():
        return {}
    latest: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            latest[record["file"]] = record["error"]
    done = stored_files(directory)
    return {f: e for f, e in sorted(latest.items()) if f not in done}


def partitions(store: str | Path) -> list[tuple[str, str, Path]]:
    """(model, dataset, folder) for every partition in a store."""
    root = Path(store) / "embeddings"
    if not root.is_dir():
        raise StoreError(f"{store}: not a feature store (no embeddings/ folder)")
    found = []
    for model_dir in sorted(root.glob("model=*")):
        for data_dir in sorted(model_dir.glob("dataset=*")):
            found.append((model_dir.name.split("=", 1)[1], data_dir.name.split("=", 1)[1], data_dir))
    return found


def scan(store: str | Path, model: str, dataset: str | None = None):
    """A polars LazyFrame over one model's rows (one dataset, or all), with `model` and
    `dataset` columns from the hive layout."""
    import polars as pl

    parts = [p for m, d, p in partitions(store) if m == model and (dataset is None or d == dataset)]
    if not parts:
        what = f"model={model}" + (f", dataset={dataset}" if dataset else "")
        raise StoreError(f"{store}: no rows for {what}")
    paths = [str(p) for d in parts for p in part_files(d)]
    if not paths:
        raise StoreError(f"{store}: the partition for model={model} has no complete parts yet")
    return pl.scan_parquet(paths, hive_partitioning=True, hive_schema={"model": pl.String, "dataset": pl.String})


def manifest(store: str | Path, model: str, dataset: str) -> dict:
    found = read_manifest(partition_dir(store, model, dataset))
    if found is None:
        raise StoreError(f"{store}: no manifest for model={model}, dataset={dataset}")
    return found


def info(store: str | Path) -> list[dict]:
    """One summary per partition: files, windows, audio hours, failures, shapes."""
    import polars as pl

    summaries = []
    for model, dataset, directory in partitions(store):
        meta = read_manifest(directory) or {}
        parts = part_files(directory)
        stats = {"files": 0, "windows": 0, "audio_h": 0.0, "species": 0}
        if parts:
            frame = pl.scan_parquet([str(p) for p in parts]).select("file", "species", "file_duration_s")
            per_file = frame.group_by("file").agg(
                pl.len().alias("windows"), pl.first("file_duration_s"), pl.first("species")
            ).collect()
            stats = {
                "files": per_file.height,
                "windows": int(per_file["windows"].sum()),
                "audio_h": float(per_file["file_duration_s"].sum()) / 3600,
                "species": per_file["species"].drop_nulls().n_unique(),
            }
        params = meta.get("parameters", {})
        summaries.append(
            {
                "model": model,
                "dataset": dataset,
                **stats,
                "parts": len(parts),
                "failures": len(failures(directory)),
                "embedding_dim": meta.get("embedding_dim"),
                "n_labels": meta.get("n_labels"),
                "window_s": params.get("layout", {}).get("window_s"),
                "sample_rate": params.get("layout", {}).get("sample_rate"),
                "weights_sha256": params.get("weights_sha256", "")[:12],
                "path": str(directory),
            }
        )
    return summaries
