"""Benchmark section: frame grids that were not built, measured before building them.

BirdNET's own predictions for the Screaming Piha (which it knows) are scored against piha's
254 annotated calls on every full 5 s window of its 11 recordings, for the two grids birdemb
has and for a continuous grid of 3 s frames shared by adjacent windows (issue 16's other
example), with three rules for which frames a window takes:
  any overlap >= 1 s (max): every second of the window is seen, and up to 2 s beyond it;
  frame centre in the window (max): no spill, but a third of the windows see only 3 of 5 s;
  overlap-weighted mean of the overlapping frames' logits.
The continuous grid costs 1/3 frame per audio second against the cover grid's 0.4 (17% less).
A fourth grid runs BirdNET's network once on each whole 5 s window: its numpy front end makes
the window's spectrogram (854 steps against a 3 s frame's 511; the network is convolutional up
to a global mean), 0.33 frame-equivalents per audio second. It is also scored on xc10's known
species (folder labels of the 100 clips' windows), against the cover grid.
The rule for building a grid (issue 16): AUROC within 0.002 of the cover grid.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PIHA = ROOT.parent / "shared" / "data" / "piha"


def scores() -> tuple[dict, np.ndarray]:
    from birdemb.backbones.birdnet import BirdNET
    from birdemb.labels.annotations import events_to_windows, read_annotations
    from birdemb.runtime.audio import load_audio

    model = BirdNET()
    column = next(i for i, label in enumerate(model.labels) if label.startswith("Lipaugus vociferans_"))
    rate = model.sample_rate
    frame = round(model.frame_s * rate)

    def logits(frames):
        return model.embed(np.stack(frames))[1][:, column]

    whole = WholeWindow(model)
    rules = {name: [] for name in ("cover (+0, +2 s)", "centre (+1 s)", "continuous: overlap >= 1 s, max",
                                   "continuous: centre in window, max", "continuous: overlap-weighted mean",
                                   "whole window (one 5 s frame)")}
    files, starts = [], []
    for path in sorted((PIHA / "audio").iterdir()):
        audio = load_audio(path, rate)
        n = len(audio) // (5 * rate)  # full windows only: every grid sees real audio
        padded = np.pad(audio, (0, 10 * rate))
        cover = logits([padded[5 * rate * k + o: 5 * rate * k + o + frame] for k in range(n) for o in (0, 2 * rate)])
        centre = logits([padded[5 * rate * k + rate: 5 * rate * k + rate + frame] for k in range(n)])
        n_tiles = (5 * n + 2) // 3 + 1
        tiles = logits([padded[3 * rate * j: 3 * rate * j + frame] for j in range(n_tiles)])
        tile_starts = 3.0 * np.arange(n_tiles)
        windows = whole.logits([padded[5 * rate * k: 5 * rate * (k + 1)] for k in range(n)])[:, column]
        for k in range(n):
            start, end = 5.0 * k, 5.0 * k + 5
            overlap = np.clip(np.minimum(end, tile_starts + 3) - np.maximum(start, tile_starts), 0, None)
            inside = (tile_starts + 1.5 >= start) & (tile_starts + 1.5 < end)
            values = (cover.reshape(n, 2)[k].max(), centre[k], tiles[overlap >= 1].max(), tiles[inside].max(),
                      (tiles * overlap).sum() / overlap.sum(), windows[k])
            for name, value in zip(rules, values):
                rules[name].append(value)
            files.append(path.name)
            starts.append(start)
    starts = np.asarray(starts)
    truth, _ = events_to_windows(read_annotations(PIHA / "annotations.csv"), files, starts, starts + 5, ["scrpih1"])
    return {name: np.asarray(values) for name, values in rules.items()}, truth[:, 0]


class WholeWindow:
    """BirdNET's network on a whole 5 s window: the split's front end (its two STFTs give 856
    and 854 steps at 5 s, and it keeps the shorter), then its network."""

    def __init__(self, model):
        from birdemb.runtime.front_end import MelFrontEnd
        from birdemb.runtime.interpreter import TFLiteRunner

        front_end, network = model.tflite_split
        self.front_end, self.network = MelFrontEnd.load(front_end), TFLiteRunner(network, batch=1)

    def logits(self, windows: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([self.network.run(self.front_end(w[None]))[0] for w in windows])


def xc10_known(xc10: Path) -> tuple[float, float, int]:
    """Macro passthrough AUROC over xc10's 10 species, per 5 s window of the train clips
    (truth: the clip's folder): (cover grid, whole window, windows)."""
    from sklearn.metrics import roc_auc_score

    from birdemb.backbones.birdnet import BirdNET
    from birdemb.labels.species import label_index, read_taxonomy
    from birdemb.runtime.audio import WindowLayout, frame_audio, load_audio, pool_windows

    model = BirdNET()
    whole = WholeWindow(model)
    species = sorted(p.name for p in (xc10 / "train_audio").iterdir() if p.is_dir())
    columns = label_index(model.labels, species, read_taxonomy(xc10 / "eBird_Taxonomy_v2021.csv"))
    layout = WindowLayout(5.0, 3.0, model.sample_rate)
    cover, windows, truth = [], [], []
    for j, name in enumerate(species):
        for path in sorted((xc10 / "train_audio" / name).iterdir()):
            audio = load_audio(path, model.sample_rate)
            framed = frame_audio(audio, layout)
            embeddings, logits = model.embed(framed.frames)
            cover.append(pool_windows(framed, embeddings, logits)[1][:, columns])
            n = len(cover[-1])
            span = 5 * model.sample_rate * n  # the windows the layout keeps, the last one zero-padded
            padded = np.pad(audio, (0, max(0, span - len(audio))))[:span]
            windows.append(whole.logits(np.split(padded, n))[:, columns])
            truth += [j] * n
    cover, windows, truth = np.concatenate(cover), np.concatenate(windows), np.asarray(truth)

    def macro(scores):
        return float(np.mean([roc_auc_score(truth == j, scores[:, j]) for j in range(len(species))]))

    return macro(cover), macro(windows), len(truth)


def run(quick: bool = False) -> str:
    if not (PIHA / "annotations.csv").is_file():
        return "## Frame grids not built (simulated on piha)\n\nSkipped: the piha corpus is absent."
    from sklearn.metrics import roc_auc_score

    by_rule, truth = scores()
    reference = roc_auc_score(truth, by_rule["cover (+0, +2 s)"])
    lines = ["## Frame grids not built (simulated on piha)", "", __doc__.split("\n\n", 1)[1].strip(), "",
             f"{len(truth)} windows, {int(truth.sum())} with a call.", "",
             "| grid and rule | frames / audio s | piha passthrough AUROC | vs cover |", "|---|---:|---:|---:|"]
    cost = {"cover": 0.4, "centre": 0.2, "continuous": 1 / 3, "whole": 854 / 511 / 5}
    best = -1.0
    for name, values in by_rule.items():
        value = roc_auc_score(truth, values)
        if name.startswith("continuous"):
            best = max(best, value)
        if name.startswith("whole"):
            whole_piha = value - reference
        lines.append(f"| {name} | {cost[name.split()[0].rstrip(':')]:.2f} | {value:.4f} | {value - reference:+.4f} |")
    verdict = ("meets the rule: worth building" if best >= reference - 0.002 else
               "misses the rule, so it is not built; the centre grid (built, opt-in) is the cheaper grid birdemb offers")
    positives, negatives = int(truth.sum()), int(len(truth) - truth.sum())
    pair = 1 / (positives * negatives)
    lines += ["", f"Best continuous rule: {best - reference:+.4f} against the cover grid; {verdict}. "
              f"A small sample: with {positives} windows with a call and {negatives} without, one call window ranked "
              f"below one silent window moves AUROC by {pair:.4f}, so the best rule's loss is about "
              f"{abs(best - reference) / pair:.0f} such pairs and the rule's bound 0.002 about {0.002 / pair:.0f}."]
    xc10 = ROOT.parent / "shared" / "data" / "xc10"
    if (xc10 / "train_audio").is_dir():
        cover, whole, n = xc10_known(xc10)
        meets = min(whole_piha, whole - cover) >= -0.002
        lines += ["", f"Whole window on xc10's known species ({n} windows of 100 clips, macro passthrough AUROC): "
                  f"cover {cover:.4f}, whole window {whole:.4f} ({whole - cover:+.4f}); on piha {whole_piha:+.4f}. "
                  + ("Within the rule on both: worth building." if meets else
                     "It misses the rule on at least one corpus, so it is not built"
                     + ("; the corpora disagree in sign, which says more about their size than about the grid."
                        if whole_piha * (whole - cover) < 0 else "."))]
    else:
        lines += ["", "Whole window on xc10: skipped, the xc10 corpus is absent."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
