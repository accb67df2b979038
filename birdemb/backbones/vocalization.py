"""Google's Bird Vocalization Classifier (Perch v4), compiled once to TFLite, run on ai-edge-litert.

5 s frames at 32 kHz in, a 1280-d embedding and 10,932 raw logits (eBird 2021 codes, in the
order of the model's assets/label.csv) out.

Weights (`weights=`): the TF SavedModel folder as downloaded from Kaggle
(google/bird-vocalization-classifier, TensorFlow2 variant, version 4), or a Kaggle handle that
kagglehub fetches when the machine is online. The SavedModel's inference function is converted
to TFLite once and cached as CACHE/vocalization/<sha256 of the SavedModel folder>.tflite
(CACHE is $BIRDEMB_CACHE or ~/.cache/birdemb); TensorFlow is imported only for that step.

`species=` (a list of eBird codes, or a species-list file) makes the logits follow that
list's order instead, with -inf for species the model does not know.
"""
from __future__ import annotations

import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from birdemb.backbones.base import Backbone, BackboneError, CliOption
from birdemb.backbones.tflite_graph import cache_dir
from birdemb.labels.species import label_index, read_species_list, select_logits
from birdemb.runtime.interpreter import TFLiteRunner

DEFAULT_HANDLE = "google/bird-vocalization-classifier/tensorFlow2/bird-vocalization-classifier/4"
LABEL_FILE = Path("assets") / "label.csv"
EMBEDDING_DIM = 1280
_REPORTED: set[Path] = set()  # cache paths already announced by this process


# ---------------------------------------------------------------- weights and labels


def resolve_weights(weights: str | Path | None) -> Path:
    """The local SavedModel folder for `weights`: a folder as given, else a Kaggle handle."""
    if weights is None:
        weights = DEFAULT_HANDLE
    path = Path(weights).expanduser()
    if path.exists():
        if not (path / "saved_model.pb").is_file():
            raise BackboneError(f"{path}: not a TF SavedModel folder (no saved_model.pb)")
        return path
    if not _looks_like_handle(str(weights)):
        raise BackboneError(f"{path}: no such SavedModel folder")
    return _kaggle_download(str(weights))


def _looks_like_handle(text: str) -> bool:
    """owner/model/framework/variation[/version], as Kaggle writes model handles."""
    parts = text.split("/")
    return not text.startswith(("/", ".", "~")) and 4 <= len(parts) <= 5 and all(parts)


def _kaggle_download(handle: str) -> Path:
    try:
        import kagglehub
    except ImportError:
        raise BackboneError(f"fetching Kaggle model {handle} needs kagglehub (pip install kagglehub)") from None
    try:
        folder = Path(kagglehub.model_download(handle))
    except Exception as error:  # offline, unknown handle, no credentials...
        raise BackboneError(
            f"could not download Kaggle model {handle} ({type(error).__name__}: {error}; no local folder has "
            "that name either); on a machine without "
            "internet, download it from kaggle.com/models/google/bird-vocalization-classifier and pass "
            "`weights` <the unpacked SavedModel folder>"
        ) from None
    if not (folder / "saved_model.pb").is_file():
        raise BackboneError(f"Kaggle model {handle} downloaded to {folder}, which is not a TF SavedModel folder")
    return folder


def read_labels(path: Path) -> list[str]:
    """eBird codes in logit order from a label.csv (header `ebird2021`, LF or CRLF lines)."""
    if not path.is_file():
        raise BackboneError(f"{path}: label file not found (the SavedModel should carry assets/label.csv)")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and row[0].strip()]
    if not rows:
        raise BackboneError(f"{path}: empty label file")
    header = [cell.strip() for cell in rows[0]]
    column = header.index("ebird2021") if "ebird2021" in header else 0
    labels = [row[column].strip() for row in rows[1:]]
    if not labels:
        raise BackboneError(f"{path}: no labels after the header")
    return labels


