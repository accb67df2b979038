"""Turn a run directory into a self-contained submission bundle.

BUNDLE/
  bundle.json       format, backbone (model, version, weights sha256, options, file, which
                    output is the embedding, and for a residual head which output holds
                    the logits and the column of each stored label in it), layout, species and head file names, fused
                    graph (or null), its measured agreement, and `files`: sha256 of every file
  backbone.tflite   the backbone with its embedding (and logits) as outputs (BirdNET: the rewritten
                    model; Vocalization: the SavedModel compiled to TFLite)
  front_end.npz,    where the backbone runs split (BirdNET): its spectrogram front end's constants
  network.tflite    and the graph after it, which inference runs instead of backbone.tflite (same
                    outputs to 1e-4, 1.8x faster; birdemb.runtime.front_end)
  head.npz          the run's head (W0, b0 [, W1, b1]; ReLU between [; residual]); for a
                    passthrough bundle (birdemb.deploy.passthrough) zero weights + residual
  species.json      column order of the submission
  config.json       the run's config, as trained (passthrough: what the bundle maps)
  fused.tflite      where the backbone can export its source graph (Vocalization): backbone +
                    head + sigmoid in one graph (frames in, species probabilities out),
                    checked against the two-step path to 1e-5
  kaggle_submit.py  the single-file script, generated from the code that built the bundle

Reading a bundle needs only birdemb.runtime; building one loads the backbone (and, for the
fused graph, whatever the backbone exports it with).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from birdemb import __version__
from birdemb.backbones import BackboneError, load_described
from birdemb.deploy import kaggle_script
from birdemb.errors import BirdembError
from birdemb.labels.mapping import TAXONOMY_FILE
from birdemb.labels.species import is_birdnet_label, label_index, read_taxonomy
from birdemb.runtime.bundle_format import BUNDLE_FORMAT, BUNDLE_MANIFEST, Bundle, layout_from_dict
from birdemb.runtime.hashing import sha256_file
from birdemb.runtime.head import HEAD, HeadError, HeadWeights, head_logits, load_head, save_head, sigmoid
from birdemb.runtime.interpreter import TFLiteRunner
from birdemb.training.rundir import CONFIG, SPECIES, RunError, json_text, read_json

BACKBONE_FILE = "backbone.tflite"
FRONT_END_FILE = "front_end.npz"
NETWORK_FILE = "network.tflite"
FUSED_FILE = "fused.tflite"
SCRIPT_FILE = "kaggle_submit.py"
FUSED_TOLERANCE = 1e-5


class BundleError(BirdembError):
    """A run that cannot be bundled, or a fused graph that disagrees with the two-step path."""


# ---------------------------------------------------------------- reading the run


def read_run(run_dir: str | Path) -> tuple[dict, list[str], HeadWeights]:
    """(config, species, head) after checking they fit together."""
    run_dir = Path(run_dir)
    config = read_json(run_dir, CONFIG)
    species = read_json(run_dir, SPECIES)
    head = load_head(run_dir)
    for key in ("layout", "backbone"):
        if key not in config:
            raise RunError(f"{run_dir / CONFIG}: no `{key}` entry (written by train-head)")
    n_out = head.layers[-1][0].shape[0]
    if n_out != len(species):
        raise RunError(f"{run_dir}: the head has {n_out} outputs but species.json lists {len(species)} species")
    return config, species, head


def load_run_backbone(config: dict, weights: str | Path | None = None):
    """The run's backbone, checked to be the very weights its embeddings came from."""
    try:
        backbone = load_described(config["backbone"], weights=weights, recorded="the run was trained on", threads=1)
    except BackboneError as error:
        raise BundleError(str(error)) from None
    if backbone.tflite_file is None:
        raise BundleError(f"{backbone.name} has no .tflite graph, so it cannot run in a bundle")
    return backbone


def output_index(model_file: str | Path, frame_samples: int, width: int, what: str) -> int:
    """Which output of the backbone .tflite is `what`: the one `width` wide."""
    outputs = TFLiteRunner(model_file, batch=1).run(np.zeros((1, frame_samples), np.float32))
    matches = [i for i, out in enumerate(outputs) if out.ndim == 2 and out.shape[1] == width]
    if len(matches) != 1:
        widths = [out.shape[-1] for out in outputs]
        raise BundleError(f"{model_file}: outputs of widths {widths}; cannot tell which is the {width}-wide {what}")
    return matches[0]


def backbone_outputs(backbone, model_file: str | Path, frame_samples: int, head: HeadWeights) -> dict:
    """bundle.json's entries for the backbone outputs inference reads: the embedding, and for
    a head that adds the backbone's own logits, their output and each stored label's column."""
    entry: dict = {"embedding_output": output_index(model_file, frame_samples, head.layers[0][0].shape[1], "embedding")}
    if head.uses_backbone_logits:
        width, columns = backbone.tflite_logits()
        entry["logits_output"] = output_index(model_file, frame_samples, width, "logits")
        identity = len(columns) == width and bool((columns == np.arange(width)).all())
        entry["logit_columns"] = None if identity else [int(c) for c in columns]
        try:
            head.with_columns(columns)
        except HeadError as error:
            raise BundleError(f"{backbone.name}: {error}") from None
    return entry


