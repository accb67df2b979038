"""The feature store: layout, schema, manifest, atomic resumable writes, and scans.

Layout (a contract): STORE/embeddings/model=<model>/dataset=<dataset>/*.parquet, one row per
(file, window). Beside the parts, in the same folder:
  _manifest.json   what produced the rows (model, weights hash, layout, labels, code version)
  _failures.jsonl  one line per file that could not be processed, with the reason
  _lock            held while an extraction writes, so two jobs never interleave
Part files appear only complete (written under a hidden name, then renamed) and each holds
whole files only, so a killed job leaves nothing partial behind.

STORE may be a local folder or a URI that pyarrow's filesystems handle (file://, s3://,
gs://, hdfs://): every function below takes either (see birdemb.location). Object stores have
no atomic rename; there a part becomes visible by one copy of a complete object, which
readers never see half-written, and `_lock` is a best-effort lease instead of an OS lock.
"""
from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from birdemb.location import Folder, Location, as_folder, local_path, on_filesystem

MANIFEST = "_manifest.json"
FAILURES = "_failures.jsonl"
LOCK = "_lock"
PART_GLOB = "part-*.parquet"


class StoreError(Exception):
    """A store that is missing, locked, or written with other parameters."""


def partition_dir(store: str | Path, model: str, dataset: str) -> Folder:
    """The partition's folder: a Path for a local store, a Location for a URI."""
    return as_folder(store) / "embeddings" / f"model={model}" / f"dataset={dataset}"


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


def read_manifest(directory: Folder) -> dict | None:
    text = _read_text(as_folder(directory) / MANIFEST)
    return None if text is None else json.loads(text)


def check_or_write_manifest(directory: Folder, manifest: dict) -> None:
    """Write the manifest for a new partition, or refuse one written with other parameters."""
    _make_dirs(directory)
    existing = read_manifest(directory)
    if existing is None:
        _atomic_write_text(as_folder(directory) / MANIFEST, json.dumps(manifest, indent=1))
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


def _atomic_write_text(path: Folder, text: str) -> None:
    """Write under a hidden name, then move into place (atomic locally; one object copy on
    object stores)."""
    filesystem, target = on_filesystem(path)
    tmp = f"{target.rsplit('/', 1)[0]}/.{path.name}.{uuid.uuid4().hex}.tmp"
    with filesystem.open_output_stream(tmp) as stream:
        stream.write(text.encode("utf-8"))
    filesystem.move(tmp, target)


def _read_text(path: Folder) -> str | None:
    filesystem, target = on_filesystem(path)
    if filesystem.get_file_info(target).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(target) as stream:
        return stream.read().decode("utf-8")


def _make_dirs(directory: Folder) -> None:
    filesystem, target = on_filesystem(as_folder(directory))
    filesystem.create_dir(target, recursive=True)


def _names(directory: Folder, pattern: str) -> list[str]:
    """Sorted names of the files in a folder that match a glob pattern."""
    filesystem, target = on_filesystem(as_folder(directory))
    if filesystem.get_file_info(target).type != pafs.FileType.Directory:
        return []
    entries = filesystem.get_file_info(pafs.FileSelector(target, recursive=False))
    return sorted(e.base_name for e in entries if e.type == pafs.FileType.File and fnmatch.fnmatchcase(e.base_name, pattern))


def _subfolders(directory: Folder, pattern: str) -> list[str]:
    filesystem, target = on_filesystem(directory)
    entries = filesystem.get_file_info(pafs.FileSelector(target, recursive=False))
    return sorted(e.base_name for e in entries if e.type == pafs.FileType.Directory and fnmatch.fnmatchcase(e.base_name, pattern))


def _is_dir(directory: Folder) -> bool:
    filesystem, target = on_filesystem(directory)
    return filesystem.get_file_info(target).type == pafs.FileType.Directory


# ---------------------------------------------------------------- writing


class PartitionLock:
    """An exclusive lock on a partition for the life of one extraction: an OS file lock on
    this machine's filesystem, a best-effort lease (`LeaseLock`) on remote ones."""

    def __init__(self, directory: Folder):
        _make_dirs(directory)
        here = local_path(as_folder(directory))
        self._lease = None if here is not None else LeaseLock(as_folder(directory))
        if self._lease is not None:
            return
        self._handle = open(here / LOCK, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise StoreError(f"{directory} is being written by another job (lock held)") from None

    def release(self) -> None:
        if self._lease is not None:
            self._lease.release()
            return
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class LeaseLock:
    """A lock for filesystems without OS locks (object stores): `_lock` names its holder and
    is renewed every RENEW_S while the job runs; a lease younger than EXPIRE_S is respected,
    an older one was left by a killed job and is taken over. Best effort only: two jobs that
    start within the same second can both win, so run one job per partition."""

    RENEW_S = 20.0
    EXPIRE_S = 90.0

    def __init__(self, directory: Location):
        self.path = directory / LOCK
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        held = self._holder()
        if held is not None and time.time() - held["renewed"] < self.EXPIRE_S and held["token"] != self.token:
            raise StoreError(
                f"{directory} is being written by another job (lease held by {held['token']}, renewed "
                f"{time.time() - held['renewed']:.0f} s ago; it expires {self.EXPIRE_S:.0f} s after the last renewal)"
            )
        self._renew()
        time.sleep(0.2)  # let a job that raced us finish its write, then see who won
        if (self._holder() or {}).get("token") != self.token:
            raise StoreError(f"{directory} is being written by another job (lost the race for {LOCK})")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_renewing, daemon=True, name="birdemb-lease")
        self._thread.start()

    def _holder(self) -> dict | None:
        text = _read_text(self.path)
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            return None  # a torn lease from a killed writer holds nothing

    def _renew(self) -> None:
        _atomic_write_text(self.path, json.dumps({"token": self.token, "renewed": time.time()}))

    def _keep_renewing(self) -> None:
        while not self._stop.wait(self.RENEW_S):
            self._renew()

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        if (self._holder() or {}).get("token") == self.token:
            filesystem, target = on_filesystem(self.path)
            filesystem.delete_file(target)


