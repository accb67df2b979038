"""Append a birdemb head to a TFLite classifier graph by flatbuffer surgery (no TensorFlow).

The source graph's classifier is its final dense layer (see tflite_graph): its input is the
embedding, its output the source's logits. The head is added after them:

    embedding -> FULLY_CONNECTED (+ fused RELU) ... -> FULLY_CONNECTED -> head logits
    source logits -> GATHER (residual columns) [-> MUL by a 0/1 mask] -> ADD to the head logits

and the head's logits (no sigmoid) become the graph's only output; its input stays the
source's (audio). The weights are new constant buffers. A head without residual columns
leaves the source's classifier in the graph (its output is then unused).
"""
from __future__ import annotations

import numpy as np

from birdemb.backbones.tflite_graph import _final_dense, _load, _pack, _schema

OUTPUT_NAME = "birdemb_head_logits"


class _Builder:
    """Adds tensors, buffers, operator codes and operators to one subgraph of a ModelT."""

    def __init__(self, model, graph):
        self.model, self.graph = model, graph
        self.schema = _schema()

    def _buffer(self, data: bytes | None = None) -> int:
        buffer = self.schema.BufferT()
        if data is not None:
            buffer.data = np.frombuffer(data, dtype=np.uint8).copy()
        self.model.buffers.append(buffer)
        return len(self.model.buffers) - 1

    def _tensor(self, name: str, shape, signature, tensor_type: int, buffer: int) -> int:
        tensor = self.schema.TensorT()
        tensor.name = name.encode()
        tensor.shape = np.asarray(shape, dtype=np.int32)
        tensor.shapeSignature = None if signature is None else np.asarray(signature, dtype=np.int32)
        tensor.type = tensor_type
        tensor.buffer = buffer
        self.graph.tensors.append(tensor)
        return len(self.graph.tensors) - 1

    def constant(self, name: str, values: np.ndarray) -> int:
        values = np.ascontiguousarray(values)
        kinds = {np.dtype(np.float32): self.schema.TensorType.FLOAT32, np.dtype(np.int32): self.schema.TensorType.INT32}
        return self._tensor(name, values.shape, None, kinds[values.dtype], self._buffer(values.tobytes()))

    def activation(self, name: str, width: int) -> int:
        """A [batch, width] float tensor computed by an operator (batch resizable)."""
        return self._tensor(name, [1, width], [-1, width], self.schema.TensorType.FLOAT32, self._buffer())

    def _opcode(self, builtin: int) -> int:
        for index, code in enumerate(self.model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
                return index
        code = self.schema.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)  # the old int8 field tops out at 127
        code.version = 1
        self.model.operatorCodes.append(code)
        return len(self.model.operatorCodes) - 1

    def operator(self, builtin: int, inputs: list[int], output: int, options_type: int, options) -> None:
        op = self.schema.OperatorT()
        op.opcodeIndex = self._opcode(builtin)
        op.inputs = np.asarray(inputs, dtype=np.int32)
        op.outputs = np.asarray([output], dtype=np.int32)
        op.builtinOptionsType = options_type
        op.builtinOptions = options
        self.graph.operators.append(op)

    def dense(self, name: str, x: int, weight: np.ndarray, bias: np.ndarray, relu: bool) -> int:
        s = self.schema
        options = s.FullyConnectedOptionsT()
        options.fusedActivationFunction = s.ActivationFunctionType.RELU if relu else s.ActivationFunctionType.NONE
        out = self.activation(f"{name}/out", weight.shape[0])
        self.operator(s.BuiltinOperator.FULLY_CONNECTED,
                      [x, self.constant(f"{name}/weight", weight.astype(np.float32)),
                       self.constant(f"{name}/bias", bias.astype(np.float32))],
                      out, s.BuiltinOptions.FullyConnectedOptions, options)
        return out

    def gather_columns(self, name: str, x: int, columns: np.ndarray) -> int:
        s = self.schema
        options = s.GatherOptionsT()
        options.axis, options.batchDims = 1, 0
        out = self.activation(f"{name}/out", len(columns))
        self.operator(s.BuiltinOperator.GATHER, [x, self.constant(f"{name}/columns", columns.astype(np.int32))],
                      out, s.BuiltinOptions.GatherOptions, options)
        return out

    def binary(self, kind: str, name: str, a: int, b: int, width: int) -> int:
        s = self.schema
        builtin, options_type, options = {
            "ADD": (s.BuiltinOperator.ADD, s.BuiltinOptions.AddOptions, s.AddOptionsT()),
            "MUL": (s.BuiltinOperator.MUL, s.BuiltinOptions.MulOptions, s.MulOptionsT()),
        }[kind]
        options.fusedActivationFunction = s.ActivationFunctionType.NONE
        out = self.activation(f"{name}/out", width)
        self.operator(builtin, [a, b], out, options_type, options)
        return out


def append_head(model_bytes: bytes, layers: list, residual: np.ndarray | None = None) -> bytes:
    """The source model with `layers` ([(W [out, in], b [out]), ...], ReLU between) on the
    input of its final dense layer and, where `residual` (per output: a column of the source's
    logits, -1 for none) has columns, those logits added; the head's logits are the only output.

    The result computes exactly runtime.head.head_logits(embedding, source logits)."""
    model = _load(model_bytes)
    graph, classifier = _final_dense(model)
    embedding, source_logits = int(classifier.inputs[0]), int(classifier.outputs[0])
    width_in = int(graph.tensors[embedding].shape[-1])
    if layers[0][0].shape[1] != width_in:
        raise ValueError(f"the head takes {layers[0][0].shape[1]} inputs; the graph's embedding has {width_in}")
    build = _Builder(model, graph)
    x = embedding
    for i, (weight, bias) in enumerate(layers):
        x = build.dense(f"birdemb_head/dense{i}", x, np.asarray(weight), np.asarray(bias), relu=i < len(layers) - 1)
    n_out = int(layers[-1][0].shape[0])
    residual = None if residual is None else np.asarray(residual, dtype=np.int64)
    if residual is not None and (residual >= 0).any():
        n_source = int(graph.tensors[source_logits].shape[-1])
        if residual.max() >= n_source:
            raise ValueError(f"a residual column ({residual.max()}) is past the graph's {n_source} logits")
        known = residual >= 0
        added = build.gather_columns("birdemb_head/residual", source_logits, np.where(known, residual, 0))
        if not known.all():  # outputs without a source logit add 0, not column 0's logit
            added = build.binary("MUL", "birdemb_head/residual_mask", added,
                                 build.constant("birdemb_head/mask", known.astype(np.float32)), n_out)
        x = build.binary("ADD", "birdemb_head/add", x, added, n_out)
    graph.tensors[x].name = OUTPUT_NAME.encode()
    graph.outputs = np.asarray([x], dtype=np.int32)
    model.signatureDefs = []  # the source's signature names its own output; readers use the output list
    return _pack(model)
