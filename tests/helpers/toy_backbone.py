"""A backbone that lives only in the tests, to prove a new model plugs in whole: it goes
through extract -> train-head --init surrogate -> bundle -> submit by its "module:Class"
name, and nothing in birdemb names it.

The model is small and real: 5 s frames at 16 kHz; the embedding is the log energy in 8
frequency bands (a fixed DFT over 10 ms sub-frames, averaged), the logits a dense layer over
it with one row per label (eBird codes, so no taxonomy is needed). It is compiled once with
TensorFlow to a .tflite whose outputs are the logits and the embedding, and cached by the
hash of its weights.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from birdemb.backbones import Backbone, BackboneError
from birdemb.backbones.tflite_graph import cache_dir
from birdemb.runtime.interpreter import TFLiteRunner

RATE = 16_000
FRAME_S = 5.0
SUB = 160  # 10 ms sub-frames
BANDS_HZ = (500, 1000, 1500, 2000, 2500, 3000, 3500, 4000)
LABELS = ["norcar", "amerob", "houspa"]  # norcar: low band, amerob: high band, houspa: neither


def toy_weights(seed: int = 0) -> dict[str, np.ndarray]:
    t = np.arange(SUB) / RATE
    basis = np.concatenate([np.cos(2 * np.pi * np.outer(t, BANDS_HZ)), np.sin(2 * np.pi * np.outer(t, BANDS_HZ))],
                           axis=1).astype(np.float32)  # [160, 16]
    weight = np.zeros((len(LABELS), len(BANDS_HZ)), dtype=np.float32)
    weight[0, :2], weight[0, 4:] = 0.2, -0.1  # norcar: 500 and 1000 Hz, not 2500 Hz and up
    weight[1, 5:7], weight[1, :2] = 0.2, -0.1  # amerob: 3000 and 3500 Hz, not 1000 Hz and below
    rng = np.random.default_rng(seed)
    weight += 0.01 * rng.standard_normal(weight.shape).astype(np.float32)
    bias = np.asarray([-1.0, -1.0, -4.0], dtype=np.float32)  # houspa: never heard
    return {"basis": basis, "weight": weight, "bias": bias}


def compile_toy(weights: dict[str, np.ndarray]) -> bytes:
    import tensorflow as tf

    samples = round(RATE * FRAME_S)
    basis = tf.constant(weights["basis"])
    weight_t = tf.constant(np.ascontiguousarray(weights["weight"].T))
    bias = tf.constant(weights["bias"])
    half = len(BANDS_HZ)

    @tf.function(input_signature=[tf.TensorSpec([None, samples], tf.float32, name="frames")])
    def toy(frames):
        sub = tf.reshape(frames, [-1, samples // SUB, SUB])
        spectrum = tf.einsum("nts,sk->ntk", sub, basis)
        power = tf.square(spectrum[..., :half]) + tf.square(spectrum[..., half:])
        embedding = tf.math.log(tf.reduce_mean(power, axis=1) + 1e-6)
        logits = tf.matmul(embedding, weight_t) + bias
        return {"logits": logits, "embedding": embedding}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([toy.get_concrete_function()])
    return converter.convert()


class ToyBackbone(Backbone):
    name = "toy"
    version = "1"
    sample_rate = RATE
    frame_s = FRAME_S
    embedding_dim = len(BANDS_HZ)
    labels = LABELS

    def __init__(self, weights: str | Path | None = None, threads: int = 1, batch: int = 16, seed: int = 0, **_):
        if weights is not None:
            raise BackboneError(f"{weights}: the toy backbone makes its own weights")
        self._weights = toy_weights(seed)
        digest = hashlib.sha256()
        for key in sorted(self._weights):
            digest.update(self._weights[key].tobytes())
        self.weights_sha256 = digest.hexdigest()
        self.model_path = cache_dir() / "toy" / f"{self.weights_sha256[:16]}.tflite"
        if not self.model_path.is_file():
            self.model_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.model_path.with_suffix(f".tmp{id(self)}")
            tmp.write_bytes(compile_toy(self._weights))
            tmp.replace(self.model_path)
        self._runner = TFLiteRunner(self.model_path, threads=threads, batch=batch)

    @property
    def tflite_file(self) -> Path:
        return self.model_path

    def embed(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        by_width = {out.shape[1]: out for out in self._runner.run(frames)}
        return by_width[self.embedding_dim], by_width[len(self.labels)]
