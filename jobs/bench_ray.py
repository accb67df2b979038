"""Benchmark: the Ray engine beside the local process pool, on the same files in one run.

Both run `birdemb extract` with BirdNET end to end (decode, resample, frame, model, pool,
Parquet) into a fresh store with the same number of workers (one per core), and are
measured in audio-seconds per second. Ray's own start-up (a local Ray instance here; on a
cluster it is already running) is timed separately and also shown included, because a
one-machine user pays it on every run. Run: python jobs/bench_ray.py [--quick]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "jobs"))
import bench_extract  # noqa: E402  (one corpus builder for both extraction benchmarks)


def make_corpus(folder: Path, quick: bool) -> tuple[Path, str]:
    """The extraction benchmark's corpus: xc10 linked twice (once in quick mode), or generated."""
    return bench_extract.make_corpus(folder, 1 if quick else 2)


def timed_extract(audio: Path, store_dir: Path, engine: str, workers: int):
    from birdemb.extract.job import ExtractConfig, extract

    config = ExtractConfig(audio=str(audio), store=str(store_dir), model="birdnet", dataset="bench",
                           workers=workers, engine=engine, progress=False)
    return extract(config)


def run(quick: bool = False) -> str:
    import ray

    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        folder = Path(tmp)
        audio, corpus = make_corpus(folder, quick)
        local = timed_extract(audio, folder / "local", "local", workers)
        started = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
        ray_start_s = time.perf_counter() - started
        try:
            on_ray = timed_extract(audio, folder / "ray", "ray", workers)
        finally:
            ray.shutdown()
    assert on_ray.windows == local.windows and on_ray.succeeded == local.succeeded, "engines disagree"
    hours = local.audio_s / 3600
    with_start = on_ray.audio_s / (on_ray.elapsed_s + ray_start_s)
    lines = [
        "## Ray engine beside the local engine (BirdNET, end to end)",
        "",
        f"{corpus}: {local.succeeded} files, {hours:.2f} h of audio, {local.windows} windows; "
        f"{workers} workers on this machine ({os.cpu_count()} cores), one run.",
        "",
        "| engine | elapsed s | audio-s per s | vs local |",
        "|---|---:|---:|---:|",
        f"| local process pool | {local.elapsed_s:.1f} | {local.realtime_factor:.0f} | 1.00 |",
        f"| Ray (running instance) | {on_ray.elapsed_s:.1f} | {on_ray.realtime_factor:.0f} | "
        f"{on_ray.realtime_factor / local.realtime_factor:.2f} |",
        f"| Ray incl. starting Ray here ({ray_start_s:.1f} s) | {on_ray.elapsed_s + ray_start_s:.1f} | "
        f"{with_start:.0f} | {with_start / local.realtime_factor:.2f} |",
        "",
        "Both engines' figures include their workers loading the model (the local pool spawns "
        "fresh processes per run; Ray's actors are started inside the run too). On one machine "
        "the engines share the same cores, so Ray is for when a cluster has more of them than "
        "one machine: the driver only writes Parquet, and throughput grows with the workers.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
