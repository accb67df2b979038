"""Benchmark section: BirdNET frame grids, each measured for speed and for accuracy.

A 5 s window costs two 3 s BirdNET frames (+0 s and +2 s: the "cover" grid, today's) or one
frame in its middle (+1 s: the "centre" grid, `extract --frame-grid centre`). Each frame runs
BirdNET split (its mel front end in numpy, then the network: the default) or as the whole
TFLite graph (`--front-end graph`, what birdemb ran before). For each, in one run: BirdNET frames per audio second; submission speed (the same random 1024 -> 182
head on 4-minute 32 kHz Ogg soundscapes made from the real xc10 field recording, the
`backbone + head` stage of `submit --profile`, projected to 1,100 soundscapes on 4 cores);
and quality as the quality section measures it (k-fold by file, held-out recordings through
`submit`, macro ROC-AUC) for the default head and BirdNET's own predictions, on xc10 and piha.
Target (issue 16): <= 12 min projected on 4 cores with AUROC within 0.002 of the cover grid.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# (grid, front end): the whole graph on the cover grid is the reference the target is measured against
CONFIGS = (("cover", "graph"), ("cover", "numpy"), ("centre", "numpy"))
DEFAULT = "default head (`--init auto`)"
PASSTHROUGH = "passthrough (BirdNET's own predictions)"


def speed(grid: str, front_end: str, folder: Path, soundscapes: Path, n_files: int) -> float:
    """Projected minutes for 1,100 soundscapes on 4 cores (backbone + head stage)."""
    import bench_quality
    from bench_submit import make_bundle

    from birdemb.deploy.submit import profile

    bench_quality.FRONT_END = front_end
    folder = folder / f"speed-{grid}-{front_end}"
    folder.mkdir()
    bundle = bench_quality.configured(make_bundle(folder, grid))
    report = profile(bundle, soundscapes, n_files=n_files, cores=1)
    return report.stage("backbone + head").projected_minutes(4)


def quality(grid: str, front_end: str, quick: bool) -> dict:
    import bench_quality

    bench_quality.VARIANTS = {DEFAULT: {}}  # the default head only: the grid is what varies here
    bench_quality.FRONT_END = front_end
    results = {}
    for name, make in (("xc10", lambda w: bench_quality.xc10_corpus(w, quick, grid)),
                       ("piha", lambda w: bench_quality.piha_corpus(w, quick, True, grid))):
        work = bench_quality.OUT / f"work-grid-{grid}-{front_end}-{name}"
        if work.exists():
            import shutil

            shutil.rmtree(work)
        work.mkdir(parents=True)
        result = make(work)
        if result is not None:
            results[name] = result["table"]
    return results


def run(quick: bool = False) -> str:
    from bench_submit import make_soundscapes

    from birdemb.runtime.audio import WindowLayout

    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench_grids_") as tmp:
        tmp = Path(tmp)
        source = make_soundscapes(tmp / "soundscapes", 1 if quick else 2)
        for grid, front_end in CONFIGS:
            layout = WindowLayout(5.0, 3.0, 48000, frame_grid=grid)
            rows[grid, front_end] = {"frames_per_s": layout.frames_per_window / layout.window_s,
                                     "minutes": speed(grid, front_end, tmp, tmp / "soundscapes", 1 if quick else 2),
                                     "quality": quality(grid, front_end, quick)}

    def auroc(config, corpus, scorer, which):
        table = rows[config]["quality"].get(corpus, {})
        value = table.get(scorer, {}).get(which)
        return "–" if value is None else f"{value:.4f}"

    lines = ["## Frame grids: BirdNET frames per window, speed and quality", "", __doc__.split("\n\n", 1)[1].strip(), "",
             f"Speed input: {source}.", "",
             "| grid | BirdNET run | frames / audio s | projected min, 1,100 soundscapes, 4 cores | xc10 known: head "
             "| xc10 known: passthrough | xc10 hidden: head | piha hidden: head |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for config in CONFIGS:
        r = rows[config]
        how = "whole graph" if config[1] == "graph" else "numpy front end + network"
        lines.append(f"| {config[0]} | {how} | {r['frames_per_s']:.2f} | {r['minutes']:.1f} "
                     f"| {auroc(config, 'xc10', DEFAULT, 'known')} | {auroc(config, 'xc10', PASSTHROUGH, 'known')} "
                     f"| {auroc(config, 'xc10', DEFAULT, 'hidden')} | {auroc(config, 'piha', DEFAULT, 'hidden')} |")
    reference = rows["cover", "graph"]["minutes"]
    lines += ["", "The CPU is shared with other jobs while benchmarks run, so minutes vary run to run; the ratios "
              "to the cover grid's whole graph are from one run: "
              + ", ".join(f"{grid} with the {'numpy front end' if how == 'numpy' else 'whole graph'} "
                          f"{rows[grid, how]['minutes'] / reference:.2f}" for grid, how in CONFIGS[1:]) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
