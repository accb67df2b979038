"""Benchmark section: can a BirdNET submission score 1,100 four-minute soundscapes in 120 min?

Table 7-style profile (decode only, backbone only, backbone + head) of the submission path on
competition-shaped input: 4-minute 32 kHz Ogg Vorbis soundscapes made from the real xc10
field recording (looped to 240 s, rotated so no two are identical), or from generated audio
where that recording is absent. The head is a random 1024 -> 182 linear layer (BirdCLEF
2024's species count); speed does not depend on its values. Then the whole submission is
written with every core, to compare the projection with a measured parallel run.
"""
from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOUNDSCAPE = ROOT.parent / "shared" / "data" / "xc10" / "unlabeled_soundscapes" / "soundscape.flac"
N_SPECIES = 182


def make_soundscapes(folder: Path, count: int, rate: int = 32000) -> str:
    import soundfile as sf

    from birdemb.runtime.audio import load_audio

    if SOUNDSCAPE.is_file():
        base, source = load_audio(SOUNDSCAPE, rate), f"the xc10 field recording ({SOUNDSCAPE.name})"
    else:
        t = np.arange(120 * rate) / rate
        base = (0.2 * np.sin(2 * np.pi * 3000 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size))
        base, source = base.astype(np.float32), "generated tones and noise (xc10 absent)"
    looped = np.resize(base, 240 * rate)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        signal = np.roll(looped, i * 17 * rate)
        with sf.SoundFile(folder / f"soundscape_{i:04d}.ogg", "w", rate, 1, format="OGG") as handle:
            for start in range(0, len(signal), rate):  # blocks: libsndfile's Vorbis encoder dislikes huge writes
                handle.write(signal[start : start + rate])
    return source


def make_bundle(folder: Path) -> Path:
    from birdemb.backbones.birdnet import BirdNET
    from birdemb.deploy.bundle import build_bundle
    from birdemb.runtime.audio import WindowLayout
    from birdemb.runtime.head import save_head
    from birdemb.training import rundir

    backbone = BirdNET()
    run = folder / "run"
    run.mkdir(parents=True)
    rng = np.random.default_rng(0)
    save_head(run, [(rng.standard_normal((N_SPECIES, 1024)).astype(np.float32) * 0.03, np.zeros(N_SPECIES, np.float32))])
    rundir.write_json(run, rundir.SPECIES, [f"sp{i:03d}" for i in range(N_SPECIES)])
    rundir.write_json(run, rundir.CONFIG, {
        "embeddings": "birdnet", "layout": WindowLayout(5.0, 3.0, 48000, 1.0).describe(),
        "backbone": {"model": "birdnet", "version": backbone.version, "weights_sha256": backbone.weights_sha256, "options": {}},
    })
    return build_bundle(run, folder / "bundle")


def run(quick: bool = False) -> str:
    from birdemb.deploy.submit import profile, write_submission

    cores = os.cpu_count() or 1
    n_profile = 1 if quick else 3
    n_parallel = 2 if quick else 2 * cores
    with tempfile.TemporaryDirectory(prefix="bench_submit_") as tmp:
        tmp = Path(tmp)
        source = make_soundscapes(tmp / "soundscapes", max(n_profile, n_parallel))
        bundle = make_bundle(tmp)
        report = profile(bundle, tmp / "soundscapes", n_files=n_profile, cores=cores)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        summary = write_submission(bundle, tmp / "soundscapes", tmp / "submission.csv", workers=cores)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers have exited: their CPU time
    cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    per_soundscape = wall / summary.files
    cpu_per_soundscape = cpu / summary.files
    lines = [
        "## Submission: CPU inference budget (BirdNET + head)",
        "",
        f"Input: 4-minute 32 kHz Ogg soundscapes made from {source}; head: random 1024 -> {N_SPECIES} linear.",
        "",
        report.markdown(),
        "",
        f"Measured end to end (`write_submission`, {summary.workers} worker processes, one 1-thread interpreter each, "
        f"process start-up and CSV included): {summary.files} soundscapes in {wall:.1f} s wall-clock "
        f"({per_soundscape:.2f} s each on a shared CPU); the workers used {cpu_per_soundscape:.2f} CPU s per soundscape, "
        f"which projects to {1100 * cpu_per_soundscape / cores / 60:.1f} min on {cores} and "
        f"{1100 * cpu_per_soundscape / 4 / 60:.1f} min on 4 cores with the CPU to ourselves.",
        f"Targets: backbone + head >= 0.9x backbone-only throughput (measured {report.head_throughput_ratio:.2f}x); "
        f"BirdNET <= 30 min on 4 cores (projected {report.stage('backbone + head').projected_minutes(4):.1f} min; "
        "the paper's BirdNET passthrough projected 52 min). The CPU is shared with other jobs, so figures vary run to run.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
