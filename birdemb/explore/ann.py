"""The approximate nearest-neighbour index itself (FAISS), on plain arrays: cosine similarity
as the inner product of L2-normalised vectors; an inverted-file index (IVF: vectors assigned
to k-means lists, a query scans only the `nprobe` nearest lists) above FLAT_BELOW rows, an
exact scan below it (cheaper than any index there). Vectors are kept as f16, f32 or int8.
Why FAISS's IVF and not an HNSW graph (USearch, FAISS HNSW): measured in docs/search.md."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DTYPES = ("f16", "f32", "i8")
FLAT_BELOW = 20_000  # rows: an exact scan of fewer takes a few ms, and needs no training
LISTS_PER_SQRT = 2  # nlist = 2 sqrt(n): fewer lists than FAISS's 4-16 sqrt(n) guideline, so building
# (each vector is compared with every list centre) stays minutes at 1M rows on 2 cores
TRAIN_PER_LIST = 40  # k-means sample: FAISS warns below 39 points per list
KMEANS_ITERATIONS = 10  # FAISS's 25 gain no recall here and cost 2.5x the training
NPROBE = 16  # lists scanned per query: recall@10 >= 0.95 and median < 10 ms at 1M rows (docs/search.md)
EXTEND_UP_TO = 4  # the lists stay good until the index holds 4x the rows it was built with


@dataclass(frozen=True)
class Plan:
    """How an index of `rows` vectors is made: `nlist` 0 means an exact (flat) scan."""

    dim: int
    dtype: str
    nlist: int
    nprobe: int

    def describe(self) -> dict:
        return {"dim": self.dim, "dtype": self.dtype, "nlist": self.nlist, "nprobe": self.nprobe}


def plan(rows: int, dim: int, dtype: str = "f16", nlist: int | None = None, nprobe: int = NPROBE) -> Plan:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if nlist is None:
        nlist = 0 if rows < FLAT_BELOW else int(LISTS_PER_SQRT * math.sqrt(rows))
    return Plan(dim, dtype, nlist, min(nprobe, nlist) if nlist else 0)


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), float32, contiguous, as FAISS wants."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.where(norms > 0, norms, 1), dtype=np.float32)


def _quantizer(dtype: str):
    import faiss

    return {"f16": faiss.ScalarQuantizer.QT_fp16, "i8": faiss.ScalarQuantizer.QT_8bit}.get(dtype)


def new_index(the_plan: Plan, sample: np.ndarray | None = None):
    """An empty index, trained on `sample` (normalised vectors) where it needs training."""
    import faiss

    metric, qtype = faiss.METRIC_INNER_PRODUCT, _quantizer(the_plan.dtype)
    if the_plan.nlist == 0:
        index = faiss.IndexFlatIP(the_plan.dim) if qtype is None else faiss.IndexScalarQuantizer(
            the_plan.dim, qtype, metric)
    else:
        coarse = faiss.IndexFlatIP(the_plan.dim)
        index = faiss.IndexIVFFlat(coarse, the_plan.dim, the_plan.nlist, metric) if qtype is None else \
            faiss.IndexIVFScalarQuantizer(coarse, the_plan.dim, the_plan.nlist, qtype, metric)
        index.own_fields = True
        index.cp.niter = KMEANS_ITERATIONS
        coarse.this.disown()  # the IVF index owns its coarse quantizer now
        index.nprobe = the_plan.nprobe
    if not index.is_trained:
        if sample is None or len(sample) == 0:
            raise ValueError("this index needs a training sample")
        index.train(normalised(sample))
    return index


def needs_training(the_plan: Plan) -> bool:
    """IVF lists come from k-means; int8 keeps each dimension's trained range."""
    return the_plan.nlist > 0 or the_plan.dtype == "i8"


def training_rows(the_plan: Plan) -> int:
    """How many vectors to train on: enough per list for k-means, and for int8's ranges."""
    return max(TRAIN_PER_LIST * the_plan.nlist, 10_000 if the_plan.dtype == "i8" else 0)


def add(index, vectors: np.ndarray) -> None:
    """Append vectors; their ids continue from the index's size (row numbers of the row map)."""
    if len(vectors):
        index.add(normalised(vectors))


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, row ids), each [n_queries, k], best first; ids -1 where fewer exist."""
    k = max(1, min(int(k), index.ntotal)) if index.ntotal else 1
    similarities, ids = index.search(normalised(np.atleast_2d(queries)), k)
    return similarities, ids


def save(index, path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def load(path, nprobe: int | None = None):
    import faiss

    index = faiss.read_index(str(path))
    if nprobe and hasattr(index, "nprobe"):
        index.nprobe = nprobe
    return index


def exact(vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force cosine neighbours with numpy (the reference for tests and benchmarks):
    (similarities, ids) [n_queries, k], best first, in blocks of rows so memory stays bounded."""
    queries = normalised(np.atleast_2d(queries))
    k = min(int(k), len(vectors))
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), block):
        sims = queries @ normalised(vectors[start:start + block]).T
        ids = np.broadcast_to(np.arange(start, start + sims.shape[1]), sims.shape)
        best_s, best_i = np.hstack([best_s, sims]), np.hstack([best_i, ids])
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)
