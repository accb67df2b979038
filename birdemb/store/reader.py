"""Reading the store: partitions, part files, stored files and failures, polars scans,
manifests and a summary per partition. A damaged part or manifest is a StoreError that
names the file and says to run `birdemb check`, never a raw pyarrow or JSON traceback."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from birdemb.store.files import is_dir, read_text, subfolders
from birdemb.store.layout import FAILURES, StoreError, check_hint, partition_dir
from birdemb.store.location import Folder, as_folder
from birdemb.store.manifest import read_manifest
from birdemb.store.parts import part_files, read_meta, read_part, stored_index


def stored_files(directory: Folder) -> set[str]:
    """Files with rows in a partition (each part holds whole files only)."""
    return set(stored_index(directory))


@dataclass
class FailureLog:
    """_failures.jsonl read leniently: the latest record per file, and the numbers of the
    lines that are not whole JSON records (a killed job's half-written line)."""

    latest: dict[str, dict] = field(default_factory=dict)
    bad_lines: list[int] = field(default_factory=list)


def failure_log(directory: Folder) -> FailureLog:
    log = FailureLog()
    text = read_text(as_folder(directory) / FAILURES, errors="replace")
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        record = failure_record(line)
        if record is None:
            log.bad_lines.append(number)
        else:
            log.latest[record["file"]] = record
    return log


def failure_record(line: str) -> dict | None:
    """One line of the failure log as its record; None for a half-written line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("file"), str) and "error" in record else None


def failures(directory: Folder, stored: set[str] | None = None) -> dict[str, str]:
    """Files whose latest attempt failed and that have no rows: file -> error. `stored`, the
    partition's stored files when the caller has them already, saves reading them again.
    Half-written lines are skipped (`failure_log` counts them; `birdemb check` reports them)."""
    latest = failure_log(directory).latest
    if not latest:
        return {}
    done = stored_files(directory) if stored is None else stored
    return {f: r["error"] for f, r in sorted(latest.items()) if f not in done}


def collect(frame, store: str | Path, model: str, dataset: str | None = None):
    """`frame.collect()` for a frame over `scan(store, model, dataset)`. A part whose footer is
    intact but whose data is damaged fails only here, and polars does not say which part it
    was reading: the parts are then read one by one, and the damaged one is named."""
    try:
        return frame.collect()
    except Exception:
        for found_model, found_dataset, directory in partitions(store):
            if found_model == model and dataset in (None, found_dataset):
                for part in part_files(directory):
                    read_part(part)  # raises StoreError naming the part and `birdemb check`
        raise


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
    for path in paths:
        read_meta(path)  # a part cut short has no footer: name it now, not in a later collect()
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
        for part in parts:
            read_meta(part)
        log = failure_log(directory)
        stats = {"files": 0, "windows": 0, "audio_h": 0.0, "species": 0}
        stored: set[str] = set()
        if parts:
            frame = _lazy_parts(parts).select("file", "species", "file_duration_s")
            try:
                per_file = frame.group_by("file").agg(
                    pl.len().alias("windows"), pl.first("file_duration_s"), pl.first("species")
                ).collect()
            except (pl.exceptions.PolarsError, OSError) as error:  # a footer intact over damaged pages
                raise StoreError(f"{directory}: a part could not be read ({str(error).splitlines()[0][:160]}); "
                                 f"{check_hint(directory)}") from None
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
                "failures": sum(1 for file in log.latest if file not in stored),
                "failure_lines_skipped": len(log.bad_lines),
                "embedding_dim": meta.get("embedding_dim"),
                "n_labels": meta.get("n_labels"),
                "window_s": params.get("layout", {}).get("window_s"),
                "sample_rate": params.get("layout", {}).get("sample_rate"),
                "weights_sha256": params.get("weights_sha256", "")[:12],
                "path": str(directory),
            }
        )
    return summaries
