"""Benchmark: search by example (birdemb index / birdemb search).

(a) 1,000,000 generated 1024-d vectors (quick: 100,000): index build time, index memory (its
    size on disk, which is what a loaded IVF index holds), median and p99 latency of one k=10
    query, recall@10 against exact (numpy) search. Targets: median < 10 ms, recall >= 0.95.
    The vectors are clustered around 2,000 centres in a 64-d subspace plus noise, as real
    embeddings are (isotropic random vectors have no neighbours worth finding: no index
    reaches a useful recall on them, and no user searches them).
(b) xc10 with real BirdNET embeddings (train_audio extracted into a temporary store):
    precision@10 by species (a neighbour counts when its folder species is the query's; the
    query's own window left out), approximate index vs exact search, every window a query.
Run: python jobs/bench_search.py [--quick]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
XC10 = ROOT.parent / "shared" / "data" / "xc10"
DIM, CENTRES, SUBSPACE = 1024, 2000, 64
QUERIES = 300


def generated(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """n clustered vectors (same centres and subspace for every seed)."""
    centres = np.random.default_rng(1).standard_normal((CENTRES, SUBSPACE)).astype(np.float32)
    basis = np.random.default_rng(2).standard_normal((SUBSPACE, dim)).astype(np.float32) / 8
    rng, out = np.random.default_rng(seed), np.empty((n, dim), np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        z = centres[rng.integers(0, CENTRES, m)] + 0.5 * rng.standard_normal((m, SUBSPACE)).astype(np.float32)
        out[start:start + m] = z @ basis + 0.3 * rng.standard_normal((m, dim)).astype(np.float32)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())]))


def generated_section(n: int, dtype: str = "f16") -> dict:
    import faiss

    from birdemb.explore import ann

    vectors, queries = generated(n, 3), generated(QUERIES, 4)
    the_plan = ann.plan(n, DIM, dtype)
    started = time.perf_counter()
    sample = vectors[np.random.default_rng(0).choice(n, min(n, ann.training_rows(the_plan)), replace=False)]
    index = ann.new_index(the_plan, sample)
    for start in range(0, n, 100_000):
        ann.add(index, vectors[start:start + 100_000])
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        ann.save(index, Path(folder) / "index.faiss")
        size = (Path(folder) / "index.faiss").stat().st_size
    faiss.omp_set_num_threads(1)  # one user's query on one core
    truth = ann.exact(vectors, queries, 10)[1]
    probes = {}
    for nprobe in sorted({the_plan.nprobe // 2, the_plan.nprobe, 2 * the_plan.nprobe} - {0}):
        index.nprobe = nprobe
        ann.search(index, queries[:5], 10)  # warm-up
        latencies, found = [], []
        for query in queries:
            t = time.perf_counter()
            found.append(ann.search(index, query, 10)[1][0])
            latencies.append(time.perf_counter() - t)
        probes[nprobe] = {"median_ms": 1e3 * float(np.median(latencies)),
                          "p99_ms": 1e3 * float(np.percentile(latencies, 99)), "recall": recall(np.array(found), truth)}
    return {"n": n, "plan": the_plan.describe(), "build_s": build_s, "index_bytes": size, "probes": probes,
            **probes.get(the_plan.nprobe, {})}


def xc10_section() -> dict | None:
    """Precision@10 by species on xc10's train audio, approximate vs exact (None without xc10)."""
    if not (XC10 / "train_audio").is_dir():
        return None
    from birdemb.explore import ann
    from birdemb.explore.index import build_index, open_index
    from birdemb.extract.job import ExtractConfig, extract

    with tempfile.TemporaryDirectory() as folder:
        store_dir = Path(folder) / "store"
        extract(ExtractConfig(audio=str(XC10 / "train_audio"), store=str(store_dir), model="birdnet",
                              dataset="xc10", progress=False))
        # ~1k rows would be an exact scan: force IVF lists, half of them probed per query
        info = build_index(store_dir, "birdnet", progress=False, nlist=2 * ann.NPROBE)
        opened = open_index(store_dir, "birdnet")
        species = np.array(opened.rows["species"].to_list())
        vectors = opened.vectors()
        approx = ann.search(opened.index, vectors, 11)[1]
        exact = ann.exact(vectors, vectors, 11)[1]
    return {"rows": info.rows, "species": len(set(species)), "plan": info.plan,
            "approx": _precision(approx, species), "exact": _precision(exact, species)}


def _precision(neighbours: np.ndarray, species: np.ndarray) -> float:
    """Mean over queries of the share of the 10 nearest other windows with the query's species."""
    scores = []
    for q, row in enumerate(neighbours):
        others = [i for i in row if i != q and i >= 0][:10]
        scores.append(np.mean(species[others] == species[q]))
    return float(np.mean(scores))


def run(quick: bool = False) -> str:
    n = 100_000 if quick else 1_000_000
    gen = generated_section(n)
    lines = [
        "## Search by example",
        "",
        f"FAISS IVF index ({gen['plan']['nlist']} lists, {gen['plan']['nprobe']} probed per query, vectors as "
        f"{gen['plan']['dtype']}), cosine similarity, over {n:,} generated {DIM}-d vectors "
        f"(clustered, see jobs/bench_search.py); one query at a time on one core, {QUERIES} queries.",
        "",
        "| rows | build | index memory | median k=10 query | p99 | recall@10 vs exact |",
        "|---|---|---|---|---|---|",
        f"| {n:,} | {gen['build_s']:.0f} s | {gen['index_bytes'] / 2**30:.2f} GiB | {gen['median_ms']:.2f} ms "
        f"| {gen['p99_ms']:.2f} ms | {gen['recall']:.3f} |",
        "",
        "Lists probed per query against speed and recall, on the same index (the default marked *):",
        "",
        "| lists probed | median | p99 | recall@10 |",
        "|---|---|---|---|",
        *[f"| {p}{'*' if p == gen['plan']['nprobe'] else ''} | {r['median_ms']:.2f} ms | {r['p99_ms']:.2f} ms "
          f"| {r['recall']:.3f} |" for p, r in gen["probes"].items()],
        "",
        f"Targets: median under 10 ms ({'met' if gen['median_ms'] < 10 else 'NOT met'}), recall@10 at least 0.95 "
        f"({'met' if gen['recall'] >= 0.95 else 'NOT met'}).",
        "",
    ]
    real = xc10_section()
    if real is None:
        lines += ["xc10 is absent: precision@10 by species on real embeddings not measured.", ""]
    else:
        lines += [
            f"On xc10 (real BirdNET embeddings, {real['rows']} windows of {real['species']} species, every window a "
            f"query, IVF forced with {real['plan']['nlist']} lists, {real['plan']['nprobe']} probed): "
            f"precision@10 by species **{real['approx']:.3f}** approximate vs **{real['exact']:.3f}** exact.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    if "--generated-only" in sys.argv:
        print(generated_section(100_000 if "--quick" in sys.argv else 1_000_000))
    else:
        print(run(quick="--quick" in sys.argv))
