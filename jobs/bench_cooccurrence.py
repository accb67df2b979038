"""Benchmark: does the co-occurrence prior (birdemb.explore.cooccurrence) help on held-out
multi-species soundscapes? Real audio, real BirdNET, real xc10 labels.

The xc10 clips (10 species x 10, about 6 s each) are split into 5 folds by file (2 clips of
each species per fold). Each fold's clips are mixed into 20 s "soundscapes" (4 windows of 5 s)
of 2-3 species over a random stretch of the real 120 s field soundscape (eastern species, none
of the 10): every source sits in 1-2 windows at a random gain, and a window is positive for a
source's folder species where that source plays (truth by placement, not by audibility).
Two designs:
  random     the species of a mix are drawn uniformly: no co-occurrence structure at all;
  community  the 10 species are split into 3 fixed "communities"; a mix draws its species from
             one community (one of them swapped for an outsider 20% of the time).
BirdNET extracts every mix (`birdemb.extract.job.extract`); scores are its passthrough
probabilities mapped onto the 10 species. Two priors, each estimated from training folds only:
  recordings   the xc10 training clips' labels, as `birdemb eda` sees them (folder species,
               secondary labels, BirdNET pseudo-labels > 0.5 in any window), one basket a clip;
  soundscapes  the training folds' mixes' own species sets (annotated training soundscapes).
For each held-out fold, alpha is chosen by inner cross-validation over the other 4 folds (the
prior re-estimated without the inner fold each time), then the held-out fold is scored.
Run: python jobs/bench_cooccurrence.py [--quick]
"""
from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
XC10 = ROOT.parent / "shared" / "data" / "xc10"
RATE, WINDOW_S, WINDOWS, FOLDS = 48000, 5, 4, 5
DESIGNS = ("random", "community")
PRIORS = ("recordings", "soundscapes")


# ---------------------------------------------------------------- corpus, folds, mixes


