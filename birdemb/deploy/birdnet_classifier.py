"""A trained head on BirdNET embeddings as one BirdNET-Analyzer custom classifier.

OUT.tflite          BirdNET V2.4 with the head appended (backbones/tflite_head.py): 3 s of
                    48 kHz audio [n, 144000] in, the head's logits [n, species] out, no
                    sigmoid: the whole-model form BirdNET-Analyzer's own trainer writes, which
                    its `--classifier` (and birdnetlib's classifier_model_path) run on audio
                    directly and pass through its flat sigmoid (sensitivity 1: the plain sigmoid)
OUT_Labels.txt      one "Scientific name_Common name" per output, in output order
OUT_birdemb.json    provenance (run, BirdNET weights, head) and the agreement check

The classifier sees one 3 s frame. A run trained on 5 s windows (two frames: mean embedding,
max logits) gives the same head applied to one frame; the export is checked against that.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from birdemb import __version__
from birdemb.backbones.tflite_head import append_head
from birdemb.deploy.bundle import check_frames, load_run_backbone, read_run, run_taxonomy_file
from birdemb.errors import BirdembError
from birdemb.labels.mapping import TAXONOMY_FILE
from birdemb.labels.species import is_birdnet_label, read_taxonomy_names
from birdemb.runtime.head import HeadWeights, head_logits, sigmoid
from birdemb.runtime.interpreter import TFLiteRunner

TOLERANCE = 1e-4  # largest |probability difference| allowed between the export and birdemb
LABELS_SUFFIX = "_Labels.txt"  # BirdNET-Analyzer: <name>.tflite -> <name>_Labels.txt
CHECK_SUFFIX = "_birdemb.json"


class ClassifierError(BirdembError):
    """A run that cannot become a BirdNET classifier, or an export that disagrees with birdemb."""


def sidecar(out_path: Path, suffix: str) -> Path:
    return out_path.with_name(out_path.name[: -len(".tflite")] + suffix)


# ---------------------------------------------------------------- labels


def classifier_labels(species: list[str], birdnet_labels: list[str], residual: np.ndarray | None = None,
                      taxonomy: str | Path | None = None) -> list[str]:
    """BirdNET-Analyzer's label for each species, in order: BirdNET's own label where BirdNET
    knows the species (the species is that label or its common name, its scientific name per
    the taxonomy is BirdNET's, or the residual head adds that BirdNET column), else
    "Scientific name_Common name" from the taxonomy. ClassifierError for a name none resolves."""
    by_label = set(birdnet_labels)
    by_scientific: dict[str, str] = {}
    by_common: dict[str, list[str]] = {}
    for label in birdnet_labels:
        scientific, _, common = label.partition("_")
        by_scientific.setdefault(scientific.lower(), label)
        by_common.setdefault(common, []).append(label)
    names = read_taxonomy_names(taxonomy) if taxonomy else {}
    labels, unknown = [], []
    for j, name in enumerate(species):
        if name in by_label or is_birdnet_label(name):
            labels.append(name)
        elif len(by_common.get(name, ())) == 1:
            labels.append(by_common[name][0])
        elif name in names:
            scientific, common = names[name]
            labels.append(by_scientific.get(scientific.lower(), f"{scientific}_{common}"))
        elif residual is not None and residual[j] >= 0:
            labels.append(birdnet_labels[int(residual[j])])
        else:
            unknown.append(name)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        where = f"the taxonomy {taxonomy} does not list it" if taxonomy else \
            f"pass --taxonomy ({TAXONOMY_FILE}) to name eBird codes"
        raise ClassifierError(f"{len(unknown)} species have no scientific name for BirdNET's label file "
                              f"(Scientific name_Common name): {shown}; {where}")
    bad = [label for label in labels if "\n" in label or "_" not in label]
    if bad:
        raise ClassifierError(f"labels {bad[:3]} are not of the form Scientific name_Common name")
    first: dict[str, str] = {}
    for name, label in zip(species, labels):
        if first.setdefault(label, name) != name:  # birdnetlib and BirdNET-Pi key scores by label
            raise ClassifierError(f"species {first[label]} and {name} would both be labelled {label!r}; "
                                  "BirdNET's tools would keep only one of them")
    return labels


# ---------------------------------------------------------------- the check


def disagreement(model_file: str | Path, backbone, head: HeadWeights, frames: np.ndarray) -> float:
    """Largest |probability| difference over `frames` between the exported classifier and
    birdemb's own path (the backbone's embedding and logits through runtime.head)."""
    exported = TFLiteRunner(model_file, batch=len(frames)).run(frames)
    if len(exported) != 1 or exported[0].shape != (len(frames), head.layers[-1][0].shape[0]):
        raise ClassifierError(f"{model_file}: outputs {[o.shape for o in exported]}, expected one "
                              f"[{len(frames)}, {head.layers[-1][0].shape[0]}]")
    embeddings, logits = backbone.embed(frames)
    own = sigmoid(head_logits(head, embeddings, logits))
    return float(np.max(np.abs(sigmoid(exported[0]) - own)))


# ---------------------------------------------------------------- the export


def export_classifier(run_dir: str | Path, out_path: str | Path, taxonomy: str | Path | None = None,
                      weights: str | Path | None = None, frames: np.ndarray | None = None) -> Path:
    """Write OUT.tflite, OUT_Labels.txt and OUT_birdemb.json for a run on BirdNET embeddings;
    returns OUT.tflite. Refuses (ClassifierError) a run on another backbone, a species it cannot
    name, or an export whose probabilities differ from birdemb's by TOLERANCE or more on
    `frames` (default: bundle.check_frames' noise, tones and silence)."""
    run_dir, out_path = Path(run_dir), Path(out_path)
    if out_path.suffix != ".tflite":
        raise ClassifierError(f"{out_path}: the classifier's name must end in .tflite "
                              f"(BirdNET-Analyzer finds the labels as <name>{LABELS_SUFFIX})")
    config, species, head = read_run(run_dir)
    model = (config.get("backbone") or {}).get("model")
    if model != "birdnet":
        raise ClassifierError(f"{run_dir}: the run was trained on {model} embeddings; BirdNET-Analyzer's "
                              "classifiers run on BirdNET's graph, so only runs on BirdNET embeddings export")
    if ((config.get("backbone") or {}).get("options") or {}).get("precision", "fp32") != "fp32":
        raise ClassifierError(f"{run_dir}: the run was trained on int8 BirdNET embeddings; BirdNET-Analyzer and "
                              "BirdNET-Pi run the FP32 model: train on a store extracted with --precision fp32")
    backbone = load_run_backbone(config, weights)
    _, columns = backbone.tflite_logits()
    head = head.with_columns(columns)
    taxonomy_file = run_taxonomy_file(config, taxonomy)
    labels = classifier_labels(species, backbone.labels, head.residual, taxonomy_file)

    frames = np.asarray(check_frames(int(backbone.frame_s * backbone.sample_rate), backbone.sample_rate)
                        if frames is None else frames, dtype=np.float32)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        tmp.write_bytes(append_head(backbone.weights.read_bytes(), head.layers, head.residual))
        worst = disagreement(tmp, backbone, head, frames)
        if not worst < TOLERANCE:
            raise ClassifierError(f"{out_path}: the exported classifier's probabilities differ from birdemb's by "
                                  f"{worst:.2e} (allowed: {TOLERANCE:.0e}); nothing written")
        sidecar(out_path, LABELS_SUFFIX).write_text("".join(label + "\n" for label in labels), encoding="utf-8")
        sidecar(out_path, CHECK_SUFFIX).write_text(json.dumps({
            "birdemb_version": __version__, "run": str(run_dir.resolve()), "species": species, "labels": labels,
            "backbone": {"model": backbone.name, "version": backbone.version,
                         "weights_sha256": backbone.weights_sha256},
            "head_layers": [list(w.shape) for w, _ in head.layers],
            "residual_columns": 0 if head.residual is None else int((head.residual >= 0).sum()),
            "taxonomy": None if taxonomy_file is None else str(taxonomy_file),
            "form": f"audio [n, {frames.shape[1]}] at {backbone.sample_rate} Hz in, "
                    f"logits [n, {len(species)}] out (no sigmoid)",
            "check": {"frames": int(len(frames)), "max_abs_probability_difference": worst, "tolerance": TOLERANCE},
        }, indent=1))
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path
