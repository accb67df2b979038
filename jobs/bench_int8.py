"""Benchmark: BirdNET with int8 weights (`--precision int8`) against FP32, for agreement and speed.

  (a) agreement on real audio: max |p_int8 - p_fp32| over all 6,522 labels and the embeddings'
      cosine similarity, on the xc10 soundscape's 3 s frames and on the train clips' windows;
  (b) quality: macro ROC-AUC of the passthrough window scores (BirdNET's logits for the 10
      xc10 species, folder label per file) from `extract` with each precision, same windows;
  (c) speed: frames/s of the bare model on the same soundscape frames, 1 and 2 threads, best of 3.
Decision rule (issue 16): recommend int8 only if it is faster here AND |delta AUROC| < 0.002.
Run: python jobs/bench_int8.py [--quick]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
XC10 = ROOT.parent / "shared" / "data" / "xc10"
AUROC_TOLERANCE = 0.002
FASTER = 1.05  # "faster" means 5% more frames/s: less is within this shared machine's run-to-run noise


def soundscape_frames(n: int) -> np.ndarray:
    from birdemb.runtime.audio import load_audio

    audio = load_audio(XC10 / "unlabeled_soundscapes" / "soundscape.flac", 48_000)
    frames = audio[: len(audio) // 144_000 * 144_000].reshape(-1, 144_000)
    return np.ascontiguousarray(frames[:n], dtype=np.float32)


def agreement(fp32: tuple, int8: tuple) -> dict:
    """(embeddings, logits) of each precision on the same frames -> the gaps between them."""
    from birdemb.runtime.head import sigmoid

    (e0, l0), (e1, l1) = fp32, int8
    cosine = (e0 * e1).sum(1) / (np.linalg.norm(e0, axis=1) * np.linalg.norm(e1, axis=1))
    return {"max_p": float(np.abs(sigmoid(l0) - sigmoid(l1)).max()), "max_logit": float(np.abs(l0 - l1).max()),
            "min_cos": float(cosine.min()), "mean_cos": float(cosine.mean()), "n": len(e0)}


def speed(models: dict, frames: np.ndarray, threads: int, repeats: int = 3) -> tuple[dict, dict]:
    """Frames/s of each model file, the best of `repeats` runs, by the wall clock and by this
    process's CPU time (steadier when other jobs share the cores), the runs interleaved so
    that other load on the machine falls on both alike."""
    from birdemb.runtime.interpreter import TFLiteRunner

    runners = {name: TFLiteRunner(path, threads=threads, batch=16) for name, path in models.items()}
    for runner in runners.values():
        runner.run(frames[:16])  # allocate and warm up
    wall, cpu = dict.fromkeys(runners, float("inf")), dict.fromkeys(runners, float("inf"))
    for _ in range(repeats):
        for name, runner in runners.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            runner.run(frames)
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    return ({name: len(frames) / seconds for name, seconds in wall.items()},
            {name: len(frames) / seconds for name, seconds in cpu.items()})


def stored_windows(audio: Path, store_root: Path, precision: str, files: int | None):
    """`extract` over xc10's train clips with one precision; rows sorted by (file, window)."""
    from birdemb import store
    from birdemb.extract.job import ExtractConfig, extract

    extract(ExtractConfig(audio=str(audio), store=str(store_root), model="birdnet", dataset=precision,
                          workers=1, progress=False, model_options={"precision": precision}))
    frame = store.scan(store_root, "birdnet", precision).sort(["file", "window"]).collect()
    return frame, store.manifest(store_root, "birdnet", precision)


def quality(tmp: Path, files: int | None) -> dict:
    """Passthrough macro ROC-AUC with each precision on the same xc10 train windows."""
    from birdemb.labels.species import label_index, read_taxonomy
    from birdemb.training.metrics import macro_auroc

    audio = tmp / "train_audio"
    sources = sorted((XC10 / "train_audio").rglob("*.mp3"))
    if files:  # a few clips of every species
        by_species: dict[str, list[Path]] = {}
        for source in sources:
            by_species.setdefault(source.parent.name, []).append(source)
        sources = [clip for clips in by_species.values() for clip in clips[:files]]
    for source in sources:
        (audio / source.parent.name).mkdir(parents=True, exist_ok=True)
        (audio / source.parent.name / source.name).symlink_to(source)
    rows = {p: stored_windows(audio, tmp / "store", p, files) for p in ("fp32", "int8")}
    (fp32, manifest), (int8, manifest8) = rows["fp32"], rows["int8"]
    assert fp32.select("file", "window").equals(int8.select("file", "window")), "different windows"
    species = sorted(set(fp32["species"].to_list()))
    columns = label_index(manifest["labels"], species, read_taxonomy(XC10 / "eBird_Taxonomy_v2021.csv"))
    assert (columns >= 0).all(), f"species without a BirdNET label: {np.asarray(species)[columns < 0]}"
    truth = (np.asarray(fp32["species"].to_list())[:, None] == np.asarray(species)[None, :]).astype(np.float32)
    logits = {p: np.stack(frame["logits"].to_numpy()) for p, (frame, _) in rows.items()}
    embeddings = {p: np.stack(frame["embedding"].to_numpy()) for p, (frame, _) in rows.items()}
    auroc = {p: macro_auroc(truth, logits[p][:, columns]) for p in rows}
    return {"auroc": auroc, "windows": fp32.height, "files": len(sources), "species": len(species),
            "agreement": agreement((embeddings["fp32"], logits["fp32"]), (embeddings["int8"], logits["int8"])),
            "options": (manifest["options"], manifest8["options"])}