def hash_folder(folder: Path) -> str:
    """sha256 over every file of `folder`: relative paths in sorted order, sizes and contents."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(str(path.stat().st_size).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- compiling to TFLite


def compile_to_tflite(weights: Path, n_labels: int, n_samples: int) -> tuple[bytes, bool]:
    """The SavedModel's inference function as a TFLite model with a resizable batch, whose
    outputs are the embedding and the label logits only; and whether TF select ops were needed."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(weights))
    except Exception as error:
        raise BackboneError(f"{weights}: TensorFlow cannot load this SavedModel ({_last_line(error)})") from None
    call = _inference_call(loaded, weights)
    spec = tf.TensorSpec([None, n_samples], tf.float32, name="inputs")
    try:  # trace once to see the outputs' names and shapes
        traced = tf.function(call).get_concrete_function(spec)
    except Exception as error:  # e.g. a model made for another frame length
        raise BackboneError(
            f"{weights}: the inference function does not take [batch, {n_samples}] float32 waveforms "
            f"({_last_line(error)})"
        ) from None
    embedding_name, logits_name = choose_outputs(_named_outputs(traced.structured_outputs), n_labels, weights)

    @tf.function(input_signature=[spec])
    def inference(inputs):
        outputs = dict(_named_outputs(call(inputs)))
        return {"embedding": outputs[embedding_name], "logits": outputs[logits_name]}

    concrete = inference.get_concrete_function()

    def convert(select_ops: bool) -> bytes:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], loaded)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + (
            [tf.lite.OpsSet.SELECT_TF_OPS] if select_ops else []
        )
        return converter.convert()

    try:
        return convert(select_ops=False), False
    except Exception as builtin_error:  # some graph ops have no TFLite builtin: allow TF ops
        try:
            return convert(select_ops=True), True
        except Exception as error:
            raise BackboneError(
                f"{weights}: TFLite conversion failed (builtin ops: {builtin_error}; with TF select ops: {error})"
            ) from None


def _last_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


def _inference_call(loaded, weights: Path):
    """A callable waveform batch -> model outputs: the model's `infer_tf`, else its serving signature."""
    if hasattr(loaded, "infer_tf"):
        return loaded.infer_tf
    signature = getattr(loaded, "signatures", {}).get("serving_default")
    if signature is None:
        raise BackboneError(f"{weights}: the SavedModel has neither infer_tf nor a serving_default signature")
    names = list(signature.structured_input_signature[1])
    if len(names) != 1:
        raise BackboneError(f"{weights}: serving_default takes {names}, expected one waveform input")
    return lambda inputs: signature(**{names[0]: inputs})


def _named_outputs(outputs) -> list[tuple[str, object]]:
    if isinstance(outputs, dict):
        return list(outputs.items())
    if isinstance(outputs, (list, tuple)):
        return [(f"output_{i}", tensor) for i, tensor in enumerate(outputs)]
    return [("output_0", outputs)]


def choose_outputs(named: list[tuple[str, object]], n_labels: int, weights: Path) -> tuple[str, str]:
    """Names of the (embedding, logits) outputs among the model's: by width (1280 and the
    label count), by name (embedding, label) where the width alone is ambiguous."""

    def width(tensor) -> int | None:
        shape = tensor.shape
        return shape[-1] if len(shape) == 2 else None

    def pick(size: int, preferred: tuple[str, ...], what: str):
        candidates = [(name, t) for name, t in named if width(t) == size]
        if len(candidates) > 1:
            candidates = [(name, t) for name, t in candidates if name in preferred]
        if len(candidates) != 1:
            shapes = ", ".join(f"{name} {list(t.shape)}" for name, t in named)
            raise BackboneError(f"{weights}: cannot tell which output is the {what} [batch, {size}] among: {shapes}")
        return candidates[0][0]

    if EMBEDDING_DIM == n_labels:
        raise BackboneError(f"{weights}: {n_labels} labels, as many as embedding values; outputs would be ambiguous")
    return (
        pick(EMBEDDING_DIM, ("embedding",), "embedding"),
        pick(n_labels, ("label", "logits"), "logits"),
    )


