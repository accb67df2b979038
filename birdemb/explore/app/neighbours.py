"""Search by example for the app: birdemb.explore.search where the store already has its
index (`birdemb index`), else exact cosine over the loaded embeddings: the app never builds
the index itself, because that would write into the store."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from birdemb.explore.index import index_dir, read_record
from birdemb.explore.search import Neighbour


@dataclass(frozen=True)
class Found(Neighbour):
    row: int = -1  # row of the app's windows table (-1 when the index names a window the app lacks)


def has_index(store_dir: str, model: str) -> bool:
    try:
        return read_record(index_dir(store_dir, model)) is not None
    except Exception:  # a store on another filesystem: no local index
        return False


def exact(embeddings: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, rows) of the k windows nearest `query` by cosine, best first."""
    norms = np.linalg.norm(embeddings, axis=1)
    q = np.asarray(query, dtype=np.float32).ravel()
    similarity = embeddings @ q / np.maximum(norms * max(float(np.linalg.norm(q)), 1e-12), 1e-12)
    k = min(k, len(similarity))
    rows = np.argsort(-similarity, kind="stable")[:k]
    return similarity[rows], rows


def nearest(windows, store_dir: str, model: str, query, k: int = 10) -> tuple[list[Found], str]:
    """The k stored windows nearest a query: a row of the windows table (int) or an embedding
    vector. Returns them and which method answered."""
    table = windows.table
    vector = windows.embeddings[int(query)] if np.isscalar(query) else np.asarray(query, np.float32)
    if np.isscalar(query) and has_index(store_dir, model):
        from birdemb.explore.search import search

        row = table.row(int(query), named=True)
        found = search(store_dir, model, (row["file"], float(row["start_s"])), k)
        where = {(r["dataset"], r["file"], r["window"]): r["row"]
                 for r in table.select("row", "dataset", "file", "window").iter_rows(named=True)}
        return [Found(n.dataset, n.file, n.window, n.start_s, n.end_s, n.species, n.similarity,
                      row=where.get((n.dataset, n.file, n.window), -1)) for n in found], "the store's search index"
    similarities, rows = exact(windows.embeddings, vector, k)
    out = []
    for similarity, i in zip(similarities.tolist(), rows.tolist()):
        r = table.row(i, named=True)
        out.append(Found(r["dataset"], r["file"], int(r["window"]), float(r["start_s"]), float(r["end_s"]),
                         r["species"], float(similarity), row=i))
    return out, "exact cosine over the stored embeddings (no index: `birdemb index` makes one)"


def embed_clip(store_dir: str, model: str, path: str, start_s: float = 0.0) -> np.ndarray:
    """An uploaded recording's window embedded with the store's own backbone and layout."""
    from birdemb.explore.search import embed_window

    return embed_window(store_dir, model, path, start_s)