def passthrough_entry(backbone, model_file: str | Path, frame_samples: int, species: list[str],
                      taxonomy: dict | None, expected_missing: list[str] | None = None) -> dict:
    """bundle.json's `passthrough`: the backbone's logits output and, per species, its column
    there (-1: the backbone lacks it), mapped by labels.species.label_index, the one mapping;
    or `missing`: why there is none. `expected_missing`: the species the run's training
    could not map (config.json's mapping); a taxonomy that maps others is refused, so the
    passthrough is the surrogate the head was trained beside."""
    labels = backbone.labels
    if not labels:
        return {"missing": f"{backbone.name} has no classifier"}
    if taxonomy is None and any(is_birdnet_label(label) for label in labels):
        return {"missing": f"{backbone.name}'s labels are scientific names: the eBird taxonomy is needed to map them"}
    index = label_index(labels, species, taxonomy)
    missing = [s for s, i in zip(species, index) if i < 0]
    if expected_missing is not None and sorted(missing) != sorted(expected_missing):
        return {"missing": f"this taxonomy leaves {len(missing)} species unmapped, the run's training "
                           f"{len(expected_missing)}: not the mapping the head was trained with"}
    width, columns = backbone.tflite_logits()
    mapped = np.where(index >= 0, np.asarray(columns, dtype=np.int64)[np.maximum(index, 0)], -1)
    return {"logits_output": output_index(model_file, frame_samples, width, "logits"),
            "columns": [int(c) for c in mapped], "matched": int((mapped >= 0).sum()), "species": len(species)}


def run_taxonomy_file(config: dict, taxonomy: str | Path | None = None) -> Path | None:
    """The eBird taxonomy file for a run: `taxonomy`, else the one its training used
    (train_config's taxonomy, or eBird_Taxonomy_v2021.csv beside its metadata) while it is
    still there; None when there is none."""
    if taxonomy:
        return Path(taxonomy)
    flat = config.get("train_config") or {}
    candidates = [flat.get("taxonomy")]
    if flat.get("metadata"):
        candidates.append(Path(flat["metadata"]).parent / TAXONOMY_FILE)
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def run_taxonomy(config: dict, taxonomy: str | Path | None = None) -> dict | None:
    """The eBird taxonomy for a run's passthrough (see run_taxonomy_file)."""
    found = run_taxonomy_file(config, taxonomy)
    return read_taxonomy(found) if found else None


def run_passthrough(config: dict, species: list[str], backbone, frame_samples: int,
                    taxonomy: str | Path | None = None) -> dict:
    """A run's `passthrough` entry, checked against the mapping its training recorded (unless
    the caller names the taxonomy)."""
    recorded = None if taxonomy else (config.get("mapping") or {}).get("missing")
    return passthrough_entry(backbone, backbone.tflite_file, frame_samples, species, run_taxonomy(config, taxonomy),
                             recorded)


def bundle_from_run(run_dir: str | Path, weights: str | Path | None = None,
                    taxonomy: str | Path | None = None) -> Bundle:
    """A Bundle that points into the run and the model cache, without copying anything
    (`birdemb submit --run`)."""
    run_dir = Path(run_dir).resolve()
    config, species, head = read_run(run_dir)
    layout = layout_from_dict(config["layout"])
    backbone = load_run_backbone(config, weights)
    outputs = backbone_outputs(backbone, backbone.tflite_file, layout.frame_samples, head)
    columns = outputs.get("logit_columns")
    passthrough = run_passthrough(config, species, backbone, layout.frame_samples, taxonomy)
    split = backbone.tflite_split
    return Bundle(
        root=str(run_dir), species=tuple(species), layout=layout, backbone_file=str(backbone.tflite_file),
        split=(str(split[0]), str(split[1])) if split else None,
        embedding_output=outputs["embedding_output"], head_file=str(run_dir / HEAD), fused_file=None,
        model=backbone.name, logits_output=outputs.get("logits_output"),
        logit_columns=None if columns is None else tuple(columns),
        passthrough_output=passthrough.get("logits_output"),
        passthrough_columns=tuple(passthrough["columns"]) if "columns" in passthrough else None,
        passthrough_missing=passthrough.get("missing", ""),
    )


def _columns(outputs: dict) -> np.ndarray | None:
    columns = outputs.get("logit_columns")
    return None if columns is None else np.asarray(columns, dtype=np.int64)


# ---------------------------------------------------------------- the fused graph's check


