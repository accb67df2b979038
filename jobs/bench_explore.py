"""Benchmark section "explore": PaCMAP on 20,000 points of 1024-d (the cap of `birdemb plot
pacmap`, BirdNET's embedding width) and the `birdemb eda` report on a generated store.

`run(quick)` returns a Markdown section; jobs/bench.py collects it into docs/benchmarks.md.
Quick mode projects 2,000 points. Run alone: `python jobs/bench_explore.py [--quick]`.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

TARGET_S = 60.0  # the budget for 20,000 points on this machine


def clustered_points(n: int, dim: int = 1024, clusters: int = 10, seed: int = 0) -> np.ndarray:
    """Points around `clusters` centres, shaped like non-negative BirdNET embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, 1.0, (clusters, dim))
    return np.abs(centres[np.arange(n) % clusters] + rng.normal(0, 0.5, (n, dim))).astype(np.float32)


def timed(function, *args, **kwargs) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process over all threads, result)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, time.process_time() - cpu, result


def run(quick: bool = False) -> str:
    from birdemb.explore.projection import pacmap_2d
    from birdemb.explore.report import run_eda
    from birdemb.explore.sample_store import write_sample_store

    n = 2_000 if quick else 20_000
    points = clustered_points(n)
    load = os.getloadavg()[0]
    first_s, first_cpu, _ = timed(pacmap_2d, points, seed=0)  # includes numba's one-off compilation
    warm_s, warm_cpu, projected = timed(pacmap_2d, points, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        store = write_sample_store(f"{folder}/store", train_files_per_species=50, soundscapes=200)
        eda_s, _, report = timed(run_eda, store, "toy", f"{folder}/eda")
        windows = int(report.tables["call_rates"]["windows"].sum())
    verdict = "within" if first_s < TARGET_S else "OVER"
    lines = [
        "## explore: PaCMAP and EDA",
        "",
        f"PaCMAP of {n:,} points x 1024-d to 2-D (`birdemb.explore.projection.pacmap_2d`, seed 0, "
        f"{os.cpu_count()} cores, load average {load:.1f} when it started; CPU seconds do not depend on other load):",
        "",
        "| run | wall s | CPU s |",
        "|---|---|---|",
        f"| first call in the process (includes numba compilation) | {first_s:.1f} | {first_cpu:.1f} |",
        f"| second call | {warm_s:.1f} | {warm_cpu:.1f} |",
        "",
        (f"First call {verdict} the {TARGET_S:.0f} s budget for 20,000 points." if not quick
         else "Quick mode: 2,000 points only; the 60 s budget is for 20,000 (run without --quick)."),
        f"Output shape {projected.shape}.",
        "",
        f"`run_eda` (pseudo-labels, frequencies, KL, FPGrowth, rules, 4 figures, index.md) on a "
        f"generated store of {windows:,} windows: {eda_s:.1f} s.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
