"""Heads on embeddings: linear, or one hidden layer (Linear -> BatchNorm1d -> ReLU -> Linear);
exported as plain dense layers (BatchNorm folded into the layer before it) for numpy and ONNX."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

LOW_BIAS = -12.0  # warm start: a species the surrogate lacks starts at sigmoid(-12) ~ 6e-6


def build_head(embedding_dim: int, n_species: int, hidden: int = 0) -> nn.Module:
    if hidden <= 0:
        return nn.Sequential(nn.Linear(embedding_dim, n_species))
    return nn.Sequential(
        nn.Linear(embedding_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, n_species)
    )


def to_layers(head: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(W [out, in], b [out]), ...] with ReLU between, equal to head.eval() on any input."""
    layers: list[list[np.ndarray]] = []
    for module in head:
        if isinstance(module, nn.Linear):
            layers.append([module.weight.detach().double().numpy(), module.bias.detach().double().numpy()])
        elif isinstance(module, nn.BatchNorm1d):
            # eval BN: gamma (z - mean) / sqrt(var + eps) + beta, folded into the Linear before it
            scale = (module.weight / torch.sqrt(module.running_var + module.eps)).detach().double().numpy()
            shift = (module.bias.detach().double().numpy() - module.running_mean.double().numpy() * scale)
            weight, bias = layers[-1]
            layers[-1] = [weight * scale[:, None], bias * scale + shift]
        elif not isinstance(module, nn.ReLU):
            raise TypeError(f"cannot export a head containing {type(module).__name__}")
    return [(w.astype(np.float32), b.astype(np.float32)) for w, b in layers]


def warm_start(head: nn.Module, weight: np.ndarray, bias: np.ndarray, index: np.ndarray) -> int:
    """Load a surrogate's classifier rows into a linear head: species j takes the row
    index[j]; a species the surrogate lacks gets zero weights and a low bias. Returns the
    number of species initialised from the surrogate."""
    linear = head[0]
    if len(head) != 1 or not isinstance(linear, nn.Linear):
        raise ValueError("--init surrogate needs a linear head (--hidden 0)")
    if weight.shape[1] != linear.in_features:
        raise ValueError(f"surrogate classifier takes {weight.shape[1]}-d inputs, embeddings are {linear.in_features}-d")
    known = index >= 0
    new_weight = np.zeros((len(index), weight.shape[1]), dtype=np.float32)
    new_bias = np.full(len(index), LOW_BIAS, dtype=np.float32)
    new_weight[known] = weight[index[known]]
    new_bias[known] = bias[index[known]]
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(new_weight))
        linear.bias.copy_(torch.from_numpy(new_bias))
    return int(known.sum())


def export_onnx(layers: list[tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """The dense layers as an ONNX graph: input `embedding` [n, dim] -> output `logits`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []
    current = "embedding"
    for i, (weight, bias) in enumerate(layers):
        initializers += [numpy_helper.from_array(np.ascontiguousarray(weight.T), f"W{i}T"),
                         numpy_helper.from_array(bias, f"b{i}")]
        last = i == len(layers) - 1
        output = "logits" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}T", f"b{i}"], [output if last else f"z{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [output]))
        current = output
    graph = helper.make_graph(
        nodes, "birdemb_head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", layers[0][0].shape[1]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", layers[-1][0].shape[0]])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="birdemb")
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path
