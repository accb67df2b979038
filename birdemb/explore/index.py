"""The search index of one model's stored windows (every dataset), kept beside the store:

  STORE/index/model=<model>/index.json          what the index holds (written last, atomically)
                           index-<id>.faiss     the ANN index (explore/ann.py); row i is vector i
                           rows-<id>.parquet    the row map: dataset, file, window, start_s, end_s, species

index.json names the current index and row-map files, the index plan, and the store's
fingerprint when it was made: every part (dataset/name -> size, mtime, rows) and each dataset's
manifest parameters. A new index is written under new names and then index.json is replaced in
one rename, so a reader (or a killed build) sees the old index or the new one, never a mix.

Rerunning after new files were extracted EXTENDS the index with only the new parts' rows; a
part removed or replaced (a re-extracted file rewrites its part), changed manifest parameters,
another dtype, or growth past what the IVF lists were trained for REBUILDS it (IndexInfo says
which, and why)."""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from birdemb import __version__, store
from birdemb.explore import ann
from birdemb.store.manifest import canonical

INDEX_JSON = "index.json"
ROW_COLUMNS = ["file", "window", "start_s", "end_s", "species"]


@dataclass
class IndexInfo:
    path: str
    action: str  # "built", "rebuilt", "extended" or "unchanged"
    rows: int
    added: int
    plan: dict
    reason: str = ""
    elapsed_s: float = 0.0

    def line(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        kind = f"IVF, {self.plan['nlist']} lists" if self.plan["nlist"] else "exact scan"
        return (f"index {self.action}{why}: {self.rows} windows ({self.added} added), {kind}, {self.plan['dtype']}, "
                f"in {self.elapsed_s:.1f} s -> {self.path}")


@dataclass
class Part:
    dataset: str
    path: Path
    size: int
    mtime_ns: int
    rows: int

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.path.name}"

    def stamp(self) -> dict:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "rows": self.rows}


@dataclass
class StoreState:
    parts: list[Part]
    parameters: dict = field(default_factory=dict)  # dataset -> manifest parameters
    dim: int = 0


def index_dir(store_dir, model: str) -> Path:
    return _local(store_dir) / "index" / f"model={model}"


def _local(store_dir) -> Path:
    path = store.local_path(store.as_folder(store_dir))
    if path is None:
        raise store.StoreError(f"{store_dir}: search indexes are kept beside local stores only; copy the store here")
    return path


def store_state(store_dir, model: str) -> StoreState:
    """Every part of the model's partitions (sorted), with what identifies its content."""
    state = StoreState([])
    for found_model, dataset, directory in sorted(store.partitions(_local(store_dir)), key=lambda p: p[1]):
        if found_model != model:
            continue
        manifest = store.read_manifest(directory)
        for part in store.part_files(directory):
            meta = store.read_meta(part)
            status = os.stat(part)
            rows = pq.ParquetFile(part).metadata.num_rows
            state.parts.append(Part(dataset, Path(part), status.st_size, status.st_mtime_ns, rows))
            state.dim = state.dim or meta.schema.field("embedding").type.list_size
            state.parameters.setdefault(dataset, (manifest or meta.manifest or {}).get("parameters"))
    if not state.parts:
        raise store.StoreError(f"{store_dir}: no stored rows for model={model}")
    return state


def read_record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / INDEX_JSON).read_text())
    except (OSError, ValueError):
        return None
    have = all((folder / record.get(name, "")).is_file() for name in ("index_file", "rows_file"))
    return record if have else None


def decide(record: dict | None, state: StoreState, wanted: ann.Plan, asked_nlist) -> tuple[str, str, list[Part]]:
    """("build" | "rebuild" | "extend" | "unchanged", why, the parts to add)."""
    if record is None:
        return "build", "", state.parts
    old = record["parts"]
    now = {p.key: p for p in state.parts}
    if record["plan"]["dtype"] != wanted.dtype:
        return "rebuild", f"dtype {record['plan']['dtype']} -> {wanted.dtype}", state.parts
    if record.get("asked_nlist") != asked_nlist:
        return "rebuild", f"lists asked {record.get('asked_nlist')} -> {asked_nlist}", state.parts
    changed = [d for d, params in record["parameters"].items()
               if d in state.parameters and canonical(params) != canonical(state.parameters[d])]
    if changed:
        return "rebuild", f"manifest parameters of dataset {changed[0]} changed", state.parts
    for key, stamp in old.items():
        if key not in now:
            return "rebuild", f"part {key} was removed", state.parts
        if {k: stamp[k] for k in ("size", "mtime_ns")} != {"size": now[key].size, "mtime_ns": now[key].mtime_ns}:
            return "rebuild", f"part {key} was replaced", state.parts
    new = [p for p in state.parts if p.key not in old]
    if not new:
        return "unchanged", "", []
    total = record["rows"] + sum(p.rows for p in new)
    if ann.plan(total, state.dim, wanted.dtype, asked_nlist).nlist != record["plan"]["nlist"] and (
            record["plan"]["nlist"] == 0 or total > ann.EXTEND_UP_TO * record["built_rows"]):
        return "rebuild", f"the store grew to {total} rows, past what the index was laid out for", state.parts
    return "extend", "", new


