"""A small generated feature store with known structure, for notebooks and tests where the
real corpus is absent. No audio and no backbone: rows are written straight into the store.

Train files hold one folder species each; soundscapes hold a few species each, and
`always_with` pairs always call together in soundscapes (so FPGrowth and the rules have
something to find). Species outside the train folders (`soundscape_only`) call only in
soundscapes. Embeddings cluster around one centre per species; logits are high (+4) where a
species calls and low (-6) elsewhere, with a little noise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from birdemb import store

MODEL = "toy"
TRAIN_SPECIES = ("amerob", "norcar", "blujay", "daejun", "bkcchi", "houspa")
SOUNDSCAPE_ONLY = ("houfin", "tuftit")
ALWAYS_WITH = {"norcar": "amerob", "tuftit": "bkcchi"}  # in soundscapes, the key never calls without its value
WINDOW_S = 5.0


def _logits(calls: np.ndarray, rng) -> np.ndarray:
    return np.where(calls, 4.0, -6.0).astype(np.float32) + rng.normal(0, 0.3, calls.shape).astype(np.float32)


def _embedding(calls: np.ndarray, centres: np.ndarray, rng) -> np.ndarray:
    weights = calls / np.maximum(calls.sum(axis=1, keepdims=True), 1)
    return (weights @ centres + rng.normal(0, 0.4, (len(calls), centres.shape[1]))).astype(np.float32)


def _rows(file: str, species: str | None, calls: np.ndarray, centres, rng) -> store.FileRows:
    n = len(calls)
    start = np.arange(n) * WINDOW_S
    return store.FileRows(file=file, species=species, secondary_labels=[], duration_s=n * WINDOW_S,
                          start_s=start, end_s=start + WINDOW_S, embedding=_embedding(calls, centres, rng),
                          logits=_logits(calls, rng))


def _write(root: Path, dataset: str, labels: list[str], dim: int, files: list[store.FileRows]) -> None:
    directory = store.partition_dir(root, MODEL, dataset)
    parameters = {"model": MODEL, "version": "sample", "layout": {"window_s": WINDOW_S}}
    store.check_or_write_manifest(directory, {
        "model": MODEL, "version": "sample", "embedding_dim": dim, "n_labels": len(labels),
        "labels": labels, "layout": {"window_s": WINDOW_S}, "parameters": parameters,
    })
    writer = store.PartWriter(directory, store.schema(dim, len(labels)))
    for rows in files:
        writer.add(rows)
    writer.flush()


def write_sample_store(root, train_files_per_species: int = 8, train_windows: int = 4, soundscapes: int = 12,
                       soundscape_windows: int = 24, dim: int = 32, seed: int = 0) -> Path:
    """Write datasets `train` and `soundscape` of model MODEL under root; return root.

    Train: every window of a file calls its folder species with probability 0.75.
    Soundscapes: each holds 2 to 4 species (plus their ALWAYS_WITH partners); each window
    calls each of them with probability 0.3, and no window calls anything with probability 0.5.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    labels = list(TRAIN_SPECIES + SOUNDSCAPE_ONLY)
    column = {s: j for j, s in enumerate(labels)}
    centres = rng.normal(0, 1.5, (len(labels), dim))

    train = []
    for species in TRAIN_SPECIES:
        for k in range(train_files_per_species):
            calls = np.zeros((train_windows, len(labels)), dtype=bool)
            calls[:, column[species]] = rng.random(train_windows) < 0.75
            train.append(_rows(f"{species}/XC{column[species]}{k:03d}.ogg", species, calls, centres, rng))
    _write(root, "train", labels, dim, train)

    scapes = []
    for k in range(soundscapes):
        present = set(rng.choice(labels, size=rng.integers(2, 5), replace=False).tolist())
        present |= {ALWAYS_WITH[s] for s in present if s in ALWAYS_WITH}
        calls = np.zeros((soundscape_windows, len(labels)), dtype=bool)
        for species in present:
            calls[:, column[species]] = rng.random(soundscape_windows) < 0.3
        calls[rng.random(soundscape_windows) < 0.5] = False  # quiet windows, as in real soundscapes
        for species, partner in ALWAYS_WITH.items():  # keep the pair rule exact after thinning
            calls[:, column[partner]] |= calls[:, column[species]]
        scapes.append(_rows(f"SC{k:04d}.ogg", None, calls, centres, rng))
    _write(root, "soundscape", labels, dim, scapes)
    return root


# ---------------------------------------------------------------- the notebooks' store


def find_xc10(start: Path | None = None) -> Path | None:
    """The shared xc10 corpus (../shared/data/xc10 beside the repository), if present."""
    import os

    if os.environ.get("BIRDEMB_XC10"):
        candidate = Path(os.environ["BIRDEMB_XC10"])
        return candidate if (candidate / "train_audio").is_dir() else None
    here = Path(start or __file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "data" / "xc10"
        if (candidate / "train_audio").is_dir():
            return candidate
    return None


def notebook_store(folder) -> dict:
    """A store to explore: BirdNET over the real xc10 corpus where present (about 25 s; rerun
    on the same folder, extraction resumes and costs nothing), else the generated sample.
    Returns {"store", "model", "taxonomy" (path or None), "source"}."""
    import subprocess
    import sys

    folder = Path(folder)
    xc10 = find_xc10()
    if xc10 is None:
        if not store.partition_dir(folder, MODEL, "soundscape").exists():
            write_sample_store(folder)
        return {"store": folder, "model": MODEL, "taxonomy": None, "source": "generated sample store"}
    jobs = [("train", xc10 / "train_audio", ["--metadata", str(xc10 / "train_metadata.csv")]),
            ("soundscape", xc10 / "unlabeled_soundscapes", [])]
    for dataset, audio, extra in jobs:  # the command line users run, so the notebook shows it
        subprocess.run([sys.executable, "-m", "birdemb", "extract", "--model", "birdnet", "--audio", str(audio),
                        "--store", str(folder), "--dataset", dataset, "--quiet", *extra], check=True)
    return {"store": folder, "model": "birdnet", "taxonomy": xc10 / "eBird_Taxonomy_v2021.csv",
            "source": f"BirdNET over {xc10}"}