def remove_stale_temporaries(directory: Folder) -> int:
    """Delete half-written parts left by a killed job (they never had their final name)."""
    stale = _names(directory, ".part-*.tmp")
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
        _atomic_write_text(path, (_read_text(path) or "") + line)


# ---------------------------------------------------------------- reading


def part_files(directory: Folder) -> list[Folder]:
    folder = as_folder(directory)
    return [folder / name for name in _names(folder, PART_GLOB)]


def read_part(part: Folder, columns: list[str] | None = None) -> pa.Table:
    filesystem, target = on_filesystem(part)
    return pq.read_table(target, columns=columns, filesystem=filesystem)


def stored_files(directory: Folder) -> set[str]:
    """Files with rows in a partition (each part holds whole files only)."""
    files: set[str] = set()
    for part in part_files(directory):
        column = read_part(part, columns=["file"]).column("file")
        files.update(column.unique().to_pylist())
    return files


def failures(directory: Folder, stored: set[str] | None = None) -> dict[str, str]:
    """Files whose latest attempt failed and that have no rows: file -> error. `stored`, the
    partition's stored files when the caller has them already, saves reading them again."""
    text = _read_text(as_folder(directory) / FAILURES)
    if text is None:
        return {}
    latest: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            record = json.loads(line)
            latest[record["file"]] = record["error"]
    done = stored_files(directory) if stored is None else stored
    return {f: e for f, e in sorted(latest.items()) if f not in done}


def partitions(store: str | Path) -> list[tuple[str, str, Folder]]:
    """(model, dataset, folder) for every partition in a store."""
    root = as_folder(store) / "embeddings"
    if not _is_dir(root):
        raise StoreError(f"{store}: not a feature store (no embeddings/ folder)")
    found = []
    for model_name in _subfolders(root, "model=*"):
        for data_name in _subfolders(root / model_name, "dataset=*"):
            found.append((model_name.split("=", 1)[1], data_name.split("=", 1)[1], root / model_name / data_name))
    return found


def _lazy_parts(parts: list[Folder]):
    """A polars LazyFrame over part files: polars reads local paths itself; parts on other
    filesystems are read through a pyarrow dataset on that filesystem."""
    import polars as pl

    if all(isinstance(p, Path) for p in parts):
        return pl.scan_parquet([str(p) for p in parts])
    import pyarrow.dataset as ds

    filesystem = parts[0].filesystem
    return pl.scan_pyarrow_dataset(ds.dataset([p.path for p in parts], filesystem=filesystem, format="parquet"))


def scan(store: str | Path, model: str, dataset: str | None = None):
    """A polars LazyFrame over one model's rows (one dataset, or all), with `model` and
    `dataset` columns from the hive layout."""
    import polars as pl

    parts = [p for m, d, p in partitions(store) if m == model and (dataset is None or d == dataset)]
    if not parts:
        what = f"model={model}" + (f", dataset={dataset}" if dataset else "")
        raise StoreError(f"{store}: no rows for {what}")
    paths = [p for d in parts for p in part_files(d)]
    if not paths:
        raise StoreError(f"{store}: the partition for model={model} has no complete parts yet")
    if all(isinstance(p, Path) for p in paths):
        return pl.scan_parquet(
            [str(p) for p in paths], hive_partitioning=True, hive_schema={"model": pl.String, "dataset": pl.String}
        )
    # model and dataset as the hive layout gives them, after the stored columns
    frames = [
        _lazy_parts(part_files(d)).with_columns(model=pl.lit(m, pl.String), dataset=pl.lit(s, pl.String))
        for m, s, d in partitions(store)
        if m == model and (dataset is None or s == dataset) and part_files(d)
    ]
    return pl.concat(frames, how="vertical")


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
        stored: set[str] = set()
        if parts:
            frame = _lazy_parts(parts).select("file", "species", "file_duration_s")
            per_file = frame.group_by("file").agg(
                pl.len().alias("windows"), pl.first("file_duration_s"), pl.first("species")
            ).collect()
            stored = set(per_file["file"].to_list())
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
                "failures": len(failures(directory, stored)),
                "embedding_dim": meta.get("embedding_dim"),
                "n_labels": meta.get("n_labels"),
                "window_s": params.get("layout", {}).get("window_s"),
                "sample_rate": params.get("layout", {}).get("sample_rate"),
                "weights_sha256": params.get("weights_sha256", "")[:12],
                "path": str(directory),
            }
        )
    return summaries


def join(store, embeddings_model: str, logits_model: str, dataset: str | None = None):
    """One model's embeddings beside another model's logits on (dataset, file, window), after
    checking both came from the same files and window layout (see birdemb.joins)."""
    from birdemb.joins import join as join_models  # joins builds on this module

    return join_models(store, embeddings_model, logits_model, dataset)