def build_index(store_dir, model: str, *, dtype: str = "f16", progress: bool = True,
                nlist: int | None = None) -> IndexInfo:
    """Build, extend or keep the search index of `model`'s windows (see the module's doc).
    `nlist` forces the number of IVF lists (0: an exact scan); by default it follows the rows."""
    started = time.perf_counter()
    folder = index_dir(store_dir, model)
    state = store_state(store_dir, model)
    total = sum(p.rows for p in state.parts)
    record = read_record(folder)
    action, reason, todo = decide(record, state, ann.plan(total, state.dim, dtype, nlist), nlist)
    if action == "unchanged":
        return IndexInfo(str(folder), "unchanged", record["rows"], 0, record["plan"], elapsed_s=0.0)
    if action == "extend":
        index = ann.load(folder / record["index_file"])
        rows = [_read_rows(folder / record["rows_file"])]
        plan, trained, built = ann.Plan(**record["plan"]), record["trained_rows"], record["built_rows"]
    else:
        plan = ann.plan(total, state.dim, dtype, nlist)
        sample = _training_sample(state.parts, ann.training_rows(plan)) if ann.needs_training(plan) else None
        index, rows, trained, built = ann.new_index(plan, sample), [], 0 if sample is None else len(sample), total
    added = _add_parts(index, todo, rows, progress)
    write_index(folder, index, rows, {
        "model": model, "plan": plan.describe(), "asked_nlist": nlist, "rows": int(index.ntotal),
        "trained_rows": trained, "built_rows": built, "parts": {**(record["parts"] if action == "extend" else {}),
                                           **{p.key: p.stamp() for p in todo}},  # in the index's row order
        "parameters": state.parameters,
        "code_version": __version__, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    done = {"build": "built", "rebuild": "rebuilt", "extend": "extended"}[action]
    return IndexInfo(str(folder), done, int(index.ntotal), added, plan.describe(), reason,
                     time.perf_counter() - started)


def embeddings_of(table) -> np.ndarray:
    return store.column_matrix(table, "embedding")


def refresh_index(store_dir, model: str, progress: bool = True) -> IndexInfo:
    """Build the index with the defaults when there is none, else bring it up to date with the
    store keeping the dtype and lists it was built with (what `birdemb search` runs first)."""
    record = read_record(index_dir(store_dir, model))
    if record is None:
        return build_index(store_dir, model, progress=progress)
    return build_index(store_dir, model, dtype=record["plan"]["dtype"], nlist=record.get("asked_nlist"),
                       progress=progress)


def _training_sample(parts: list[Part], wanted: int, seed: int = 0) -> np.ndarray:
    """About `wanted` embeddings drawn evenly from every part (k-means must see all of the store)."""
    rng, total = np.random.default_rng(seed), sum(p.rows for p in parts)
    share, chosen = min(1.0, wanted / max(total, 1)), []
    for part in parts:
        vectors = embeddings_of(store.read_part(part.path, columns=["embedding"]))
        chosen.append(vectors[rng.random(len(vectors)) < share])
    return np.concatenate(chosen)


def _add_parts(index, parts: list[Part], rows: list, progress: bool) -> int:
    import polars as pl
    from tqdm import tqdm

    added = 0
    bar = tqdm(total=sum(p.rows for p in parts), unit="window", desc="indexing", disable=not progress)
    for part in parts:
        table = store.read_part(part.path, columns=[*ROW_COLUMNS, "embedding"])
        ann.add(index, embeddings_of(table))
        frame = pl.from_arrow(table.select(ROW_COLUMNS))
        rows.append(frame.with_columns(pl.lit(part.dataset, pl.String).alias("dataset")).select(
            "dataset", *ROW_COLUMNS))
        added += len(table)
        bar.update(len(table))
    bar.close()
    return added


def _read_rows(path: Path):
    import polars as pl

    return pl.read_parquet(path)


def write_index(folder: Path, index, rows: list, record: dict) -> None:
    """New files under new names, then index.json over the old one in one rename, then the old
    files go (a reader that opened them before keeps its handles)."""
    import polars as pl

    folder.mkdir(parents=True, exist_ok=True)
    old = read_record(folder)
    tag = uuid.uuid4().hex[:12]
    record = {**record, "index_file": f"index-{tag}.faiss", "rows_file": f"rows-{tag}.parquet"}
    frame = pl.concat(rows, how="vertical_relaxed") if rows else pl.DataFrame()
    ann.save(index, folder / f".{record['index_file']}.tmp")
    frame.write_parquet(folder / f".{record['rows_file']}.tmp")
    os.replace(folder / f".{record['index_file']}.tmp", folder / record["index_file"])
    os.replace(folder / f".{record['rows_file']}.tmp", folder / record["rows_file"])
    tmp = folder / f".{INDEX_JSON}.{tag}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, folder / INDEX_JSON)
    for name in (old or {}).get("index_file"), (old or {}).get("rows_file"):
        if name and name not in (record["index_file"], record["rows_file"]):
            (folder / name).unlink(missing_ok=True)


@dataclass
class OpenIndex:
    """A loaded index: the ANN index, its row map (polars) and the record."""

    store_dir: Path
    index: object
    rows: object
    record: dict

    def vectors(self) -> np.ndarray:
        """The stored embeddings in the index's row order (for exact search), from the store."""
        chunks = [embeddings_of(store.read_part(_part_path(self.store_dir, self.record["model"], key),
                                                columns=["embedding"])) for key in self.record["parts"]]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.record["plan"]["dim"]), np.float32)


def _part_path(store_dir: Path, model: str, key: str) -> Path:
    dataset, name = key.split("/", 1)
    return Path(store.partition_dir(store_dir, model, dataset)) / name


def open_index(store_dir, model: str) -> OpenIndex:
    folder = index_dir(store_dir, model)
    record = read_record(folder)
    if record is None:
        raise store.StoreError(f"{folder}: no search index; run `birdemb index --store {store_dir} --model {model}`")
    index = ann.load(folder / record["index_file"], record["plan"].get("nprobe"))
    return OpenIndex(_local(store_dir), index, _read_rows(folder / record["rows_file"]), record)
