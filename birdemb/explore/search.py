"""Search by example: the k stored windows nearest (cosine) to a query window.

A query is `FILE[@START_S]`, or (file, start_s): when FILE is a stored file (its path as the
store holds it, relative to the audio root, or a path under `audio`), its stored embedding is
used; otherwise FILE is a recording, decoded and embedded now with the store's own backbone
(the manifest's model, options and weights hash) and window layout, and the window holding
START_S (default 0) is the query. `search` answers from the ANN index (built when missing),
`exact_search` by brute force over the stored embeddings (the reference)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from birdemb import store
from birdemb.errors import UsageError
from birdemb.explore import ann
from birdemb.explore.index import OpenIndex, build_index, embeddings_of, index_dir, open_index, read_record


class SearchError(UsageError):
    """A query that names no stored window and no readable recording."""


@dataclass(frozen=True)
class Neighbour:
    dataset: str
    file: str
    window: int
    start_s: float
    end_s: float
    species: str | None
    similarity: float


@dataclass(frozen=True)
class Query:
    file: str
    start_s: float = 0.0


def parse_query(text) -> Query:
    """"FILE@START_S" or "FILE" (start 0), a (file, start_s) pair, or a Query."""
    if isinstance(text, Query):
        return text
    if isinstance(text, tuple):
        return Query(str(text[0]), float(text[1]))
    text = str(text)
    head, at, tail = text.rpartition("@")
    if at:
        try:
            start = float(tail)
        except ValueError:
            return Query(text)
        if not math.isfinite(start) or start < 0:
            raise SearchError(f"{text}: the start second must be a number >= 0")
        return Query(head, start)
    return Query(text)


def _stored_name(query: Query, files: set[str], audio) -> str | None:
    """The file as the store names it, when the query is a stored file."""
    candidates = [PurePosixPath(Path(query.file).as_posix()).as_posix()]
    if audio is not None:
        try:
            candidates.append(Path(query.file).resolve().relative_to(Path(audio).resolve()).as_posix())
        except ValueError:
            pass
    return next((name for name in candidates if name in files), None)


def query_vector(opened: OpenIndex, query, audio=None, weights=None) -> np.ndarray:
    """The query window's embedding: stored, or computed now from the recording."""
    query = parse_query(query)
    rows = opened.rows
    name = _stored_name(query, set(rows["file"].unique().to_list()), audio)
    if name is not None:
        return _stored_vector(opened, name, query.start_s)
    path = Path(query.file)
    if not path.is_file() and audio is not None and (Path(audio) / query.file).is_file():
        path = Path(audio) / query.file
    if not path.is_file():
        raise SearchError(f"{query.file}: neither a stored file of model={opened.record['model']} nor a recording")
    return embed_window(opened.store_dir, opened.record["model"], path, query.start_s, weights)


def _stored_vector(opened: OpenIndex, name: str, start_s: float) -> np.ndarray:
    import polars as pl

    frame = store.scan(opened.store_dir, opened.record["model"]).filter(
        (pl.col("file") == name) & (pl.col("start_s") <= start_s) & (pl.col("end_s") > start_s)
    ).select("embedding").head(1).collect()
    if frame.height == 0:
        raise SearchError(f"{name}: no stored window holds {start_s:g} s")
    return embeddings_of(frame.to_arrow())[0]


def _manifest(store_dir, model: str) -> dict:
    for found_model, dataset, _ in sorted(store.partitions(store_dir), key=lambda p: p[1]):
        if found_model == model:
            return store.manifest(store_dir, model, dataset)
    raise store.StoreError(f"{store_dir}: no rows for model={model}")


def embed_window(store_dir, model: str, path, start_s: float = 0.0, weights=None) -> np.ndarray:
    """The embedding of the window holding `start_s` in the recording at `path`, made as
    extraction makes it: the store's backbone and layout, frames pooled into the window."""
    from birdemb.backbones import load_described
    from birdemb.runtime.audio import WindowLayout, frame_audio, load_audio, pool_windows

    manifest = _manifest(store_dir, model)
    described = manifest["layout"]
    layout = WindowLayout(described["window_s"], described["frame_s"], described["sample_rate"],
                          described.get("min_audio_s", 1.0))
    audio = load_audio(path, layout.sample_rate)
    window = int(start_s // layout.window_s)
    if window >= layout.window_count(len(audio)):
        raise SearchError(f"{path}: {len(audio) / layout.sample_rate:.1f} s long, no window holds {start_s:g} s")
    segment = audio[window * layout.window_samples:(window + 1) * layout.window_samples]
    framed = frame_audio(segment, layout)
    backbone = load_described(manifest, weights=weights)
    embedding, _ = pool_windows(framed, *backbone.embed(framed.frames))
    return embedding[0]


def ensure_index(store_dir, model: str, progress: bool = False):
    """The index, built first when there is none (IndexInfo then, else None)."""
    if read_record(index_dir(store_dir, model)) is None:
        return build_index(store_dir, model, progress=progress)
    return None


def _neighbours(opened: OpenIndex, similarities: np.ndarray, ids: np.ndarray) -> list[Neighbour]:
    found = []
    for similarity, i in zip(similarities.tolist(), ids.tolist()):
        if i < 0:
            continue
        row = opened.rows.row(i, named=True)
        found.append(Neighbour(row["dataset"], row["file"], int(row["window"]), float(row["start_s"]),
                               float(row["end_s"]), row["species"], float(similarity)))
    return found


def search(store_dir, model: str, query, k: int = 10, *, audio=None, weights=None) -> list[Neighbour]:
    """The k nearest stored windows to the query, best first, from the ANN index."""
    ensure_index(store_dir, model)
    opened = open_index(store_dir, model)
    similarities, ids = ann.search(opened.index, query_vector(opened, query, audio, weights), k)
    return _neighbours(opened, similarities[0], ids[0])


def exact_search(store_dir, model: str, query, k: int = 10, *, audio=None, weights=None) -> list[Neighbour]:
    """The same question answered by brute force over every stored embedding (numpy)."""
    ensure_index(store_dir, model)
    opened = open_index(store_dir, model)
    similarities, ids = ann.exact(opened.vectors(), query_vector(opened, query, audio, weights), k)
    return _neighbours(opened, similarities[0], ids[0])
