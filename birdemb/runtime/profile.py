"""Where a submission's time goes: decode only, + backbone, + head, on the first N
soundscapes, in CPU seconds per 4-minute soundscape and projected minutes (the paper's Table 7)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from birdemb.runtime.bundle_format import SubmitError, load_bundle, open_bundles
from birdemb.runtime.scoring import NOMINAL_SOUNDSCAPE_S, Scorer, SubmitOptions, list_soundscapes


@dataclass
class ProfileStage:
    name: str
    seconds: float  # CPU seconds of this process over the profiled files (one interpreter thread)
    audio_s: float
    wall_s: float = 0.0  # wall-clock seconds: larger when other jobs share the CPU

    @property
    def per_soundscape_s(self) -> float:
        """CPU seconds per 4-minute soundscape: the time one core needs when it is ours alone."""
        return self.seconds / self.audio_s * NOMINAL_SOUNDSCAPE_S if self.audio_s else float("nan")

    def projected_minutes(self, cores: int, soundscapes: int = 1100) -> float:
        return soundscapes * self.per_soundscape_s / cores / 60.0


@dataclass
class Profile:
    stages: list[ProfileStage]
    files: int
    cores: int
    model: str
    budget_minutes: float = 120.0

    def stage(self, name: str) -> ProfileStage:
        return next(s for s in self.stages if s.name == name)

    @property
    def head_throughput_ratio(self) -> float:
        """Throughput of backbone+head relative to the backbone alone (target >= 0.9)."""
        return self.stage("backbone only").seconds / self.stage("backbone + head").seconds

    def markdown(self, soundscapes: int = 1100, compare_cores: int = 4) -> str:
        lines = [
            f"| stage ({self.model}) | CPU s per 4-min soundscape, 1 core | wall s (shared CPU) | projected min, {soundscapes:,} soundscapes, "
            f"{self.cores} cores (this machine) | projected min, {compare_cores} cores |",
            "|---|---:|---:|---:|---:|",
        ]
        for s in self.stages:
            lines.append(
                f"| {s.name} | {s.per_soundscape_s:.2f} | {s.wall_s / s.audio_s * NOMINAL_SOUNDSCAPE_S:.2f} | {s.projected_minutes(self.cores, soundscapes):.1f} "
                f"| {s.projected_minutes(compare_cores, soundscapes):.1f} |"
            )
        full = self.stage("backbone + head")
        fits = full.projected_minutes(self.cores, soundscapes) <= self.budget_minutes
        lines += [
            "",
            f"Measured on the first {self.files} soundscape(s) ({self.stages[0].audio_s:.0f} s of audio), one process "
            f"with a 1-thread interpreter; each stage includes the ones above it (decode -> frames -> backbone -> "
            f"pool + head + sigmoid). Projections use the process's CPU time (robust to other jobs on a shared machine, unlike the wall column) and scale it linearly to N cores (one interpreter per "
            f"process, files independent); the {compare_cores}-core column is projected, not measured.",
            f"backbone + head runs at {self.head_throughput_ratio:.2f}x the backbone-only throughput (target >= 0.9). "
            f"On {self.cores} cores the submission projects to {full.projected_minutes(self.cores, soundscapes):.1f} "
            f"min of the {self.budget_minutes:.0f}-minute budget: {'fits' if fits else 'DOES NOT FIT'}.",
        ]
        return "\n".join(lines)


def profile(
    bundle_or_run, audio_dir: str | Path, n_files: int = 3, options: SubmitOptions | None = None, cores: int | None = None,
    opener=load_bundle,
) -> Profile:
    """Time decode only, + backbone, + head on the first `n_files` soundscapes (Table 7)."""
    options = replace(options or SubmitOptions(), workers=1)
    bundles = open_bundles(bundle_or_run, opener)
    scorer = Scorer(bundles, options)
    files = []
    for path in list_soundscapes(audio_dir):  # the first N that decode: failures are not timings
        if len(files) >= max(1, n_files):
            break
        try:
            scorer.decode(path)
            files.append(path)
        except Exception:
            continue
    if not files:
        raise SubmitError(f"{audio_dir}: no readable soundscapes to profile")
    scorer.probabilities(files[0])  # warm-up: tensor allocation and page cache, untimed

    def decode_only(path):
        return scorer.decode(path)

    def backbone_only(path):
        audio = scorer.decode(path)
        fused = options.engine == "fused"
        for bundle, layout in zip(bundles, scorer.layouts):  # every frame the full path runs (sliding too)
            scorer.window_outputs(scorer.net(bundle, fused), (0,) if fused else (bundle.embedding_output,),
                                  audio[layout.sample_rate], layout, pool=not fused)

    def backbone_and_head(path):
        scorer.probabilities(path)

    steps = (("decode only", decode_only), ("backbone only", backbone_only), ("backbone + head", backbone_and_head))
    seconds = {name: 0.0 for name, _ in steps}
    wall = {name: 0.0 for name, _ in steps}
    audio_s = 0.0
    for path in files:  # stages interleaved per file, so a busy moment on a shared CPU hits all
        for name, step in steps:
            t0, c0 = time.perf_counter(), time.process_time()
            step(path)
            seconds[name] += time.process_time() - c0
            wall[name] += time.perf_counter() - t0
        first = scorer.layouts[0]
        audio_s += len(scorer.decode(path)[first.sample_rate]) / first.sample_rate
    stages = [ProfileStage(name, seconds[name], audio_s, wall[name]) for name, _ in steps]
    model = "+".join(sorted({b.model or "?" for b in bundles}))
    return Profile(stages, len(files), cores or os.cpu_count() or 1, model)