def clip_folds(seed: int = 0) -> tuple[list[str], dict[str, list[str]]]:
    """Species, and per fold the clips (2 per species per fold, by a seeded shuffle)."""
    with open(XC10 / "train_metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    species = sorted({r["primary_label"] for r in rows})
    rng = np.random.default_rng(seed)
    folds: dict[int, list[str]] = {k: [] for k in range(FOLDS)}
    for s in species:
        files = sorted(r["filename"] for r in rows if r["primary_label"] == s)
        for i, f in enumerate(rng.permutation(files)):
            folds[i % FOLDS].append(str(f))
    return species, folds


def communities(species: list[str], seed: int = 0) -> list[list[str]]:
    order = [species[i] for i in np.random.default_rng(seed).permutation(len(species))]
    return [order[:4], order[4:7], order[7:]]


def mix_species(design: str, species: list[str], groups: list[list[str]], rng) -> list[str]:
    size = int(rng.integers(2, 4))
    if design == "random":
        return list(rng.choice(species, size, replace=False))
    group = groups[int(rng.integers(len(groups)))]
    chosen = list(rng.choice(group, min(size, len(group)), replace=False))
    if rng.random() < 0.2:
        outsiders = [s for s in species if s not in group]
        chosen[int(rng.integers(len(chosen)))] = str(rng.choice(outsiders))
    return chosen


def rms_normalised(audio: np.ndarray, level: float) -> np.ndarray:
    return audio * (level / max(float(np.sqrt(np.mean(audio ** 2))), 1e-9))


def write_mixes(out: Path, species: list[str], folds: dict[int, list[str]], per_fold: int, seed: int = 0) -> dict:
    """Mix audio files under out/<design>/fold<k>/.
    Returns {relative file: (design, fold, truth [windows, species])}."""
    import soundfile as sf

    from birdemb.runtime.audio import load_audio

    n = WINDOW_S * RATE
    clips = {f: rms_normalised(load_audio(XC10 / "train_audio" / f, RATE)[:n], 0.05)
             for fs in folds.values() for f in fs}
    background = load_audio(next((XC10 / "unlabeled_soundscapes").iterdir()), RATE)
    groups = communities(species, seed)
    rng = np.random.default_rng(seed)
    mixes = {}
    for design in DESIGNS:
        for k, files in folds.items():
            by_species = {s: [f for f in files if f.startswith(s + "/")] for s in species}
            for m in range(per_fold):
                start = int(rng.integers(0, len(background) - WINDOWS * n))
                audio = rms_normalised(background[start:start + WINDOWS * n].copy(), 0.03)
                truth = np.zeros((WINDOWS, len(species)), dtype=np.float32)
                for s in mix_species(design, species, groups, rng):
                    clip = clips[str(rng.choice(by_species[s]))]
                    gain = 10 ** (rng.uniform(-36, -6) / 20)  # faint, as distant birds in a field recording
                    first = int(rng.integers(0, WINDOWS))
                    for w in range(first, min(WINDOWS, first + int(rng.integers(1, 3)))):
                        audio[w * n:w * n + len(clip)] += gain * clip
                        truth[w, species.index(s)] = 1
                name = f"{design}/fold{k}/mix{m:03d}.wav"
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                sf.write(out / name, (audio / max(1.0, float(np.abs(audio).max()))).astype(np.float32), RATE,
                         subtype="FLOAT")
                mixes[name] = (design, k, truth)
    return mixes


# ---------------------------------------------------------------- BirdNET scores


def extract_all(work: Path, mix_dir: Path) -> Path:
    from birdemb.extract.job import ExtractConfig, extract

    store = work / "store"
    extract(ExtractConfig(audio=str(XC10 / "train_audio"), store=str(store), model="birdnet", dataset="train",
                          metadata=str(XC10 / "train_metadata.csv"), progress=False))
    extract(ExtractConfig(audio=str(mix_dir), store=str(store), model="birdnet", dataset="mixes", progress=False))
    return store


def passthrough(store: Path, mapping) -> dict[str, np.ndarray]:
    """Mix file -> BirdNET probabilities [windows, species] (the first WINDOWS windows)."""
    from birdemb import store as store_mod
    from birdemb.runtime.head import sigmoid

    rows = store_mod.scan(store, "birdnet", "mixes").select("file", "window", "logits").collect().sort("file", "window")
    p = sigmoid(mapping.species_logits(rows["logits"].to_numpy()))
    files = np.asarray(rows["file"].to_list())
    return {f: p[(files == f)][:WINDOWS] for f in np.unique(files)}


# ---------------------------------------------------------------- the experiment


def evaluate(species, folds, mixes, scores, clip_baskets, design: str, prior_source: str) -> list[dict]:
    from birdemb.explore.cooccurrence import choose_alpha, estimate_prior, soundscape_scores

    def fold_mixes(k):
        names = sorted(n for n, (d, f, _) in mixes.items() if d == design and f == k)
        return [scores[n] for n in names], [mixes[n][2] for n in names]

    def lift_without(excluded: set[int]):
        kept = [k for k in range(FOLDS) if k not in excluded]
        if prior_source == "recordings":
            baskets = [clip_baskets[f] for k in kept for f in folds[k]]
        else:
            baskets = [{species[j] for j in np.flatnonzero(y.max(axis=0))} for k in kept for y in fold_mixes(k)[1]]
        return estimate_prior(baskets, species).log_lift

    rows = []
    for k in range(FOLDS):
        inner = [(lift_without({k, m}), *fold_mixes(m)) for m in range(FOLDS) if m != k]
        alpha, _ = choose_alpha(inner)
        p, y = fold_mixes(k)
        base = soundscape_scores(p, y, None, 0.0)
        after = soundscape_scores(p, y, lift_without({k}), alpha)
        rows.append({"fold": k, "alpha": alpha, **{f"{key}_base": v for key, v in base.items()},
                     **{f"{key}_prior": v for key, v in after.items()}})
    return rows


def run(quick: bool = False) -> str:
    if not (XC10 / "train_audio").is_dir():
        return "## cooccurrence: co-occurrence prior on held-out mixes\n\nSkipped: ../shared/data/xc10 is absent.\n"
    from birdemb import store as store_mod
    from birdemb.explore.cooccurrence import ALPHAS, BOUND, store_baskets
    from birdemb.labels.mapping import map_species
    from birdemb.labels.species import read_taxonomy

    started = time.perf_counter()
    per_fold = 8 if quick else 16
    species, folds = clip_folds()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        mixes = write_mixes(work / "mixes", species, folds, per_fold)
        store = extract_all(work, work / "mixes")
        labels = store_mod.manifest(store, "birdnet", "mixes")["labels"]
        mapping = map_species(labels, species, read_taxonomy(XC10 / "eBird_Taxonomy_v2021.csv"))
        scores = passthrough(store, mapping)
        clip_baskets = store_baskets(store, "birdnet", "train", mapping, threshold=0.5)
    pairs = sum(len(b) > 1 for b in clip_baskets.values())
    results = {(d, s): evaluate(species, folds, mixes, scores, clip_baskets, d, s) for d in DESIGNS for s in PRIORS}
    elapsed = time.perf_counter() - started
    return report(results, per_fold, pairs, len(clip_baskets), elapsed, ALPHAS, BOUND, communities(species))


def report(results, per_fold, pairs, clips, elapsed, alphas, bound, groups) -> str:
    lines = [
        "## cooccurrence: co-occurrence prior on held-out multi-species mixes (xc10, BirdNET passthrough)",
        "",
        f"{FOLDS} folds by clip; per fold and design {per_fold} mixes of 20 s (2-3 real xc10 clips over the real "
        "field soundscape), scored by BirdNET passthrough on the 10 species. Prior: pseudo-count 1, bound "
        f"{bound:g} logits; alpha from {', '.join(f'{a:g}' for a in alphas)} by inner cross-validation on the "
        "training folds. Macro ROC-AUC over windows (window) and over mixes (max over windows, file); "
        "mean over the 5 held-out folds, then the per-fold values.",
        "",
        f"xc10 training labels: {pairs} of {clips} clips hold more than one of the 10 species (folder species, "
        "secondary labels and BirdNET pseudo-labels > 0.5). Communities: "
        + "; ".join(" ".join(g) for g in groups) + ".",
        "",
        "| design | prior from | window AUC without | with | file AUC without | with | alpha per fold |",
        "|---|---|---|---|---|---|---|",
    ]
    for (design, source), rows in results.items():
        mean = {key: np.mean([r[key] for r in rows]) for key in rows[0] if key not in ("fold", "alpha")}
        lines.append(
            f"| {design} | {source} | {mean['window_auroc_base']:.4f} | {mean['window_auroc_prior']:.4f} | "
            f"{mean['file_auroc_base']:.4f} | {mean['file_auroc_prior']:.4f} | "
            + ", ".join(f"{r['alpha']:g}" for r in rows) + " |")
    lines += ["", "Per fold (window AUC without -> with; file AUC without -> with):", ""]
    for (design, source), rows in results.items():
        cells = "; ".join(f"{r['fold']}: {r['window_auroc_base']:.3f}->{r['window_auroc_prior']:.3f}, "
                          f"{r['file_auroc_base']:.3f}->{r['file_auroc_prior']:.3f}" for r in rows)
        lines.append(f"- {design}, {source}: {cells}")
    lines += ["", f"_(benchmark took {elapsed:.0f} s)_", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
