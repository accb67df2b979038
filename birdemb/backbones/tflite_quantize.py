"""Dynamic-range ("hybrid") int8 quantisation of a float TFLite graph, on the flatbuffer.

No converter and no source model are needed: float32 weights are replaced by symmetric int8
with one scale per output channel, recorded in the tensor's quantisation parameters.
Activations stay float32; TFLite's hybrid kernels quantise each op's input on the fly and run
the int8 weights. By default only dense layers and pointwise (1x1) convolutions are
quantised: on BirdNET the hybrid depthwise and spatial convolutions moved probabilities by up
to 0.53 (weights alone rounded to int8, run in float: 0.056), see docs/backbones.md. Ops
named by `keep_float` (e.g. a spectrogram front end) keep their float weights.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from birdemb.backbones.tflite_graph import _load, _op_name, _pack, _schema, constant, tensor_name

# op -> the axis of its weight tensor that holds the output channels (one scale each)
WEIGHT_CHANNEL_AXIS = {"FULLY_CONNECTED": 0, "CONV_2D": 0, "DEPTHWISE_CONV_2D": 3}


def symmetric_int8(weight: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weight, float32 scales): weight ~= q * scale, |q| <= 127, one scale per slice
    along `axis` (or one for the whole tensor when axis is None)."""
    reduce = tuple(i for i in range(weight.ndim) if i != axis) if axis is not None else None
    peak = np.abs(weight).max(axis=reduce, keepdims=True) if axis is not None else np.abs(weight).max()
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    return q, np.atleast_1d(scale.reshape(-1))


def pointwise_or_dense(kind: str, shape: list[int]) -> bool:
    """The ops whose hybrid kernels keep BirdNET's outputs close: dense layers, 1x1 convolutions."""
    return kind == "FULLY_CONNECTED" or (kind == "CONV_2D" and list(shape[1:3]) == [1, 1])


def any_weighted(kind: str, shape: list[int]) -> bool:
    return kind in WEIGHT_CHANNEL_AXIS


def quantize_weights(model_bytes: bytes, keep_float: Callable[[str], bool] = lambda name: False,
                     per_channel: bool = True,
                     select: Callable[[str, list[int]], bool] = pointwise_or_dense) -> tuple[bytes, list[str]]:
    """The model with the weights of the ops `select(kind, weight shape)` picks in int8 (see the
    module's note) and the names of the weight tensors it quantised. `keep_float(name)` spares
    a weight tensor; `select=any_weighted` also takes depthwise and spatial convolutions."""
    schema = _schema()
    model = _load(model_bytes)
    graph = model.subgraphs[0]
    users: dict[int, int] = {}  # buffer -> number of tensors that read it (shared buffers are copied)
    for tensor in graph.tensors:
        users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
    done: list[str] = []
    for op in graph.operators:
        kind = _op_name(model, op)
        if kind not in WEIGHT_CHANNEL_AXIS or len(op.inputs) < 2:
            continue
        index = int(op.inputs[1])
        tensor = graph.tensors[index]
        name = tensor_name(graph, index)
        raw = model.buffers[tensor.buffer].data
        shape = [int(d) for d in tensor.shape]
        if raw is None or tensor.type != schema.TensorType.FLOAT32 or keep_float(name) or not select(kind, shape):
            continue
        weight = constant(model, graph, index)
        axis = WEIGHT_CHANNEL_AXIS[kind] if per_channel or kind == "DEPTHWISE_CONV_2D" else None
        q, scale = symmetric_int8(weight, axis)
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(q.tobytes(), dtype=np.uint8)
        if users[tensor.buffer] > 1:  # another tensor still reads the float buffer
            users[tensor.buffer] -= 1
            model.buffers.append(buffer)
            tensor.buffer = len(model.buffers) - 1
        else:
            model.buffers[tensor.buffer] = buffer
        params = schema.QuantizationParametersT()
        params.scale = scale.tolist()
        params.zeroPoint = [0] * len(scale)
        params.quantizedDimension = axis or 0
        tensor.quantization = params
        tensor.type = schema.TensorType.INT8
        done.append(name)
    return _pack(model), done