def run(quick: bool = False) -> str:
    from birdemb.backbones.birdnet import BirdNET

    if not (XC10 / "train_audio").is_dir():
        return "## BirdNET int8 weights (`--precision int8`)\n\nSkipped: the real xc10 corpus is absent.\n"
    models = {p: BirdNET(precision=p) for p in ("fp32", "int8")}
    sizes = {p: m.model_path.stat().st_size / 1e6 for p, m in models.items()}
    frames = soundscape_frames(16 if quick else 40)
    on_soundscape = agreement(models["fp32"].embed(frames), models["int8"].embed(frames))
    paths = {p: m.model_path for p, m in models.items()}
    measured = {threads: speed(paths, frames, threads, repeats=2 if quick else 3) for threads in (1, 2)}
    fps = {threads: wall for threads, (wall, _) in measured.items()}
    cpu = {threads: per_cpu for threads, (_, per_cpu) in measured.items()}
    with tempfile.TemporaryDirectory() as tmp:
        q = quality(Path(tmp), 2 if quick else None)
    delta = q["auroc"]["int8"] - q["auroc"]["fp32"]
    faster = all(fps[t]["int8"] > FASTER * fps[t]["fp32"] and cpu[t]["int8"] > FASTER * cpu[t]["fp32"] for t in fps)
    ships = faster and abs(delta) < AUROC_TOLERANCE
    a, s = q["agreement"], on_soundscape
    lines = [
        "## BirdNET int8 weights (`--precision int8`)", "",
        "Dynamic-range quantisation on the flatbuffer (`birdemb/backbones/tflite_quantize.py`): the "
        "classifier and the pointwise (1x1) convolutions have int8 weights with per-channel scales, "
        "activations stay float; the mel front end, depthwise and spatial convolutions stay FP32.", "",
        "| | FP32 | int8 |", "|---|---:|---:|",
        f"| model file (MB) | {sizes['fp32']:.1f} | {sizes['int8']:.1f} |",
        *(f"| bare model, {t} thread{'s' if t > 1 else ''} (frames/s, best of {2 if quick else 3}, "
          f"{len(frames)} soundscape frames) | {fps[t]['fp32']:.1f} | {fps[t]['int8']:.1f} |" for t in fps),
        *(f"| same, frames per CPU-second, {t} thread{'s' if t > 1 else ''} | {cpu[t]['fp32']:.1f} | "
          f"{cpu[t]['int8']:.1f} |" for t in cpu),
        f"| passthrough macro ROC-AUC, xc10 train ({q['windows']} windows of {q['files']} clips, "
        f"{q['species']} species) | {q['auroc']['fp32']:.4f} | {q['auroc']['int8']:.4f} |", "",
        f"Agreement with FP32 over all 6,522 labels: soundscape ({s['n']} frames) max |delta p| {s['max_p']:.4f}, "
        f"max |delta logit| {s['max_logit']:.3f}, embedding cosine min {s['min_cos']:.5f} (mean {s['mean_cos']:.5f}); "
        f"train windows ({a['n']}) max |delta p| {a['max_p']:.4f}, cosine min {a['min_cos']:.5f}.", "",
        f"Delta AUROC (int8 - FP32): {delta:+.4f}. Rule: recommend int8 only if faster (by {FASTER - 1:.0%}, "
        f"wall and CPU) at 1 and 2 threads "
        f"and |delta AUROC| < {AUROC_TOLERANCE}: **{'met' if ships else 'not met'}** "
        f"({'faster' if faster else 'not faster'}; AUROC {'within' if abs(delta) < AUROC_TOLERANCE else 'outside'} "
        f"the bound). Manifest options recorded: FP32 {q['options'][0]}, int8 {q['options'][1]}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