def compiled_model(weights: Path, digest: str, n_labels: int, n_samples: int) -> tuple[Path, dict]:
    """The cached TFLite model for these weights, compiled now if absent; and its compile record."""
    folder = cache_dir() / "vocalization"
    target = folder / f"{digest}.tflite"
    record_path = target.with_suffix(".json")
    if target.is_file() and record_path.is_file():
        record = {**json.loads(record_path.read_text()), "compiled_now": False}
        _report(target, f"vocalization: using compiled TFLite model {target} "
                        f"(compiled in {record['compile_s']:.1f} s)", cache_hit=True)
        return target, record
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_bytes, select_ops = compile_to_tflite(weights, n_labels, n_samples)
    record = {
        "source": str(weights),
        "weights_sha256": digest,
        "compile_s": round(time.perf_counter() - started, 3),
        "select_tf_ops": select_ops,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    token = time.monotonic_ns()  # concurrent compilers each write their own temporaries
    tmp_model = folder / f".{target.name}.{token}.tmp"
    tmp_record = folder / f".{record_path.name}.{token}.tmp"
    tmp_model.write_bytes(model_bytes)
    tmp_record.write_text(json.dumps(record, indent=1))
    tmp_model.replace(target)  # the record last: a model without its record is compiled again
    tmp_record.replace(record_path)
    _report(target, f"vocalization: compiled {weights} to TFLite in {record['compile_s']:.1f} s"
                    f"{' (with TF select ops)' if select_ops else ''}; cached at {target}")
    return target, {**record, "compiled_now": True}


def _report(path: Path, message: str, cache_hit: bool = False) -> None:
    """Once per process; a cache hit only in the main process (extract's workers stay quiet)."""
    import multiprocessing

    if cache_hit and multiprocessing.parent_process() is not None:
        return
    if path not in _REPORTED:
        _REPORTED.add(path)
        print(message, file=sys.stderr)


def export_fused(weights: Path, n_labels: int, head, n_samples: int, select_ops: bool) -> bytes:
    """The SavedModel's embedding through the head's dense layers (ReLU between), plus the
    model's own logits where the head adds them, and a sigmoid, as one TFLite graph."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(weights))
    call = _inference_call(loaded, weights)
    tensors = [(tf.constant(np.ascontiguousarray(w.T)), tf.constant(b)) for w, b in head.layers]
    residual = head.residual if head.uses_backbone_logits else None

    @tf.function(input_signature=[tf.TensorSpec([None, n_samples], tf.float32, name="inputs")])
    def fused(inputs):
        named = _named_outputs(call(inputs))
        embedding_name, logits_name = choose_outputs(named, n_labels, weights)
        hidden = dict(named)[embedding_name]
        for i, (w, b) in enumerate(tensors):
            hidden = tf.matmul(hidden, w) + b
            if i < len(tensors) - 1:
                hidden = tf.nn.relu(hidden)
        if residual is not None:
            added = tf.gather(dict(named)[logits_name], np.maximum(residual, 0).astype(np.int32), axis=1)
            hidden = hidden + added * tf.constant((residual >= 0).astype(np.float32))
        return {"probabilities": tf.sigmoid(hidden)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fused.get_concrete_function()], loaded)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if select_ops else []
    )
    return converter.convert()


# ---------------------------------------------------------------- the backbone


class Vocalization(Backbone):
    name = "vocalization"
    version = "4"
    sample_rate = 32_000
    frame_s = 5.0
    embedding_dim = EMBEDDING_DIM
    can_fuse = True  # the SavedModel is the source graph: backbone + head convert as one
    cli_options = (
        CliOption("--species-list", "species", metavar="PATH",
                  help="vocalization: store logits in this species list's order (-inf for species the model "
                       "lacks); a text file of codes, a JSON list or a sample_submission.csv"),
    )

    def __init__(self, weights: str | Path | None = None, threads: int = 1, batch: int = 16,
                 species: list[str] | str | Path | None = None, **_):
        self.weights = resolve_weights(weights)
        self.model_labels = read_labels(self.weights / LABEL_FILE)
        self.weights_sha256 = hash_folder(self.weights)
        n_samples = round(self.sample_rate * self.frame_s)
        self.model_path, self.compile_record = compiled_model(
            self.weights, self.weights_sha256, len(self.model_labels), n_samples
        )
        self.species, self._species_index = _species_subset(species, self.model_labels)
        self.labels = self.species if self.species is not None else self.model_labels
        self._runner = TFLiteRunner(self.model_path, threads=threads, batch=batch)

    def options(self) -> dict:
        return {"species": self.species} if self.species is not None else {}

    @property
    def tflite_file(self) -> Path:
        return self.model_path

    def tflite_logits(self) -> tuple[int, np.ndarray]:
        """The compiled graph outputs every model label; a species subset picks columns."""
        columns = self._species_index if self._species_index is not None else np.arange(len(self.model_labels))
        return len(self.model_labels), np.asarray(columns, dtype=np.int64)

    def export_fused(self, head, n_samples: int) -> bytes:
        """SavedModel + head + sigmoid as one TFLite graph: frames [n, samples] in,
        probabilities [n, species] out. Converted the way the backbone itself is compiled."""
        return export_fused(self.weights, len(self.model_labels), head, n_samples,
                            bool(self.compile_record.get("select_tf_ops")))

    def embed(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            outputs = self._runner.run(frames)
        except RuntimeError as error:
            hint = " (the model needs TF select ops, which this interpreter lacks)" \
                if self.compile_record.get("select_tf_ops") else ""
            raise BackboneError(f"{self.model_path}: inference failed{hint}: {error}") from None
        by_width = {out.shape[1]: out for out in outputs}
        embedding, logits = by_width.get(EMBEDDING_DIM), by_width.get(len(self.model_labels))
        if embedding is None or logits is None:
            raise BackboneError(
                f"{self.model_path}: outputs of widths {sorted(by_width)}, expected {EMBEDDING_DIM} "
                f"(embedding) and {len(self.model_labels)} (one per label)"
            )
        if self._species_index is not None:
            logits = select_logits(logits, self._species_index)
        return embedding, logits


def _species_subset(species, model_labels: list[str]):
    """(species list, logit column of each species) or (None, None) when no subset is asked."""
    if species is None:
        return None, None
    codes = read_species_list(species) if isinstance(species, (str, Path)) else [str(s) for s in species]
    if not codes:
        raise BackboneError("the species list is empty")
    if len(set(codes)) != len(codes):
        raise BackboneError("the species list has duplicates")
    return codes, label_index(model_labels, codes)
