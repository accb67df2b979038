"""Split BirdNET's graph into its mel-spectrogram front end, read as constants for
birdemb.runtime.front_end, and the network after it, kept as a .tflite of its own.

The cut is the input of the first convolution. The front end's constants are found by the
names BirdNET's layers give them (MEL_SPEC1, MEL_SPEC2, ...) and its batch norm by structure
(the MUL and ADD that produce the cut). `check_split` runs the whole graph beside the split one,
so a model built differently is refused rather than silently misread.
"""
from __future__ import annotations

import numpy as np

from birdemb.backbones.tflite_graph import _load, _op_name, _pack, constant, tensor_name

# largest |split - whole graph| allowed on any output (logits span about -40..15; the FFTs
# sum in another order, and a power below 1 magnifies that near silent bins: about 2e-3 seen)
OUTPUT_TOLERANCE = 0.02


class SplitError(ValueError):
    """The graph does not start with a front end this module can read."""


def _cut(model) -> tuple[object, int, int]:
    """(graph, index of the first op after the front end, the tensor the network reads)."""
    graph = model.subgraphs[0]
    for position, op in enumerate(graph.operators):
        if _op_name(model, op) == "CONV_2D":
            cut = int(op.inputs[0])
            break
    else:
        raise SplitError("no convolution: not a spectrogram network")
    producers = {int(t): i for i, op in enumerate(graph.operators) for t in op.outputs}
    front = set(range(position))
    for op in graph.operators[position:]:
        for t in op.inputs:
            if int(t) >= 0 and int(t) != cut and producers.get(int(t)) in front:
                raise SplitError(f"the network also reads {tensor_name(graph, int(t))} from the front end")
    return graph, position, cut


def _named(model, graph, suffix: str) -> np.ndarray:
    """The one constant whose name ends with `suffix`."""
    found = [i for i in range(len(graph.tensors)) if tensor_name(graph, i).endswith(suffix)
             and model.buffers[graph.tensors[i].buffer].data is not None]
    if len(found) != 1:
        raise SplitError(f"{len(found)} constants named *{suffix}, expected one")
    return constant(model, graph, found[0])


def front_end_constants(model_bytes: bytes) -> dict[str, np.ndarray]:
    """The front end's constants, keyed as birdemb.runtime.front_end.MelFrontEnd reads them."""
    model = _load(model_bytes)
    graph, position, cut = _cut(model)
    producers = {int(t): op for op in graph.operators[:position] for t in op.outputs}
    add = producers.get(cut)
    if add is None or _op_name(model, add) != "ADD":
        raise SplitError("the network's input is not a batch norm's ADD")
    mul = producers.get(int(add.inputs[0]))
    if mul is None or _op_name(model, mul) != "MUL":
        raise SplitError("the batch norm's ADD does not follow a MUL")
    constants: dict[str, np.ndarray] = {
        "bn_shift": constant(model, graph, int(add.inputs[1])),
        "bn_scale": constant(model, graph, int(mul.inputs[1])),
        "norm_epsilon": _named(model, graph, "MEL_SPEC1/add/y"),
        "norm_centre": _named(model, graph, "MEL_SPEC1/Sub_1/y"),
        "norm_gain": _named(model, graph, "MEL_SPEC1/Mul/y"),
    }
    k = 0
    while any(tensor_name(graph, i).startswith(f"model/MEL_SPEC{k + 1}/") for i in range(len(graph.tensors))):
        scope = f"MEL_SPEC{k + 1}/"
        constants[f"frame_length{k}"] = _named(model, graph, scope + "stft/frame_length")
        constants[f"frame_step{k}"] = _named(model, graph, scope + "stft/frame_step")
        constants[f"window{k}"] = _named(model, graph, scope + "stft/hann_window/sub_2")
        constants[f"mel{k}"] = _named(model, graph, scope + "Tensordot/MatMul")
        constants[f"power{k}"] = _named(model, graph, scope + "truediv_1")
        k += 1
    if k == 0 or len(constants["bn_scale"]) != k:
        raise SplitError(f"{k} mel spectrograms for a batch norm over {len(constants['bn_scale'])} channels")
    constants["n_spectrograms"] = np.asarray(k)
    return constants


def network_graph(model_bytes: bytes) -> bytes:
    """The graph after the front end: its input is the spectrogram, its outputs the whole
    graph's, in the same order."""
    model = _load(model_bytes)
    graph, position, cut = _cut(model)
    graph.operators = graph.operators[position:]
    graph.inputs = np.asarray([cut], dtype=np.int32)
    model.signatureDefs = []
    return _pack(model)


def front_end_graph(model_bytes: bytes) -> bytes:
    """The graph's own front end alone (audio in, spectrogram out): the reference for checks."""
    model = _load(model_bytes)
    graph, position, cut = _cut(model)
    graph.operators = graph.operators[:position]
    graph.outputs = np.asarray([cut], dtype=np.int32)
    model.signatureDefs = []
    return _pack(model)


def probe_frames(frame_samples: int, sample_rate: int) -> np.ndarray:
    """Three frames unlike each other: noise, a chirp over the band, a quiet tone with clicks."""
    rng = np.random.default_rng(7)
    t = np.arange(frame_samples) / sample_rate
    chirp = np.sin(2 * np.pi * (200 + (sample_rate / 4) * t / t[-1] / 2) * t)
    tone = 0.01 * np.sin(2 * np.pi * 2500 * t)
    tone[:: frame_samples // 7] += 0.5
    return np.stack([0.1 * rng.standard_normal(frame_samples), chirp, tone]).astype(np.float32)


def check_split(model_bytes: bytes, body_bytes: bytes, constants: dict, frame_samples: int, sample_rate: int) -> float:
    """Largest |split - whole graph| over every output on the probe frames; raises SplitError
    above OUTPUT_TOLERANCE."""
    from birdemb.runtime.front_end import FrontEndRunner, MelFrontEnd
    from birdemb.runtime.interpreter import TFLiteRunner

    frames = probe_frames(frame_samples, sample_rate)
    whole = TFLiteRunner(model_bytes, batch=len(frames)).run(frames)
    split = FrontEndRunner(MelFrontEnd(constants), body_bytes, batch=len(frames)).run(frames)
    if [w.shape for w in whole] != [s.shape for s in split]:
        raise SplitError(f"the split graph gives outputs {[s.shape for s in split]}, the whole {[w.shape for w in whole]}")
    gap = max(float(np.max(np.abs(s - w))) for s, w in zip(split, whole))
    if not gap <= OUTPUT_TOLERANCE:
        raise SplitError(f"numpy front end + network differ from the whole graph by {gap:.3g} (> {OUTPUT_TOLERANCE})")
    return gap
