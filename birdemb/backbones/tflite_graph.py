"""TFLite graphs: read and rewrite the flatbuffer (expose the classifier's input as an
output, read the classifier's weights), and the cache of rewritten and compiled models.
The batch runner is birdemb.runtime.interpreter. Needs ai-edge-litert's schema and
flatbuffers, never TensorFlow."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """Where compiled and rewritten models are kept: $BIRDEMB_CACHE or ~/.cache/birdemb."""
    root = Path(os.environ.get("BIRDEMB_CACHE") or Path.home() / ".cache" / "birdemb")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _load(model_bytes: bytes):
    return _schema().ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)


def _pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _op_name(model, op) -> str:
    schema = _schema()
    code = model.operatorCodes[op.opcodeIndex]
    value = max(code.builtinCode, code.deprecatedBuiltinCode)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(value, str(value))


def _final_dense(model):
    """The FULLY_CONNECTED op that produces the model's first output (its classifier)."""
    graph = model.subgraphs[0]
    output = int(graph.outputs[0])
    for op in graph.operators:
        if output in [int(i) for i in op.outputs]:
            if _op_name(model, op) != "FULLY_CONNECTED":
                raise ValueError(f"the model's output comes from {_op_name(model, op)}, not a dense layer")
            return graph, op
    raise ValueError("no operator produces the model's output")


def expose_classifier_input(model_bytes: bytes) -> bytes:
    """A copy of the model whose second output is the input of its final dense layer.

    That input is the embedding. Making it a real graph output means any interpreter returns
    it, with no reliance on intermediate tensors being preserved.
    """
    model = _load(model_bytes)
    graph, op = _final_dense(model)
    embedding = int(op.inputs[0])
    outputs = [int(i) for i in graph.outputs]
    if embedding not in outputs:
        graph.outputs = np.asarray(outputs + [embedding], dtype=np.int32)
    model.signatureDefs = []  # the old signature lists one output; outputs are used by index
    return _pack(model)


def read_classifier(model_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The final dense layer's weight [n_labels, dim] and bias [n_labels] as float32."""
    model = _load(model_bytes)
    graph, op = _final_dense(model)
    weight_index, bias_index = int(op.inputs[1]), int(op.inputs[2])
    return constant(model, graph, weight_index), constant(model, graph, bias_index)


# TFLite tensor types -> numpy, for the constants read here (schema TensorType values)
_CONSTANT_DTYPES = {0: np.float32, 2: np.int32, 4: np.int64, 9: np.int8}


def constant(model, graph, index: int) -> np.ndarray:
    """The value of constant tensor `index` of `graph`, as a numpy array of its shape."""
    tensor = graph.tensors[index]
    raw = model.buffers[tensor.buffer].data
    if raw is None or tensor.type not in _CONSTANT_DTYPES:
        raise ValueError(f"tensor {tensor_name(graph, index)!r} is not a constant this code reads")
    shape = [] if tensor.shape is None else [int(d) for d in tensor.shape]
    return np.frombuffer(bytes(raw), dtype=_CONSTANT_DTYPES[tensor.type]).reshape(shape).copy()


def tensor_name(graph, index: int) -> str:
    name = graph.tensors[index].name
    return name.decode() if isinstance(name, bytes) else str(name)
