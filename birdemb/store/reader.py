"""Reading the store: partitions, part files, stored files and failures, polars scans,
manifests and a summary per partition."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from birdemb.store.files import file_names, is_dir, read_text, subfolders
from birdemb.store.layout import FAILURES, PART_GLOB, StoreError, partition_dir
from birdemb.store.location import Folder, as_folder, on_filesystem
from birdemb.store.manifest import read_manifest


def part_files(directory: Folder) -> list[Folder]:
    folder = as_folder(directory)
    return [folder / name for name in file_names(folder, PART_GLOB)]


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
    text = read_text(as_folder(directory) / FAILURES)
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
    if not is_dir(root):
        raise StoreError(f"{store}: not a feature store (no embeddings/ folder)")
    found = []
    for model_name in subfolders(root, "model=*"):
        for data_name in subfolders(root / model_name, "dataset=*"):
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
