"""Run directories and submissions for deploy tests: a run as train-head writes it, with
random head weights over the real BirdNET, and a submission.csv reader."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from birdemb.backbones.birdnet import BirdNET
from birdemb.runtime.audio import WindowLayout
from birdemb.runtime.head import save_head
from birdemb.training import rundir

SPECIES = ["amerob", "norcar", "blujay", "houfin", "sonspa"]


def make_birdnet_run(path: Path, species=SPECIES, hidden: int = 0, seed: int = 0, residual=None) -> Path:
    """A run dir as train-head writes it, with random head weights (1024 -> [hidden ->] S);
    `residual`: per species the BirdNET logit column the head adds (-1: none)."""
    rng = np.random.default_rng(seed)
    sizes = [1024, *([hidden] if hidden else []), len(species)]
    layers = [((rng.standard_normal((o, i)) / np.sqrt(i) * 3).astype(np.float32), (0.1 * rng.standard_normal(o)).astype(np.float32))
              for i, o in zip(sizes[:-1], sizes[1:])]
    backbone = BirdNET()
    layout = WindowLayout(5.0, backbone.frame_s, backbone.sample_rate, 1.0)
    path.mkdir(parents=True, exist_ok=True)
    save_head(path, layers, None if residual is None else np.asarray(residual))
    rundir.write_json(path, rundir.SPECIES, list(species))
    rundir.write_json(path, rundir.CONFIG, {
        "embeddings": "birdnet",
        "layout": layout.describe(),
        "backbone": {"model": "birdnet", "version": backbone.version, "weights_sha256": backbone.weights_sha256, "options": {}},
    })
    return path


def read_submission(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], [r[0] for r in rows[1:]], np.array([[float(v) for v in r[1:]] for r in rows[1:]], dtype=np.float64)