def check_frames(n_samples: int, rate: int, count: int = 4, seed: int = 0) -> np.ndarray:
    """Test frames for the agreement check: noise, tones and silence, loud and quiet."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / rate
    frames = [0.1 * rng.standard_normal(n_samples), 0.3 * np.sin(2 * np.pi * 3000 * t),
              0.5 * np.sin(2 * np.pi * (1500 + 800 * np.sin(2 * np.pi * 2 * t)) * t), np.zeros(n_samples)]
    return np.stack(frames[:count]).astype(np.float32)


def fused_disagreement(fused_file, backbone_file, outputs: dict, head: HeadWeights, frames: np.ndarray) -> float:
    """Largest |fused - two-step| probability over `frames`; `outputs`: backbone_outputs'."""
    fused = TFLiteRunner(fused_file).run(frames)[0]
    values = TFLiteRunner(backbone_file).run(frames)
    logits = values[outputs["logits_output"]] if "logits_output" in outputs else None
    two_step = sigmoid(head_logits(head.with_columns(_columns(outputs)), values[outputs["embedding_output"]], logits))
    return float(np.max(np.abs(fused.astype(np.float64) - two_step)))


# ---------------------------------------------------------------- building the bundle


def build_bundle(
    run_dir: str | Path, out: str | Path, weights: str | Path | None = None, fused: bool | None = None,
    overwrite: bool = False, taxonomy: str | Path | None = None,
) -> Path:
    """Gather what inference needs into `out` (written aside, then moved into place).

    fused: None = export the one-graph .tflite where the backbone can (`can_fuse`); True =
    insist; False = skip. taxonomy: for the passthrough columns (`--blend`), if not the run's own."""
    run_dir = Path(run_dir).resolve()
    config, species, head = read_run(run_dir)
    backbone = load_run_backbone(config, weights)
    passthrough = run_passthrough(config, species, backbone, layout_from_dict(config["layout"]).frame_samples, taxonomy)
    return write_bundle(config, species, head, backbone, out, str(run_dir), passthrough, fused, overwrite)


def write_bundle(config: dict, species: list[str], head: HeadWeights, backbone, out: str | Path, source: str,
                 passthrough: dict, fused: bool | None = None, overwrite: bool = False) -> Path:
    """The bundle of a head (a run's, or the passthrough's) over `backbone`; `source` is
    recorded as `run`, `passthrough` (passthrough_entry's) as `passthrough`."""
    out = Path(out).resolve()
    if out.exists() and not overwrite:
        raise BundleError(f"{out} exists; choose another `out` or pass `overwrite`")
    layout = layout_from_dict(config["layout"])
    want_fused = backbone.can_fuse if fused is None else fused
    if want_fused and not backbone.can_fuse:
        raise BundleError(f"a fused graph needs the backbone's source graph; {backbone.name} has none")
    if want_fused and layout.frames_per_window != 1:
        raise BundleError("a fused graph needs one backbone frame per window (pooling happens between backbone and head)")

    tmp = out.with_name(f".{out.name}.tmp{time.monotonic_ns()}")
    tmp.mkdir(parents=True)
    try:
        shutil.copyfile(backbone.tflite_file, tmp / BACKBONE_FILE)
        split = backbone.tflite_split
        if split:
            shutil.copyfile(split[0], tmp / FRONT_END_FILE)
            shutil.copyfile(split[1], tmp / NETWORK_FILE)
        save_head(tmp, head.layers, head.residual)
        (tmp / SPECIES).write_text(json.dumps(species, indent=1))
        (tmp / CONFIG).write_text(json_text(config))
        (tmp / SCRIPT_FILE).write_text(kaggle_script.generate(), encoding="utf-8")
        outputs = backbone_outputs(backbone, tmp / BACKBONE_FILE, layout.frame_samples, head)
        fused_entry = None
        if want_fused:
            (tmp / FUSED_FILE).write_bytes(backbone.export_fused(head.with_columns(_columns(outputs)),
                                                                 layout.frame_samples))
            frames = check_frames(layout.frame_samples, layout.sample_rate)
            gap = fused_disagreement(tmp / FUSED_FILE, tmp / BACKBONE_FILE, outputs, head, frames)
            if not gap <= FUSED_TOLERANCE:
                raise BundleError(f"the fused graph differs from backbone + head by {gap:.2e} (> {FUSED_TOLERANCE:g})")
            fused_entry = {"file": FUSED_FILE, "max_abs_difference": gap, "tolerance": FUSED_TOLERANCE,
                           "check_frames": len(frames)}
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {
            "format": BUNDLE_FORMAT,
            "format_version": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "code_version": __version__,
            "run": source,
            "backbone": {**backbone.describe(), "file": BACKBONE_FILE, **outputs,
                         **({"front_end": FRONT_END_FILE, "network": NETWORK_FILE} if split else {})},
            "layout": config["layout"],
            "species": SPECIES,
            "n_species": len(species),
            "head": HEAD,
            "head_layers": [list(w.shape) for w, _ in head.layers],
            "head_adds_backbone_logits": head.uses_backbone_logits,
            "passthrough": passthrough,
            "config": CONFIG,
            "fused": FUSED_FILE if fused_entry else None,
            "fused_check": fused_entry,
            "script": SCRIPT_FILE,
            "files": {name: sha256_file(tmp / name) for name in files},
        }
        (tmp / BUNDLE_MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
