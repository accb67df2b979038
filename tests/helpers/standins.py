"""Stand-ins for models whose real weights cannot be downloaded here.

`build_perch_standin` writes a small TF SavedModel with the interface of Google's Bird
Vocalization Classifier (Perch v4, Kaggle google/bird-vocalization-classifier): a function
`infer_tf` taking `inputs` [batch, 160000] float32 (5 s at 32 kHz) and returning a dict with
`embedding` [batch, 1280] and `label` [batch, 10932] (plus a `frontend` output the backbone
must ignore), and `assets/label.csv` with the real label list. Its numbers are a fixed,
deterministic function of the input (framed features through two small dense layers), so
compiled and uncompiled outputs can be compared. It says nothing about Perch's accuracy or
speed.

Importing this module is cheap; TensorFlow is imported only when a stand-in is built.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.paths import PERCH_LABELS

SAMPLES = 160_000  # 5 s at 32 kHz
EMBEDDING_DIM = 1280
FEATURE_FRAMES, FEATURE_WIDTH = 1250, 128  # 160000 = 1250 x 128: framed features
BOTTLENECK = 32  # logits come from the embedding's first 32 values (keeps the model small)


def perch_labels() -> Path:
    """The real Perch v4 label list; skips the calling test when the shared copy is absent."""
    if not PERCH_LABELS.is_file():
        pytest.skip(f"the Perch v4 label list is absent ({PERCH_LABELS} not found); the stand-in needs it")
    return PERCH_LABELS


def _weights(n_labels: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": (rng.standard_normal((2 * FEATURE_WIDTH, EMBEDDING_DIM)) / np.sqrt(2 * FEATURE_WIDTH)).astype(np.float32),
        "b1": (0.1 * rng.standard_normal(EMBEDDING_DIM)).astype(np.float32),
        "w2": (rng.standard_normal((BOTTLENECK, n_labels)) / np.sqrt(BOTTLENECK)).astype(np.float32),
        "b2": (0.1 * rng.standard_normal(n_labels)).astype(np.float32),
    }


def build_perch_standin(path: str | Path, signature: str = "infer_tf", seed: int = 0) -> Path:
    """Write the stand-in SavedModel to `path` (a new folder) and return it.

    signature="infer_tf": the real model's function, returning a dict keyed embedding /
    label / frontend. signature="serving_default": only a serving signature, whose outputs
    are named output_0 (logits) and output_1 (embedding), so a backbone must choose outputs
    by their width, not by name or position.
    """
    import tensorflow as tf

    labels_file = perch_labels()
    n_labels = sum(1 for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()) - 1
    path = Path(path)
    params = _weights(n_labels, seed)

    class PerchStandin(tf.Module):
        def __init__(self):
            super().__init__()
            self.w1 = tf.Variable(params["w1"], name="w1")
            self.b1 = tf.Variable(params["b1"], name="b1")
            self.w2 = tf.Variable(params["w2"], name="w2")
            self.b2 = tf.Variable(params["b2"], name="b2")

        def _outputs(self, inputs):
            frames = tf.reshape(inputs, [-1, FEATURE_FRAMES, FEATURE_WIDTH])
            features = tf.concat(
                [tf.reduce_mean(frames, axis=1), tf.math.log(tf.reduce_mean(tf.square(frames), axis=1) + 1e-6)],
                axis=1,
            )
            embedding = tf.tanh(tf.matmul(features, self.w1) + self.b1)
            logits = tf.matmul(embedding[:, :BOTTLENECK], self.w2) + self.b2
            return embedding, logits, frames

        @tf.function(input_signature=[tf.TensorSpec([None, SAMPLES], tf.float32, name="inputs")])
        def infer_tf(self, inputs):
            embedding, logits, frames = self._outputs(inputs)
            return {"embedding": embedding, "label": logits, "frontend": frames}

        @tf.function(input_signature=[tf.TensorSpec([None, SAMPLES], tf.float32, name="inputs")])
        def serve(self, inputs):
            embedding, logits, _ = self._outputs(inputs)
            return {"output_0": logits, "output_1": embedding}

    module = PerchStandin()
    if signature == "infer_tf":
        tf.saved_model.save(module, str(path))
    elif signature == "serving_default":
        saveable = tf.Module()  # no infer_tf attribute: only the serving signature is left
        saveable.vars = [module.w1, module.b1, module.w2, module.b2]
        tf.saved_model.save(saveable, str(path), signatures={"serving_default": module.serve})
    else:
        raise ValueError(f"unknown stand-in signature {signature!r}")
    (path / "assets").mkdir(exist_ok=True)
    shutil.copyfile(labels_file, path / "assets" / "label.csv")
    return path


def perch_standin_reference(path: str | Path, waveforms: np.ndarray) -> dict[str, np.ndarray]:
    """The stand-in's own outputs, run in TensorFlow from the SavedModel (the uncompiled truth)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    batch = tf.constant(np.asarray(waveforms, dtype=np.float32))
    if hasattr(loaded, "infer_tf"):
        out = loaded.infer_tf(batch)
        return {"embedding": out["embedding"].numpy(), "logits": out["label"].numpy()}
    out = loaded.signatures["serving_default"](inputs=batch)
    return {"embedding": out["output_1"].numpy(), "logits": out["output_0"].numpy()}
