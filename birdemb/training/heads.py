"""Heads on embeddings: linear, or one hidden layer (Linear -> BatchNorm1d -> ReLU -> Linear);
exported as plain dense layers (BatchNorm folded into the layer before it) for numpy and ONNX."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

LOW_BIAS = -12.0  # `init=surrogate`: a species the surrogate lacks starts at sigmoid(-12) ~ 6e-6


class Standardize(nn.Module):
    """(x - mean) / std with the training rows' statistics, fixed (buffers, not parameters);
    folded into the first dense layer on export, so a bundle's head stays one affine map."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        with torch.no_grad():
            self.mean.copy_(torch.from_numpy(x.mean(axis=0)))
            self.std.copy_(torch.from_numpy(np.maximum(x.std(axis=0), 1e-6)))

    def forward(self, x):
        return (x - self.mean) / self.std


class Head(nn.Sequential):
    """Standardize, then Linear, or Linear -> BatchNorm1d -> ReLU -> Linear."""

    def classifier(self) -> nn.Linear:
        return self[-1]

    def classifier_weight(self) -> torch.Tensor:
        return self.classifier().weight

    def classifier_bias(self) -> torch.Tensor:
        return self.classifier().bias

    def set_classifier(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        with torch.no_grad():
            self.classifier().weight.copy_(weight)
            self.classifier().bias.copy_(bias)

    @property
    def is_linear(self) -> bool:
        return len(self) == 2


def build_head(embedding_dim: int, n_species: int, hidden: int = 0) -> Head:
    if hidden <= 0:
        return Head(Standardize(embedding_dim), nn.Linear(embedding_dim, n_species))
    return Head(
        Standardize(embedding_dim), nn.Linear(embedding_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, n_species),
    )


def to_layers(head: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(W [out, in], b [out]), ...] with ReLU between, equal to head.eval() on any input:
    the standardisation folds into the first dense layer, BatchNorm into the one before it."""
    layers: list[list[np.ndarray]] = []
    standardize = None
    for module in head:
        if isinstance(module, Standardize):
            standardize = (module.mean.double().numpy(), module.std.double().numpy())
        elif isinstance(module, nn.Linear):
            weight, bias = module.weight.detach().double().numpy(), module.bias.detach().double().numpy()
            if not layers and standardize is not None:  # W((x - m) / s) + b = (W / s) x + (b - (W / s) m)
                weight = weight / standardize[1][None, :]
                bias = bias - weight @ standardize[0]
            layers.append([weight, bias])
        elif isinstance(module, nn.BatchNorm1d):
            # eval BN: gamma (z - mean) / sqrt(var + eps) + beta, folded into the Linear before it
            scale = (module.weight / torch.sqrt(module.running_var + module.eps)).detach().double().numpy()
            shift = (module.bias.detach().double().numpy() - module.running_mean.double().numpy() * scale)
            weight, bias = layers[-1]
            layers[-1] = [weight * scale[:, None], bias * scale + shift]
        elif not isinstance(module, nn.ReLU):
            raise TypeError(f"cannot export a head containing {type(module).__name__}")
    return [(w.astype(np.float32), b.astype(np.float32)) for w, b in layers]


def residual_start(head: Head, residual: np.ndarray, missing_bias: np.ndarray | float) -> int:
    """Start a head that adds the surrogate's logit to the species in `residual` (bool
    [species]): their last-layer rows and biases at zero, so the head starts as the surrogate
    itself; every other species starts at `missing_bias` (its base rate, or LOW_BIAS).
    Returns the number of residual species."""
    residual = np.asarray(residual, dtype=bool)
    weight, bias = head.classifier_weight().detach().clone(), head.classifier_bias().detach().clone()
    others = torch.as_tensor(~residual)
    start = np.broadcast_to(np.asarray(missing_bias, dtype=np.float32), residual.shape).copy()
    bias[others] = torch.from_numpy(start)[others]
    weight[torch.as_tensor(residual)] = 0.0
    bias[torch.as_tensor(residual)] = 0.0
    head.set_classifier(weight, bias)
    return int(residual.sum())


def export_onnx(layers: list[tuple[np.ndarray, np.ndarray]], path: str | Path, residual: np.ndarray | None = None,
                n_labels: int | None = None) -> Path:
    """The dense layers as an ONNX graph: input `embedding` [n, dim] -> output `logits`. A
    residual head (see runtime.head) takes a second input, `backbone_logits` [n, n_labels]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []
    current = "embedding"
    adds = residual is not None and bool((np.asarray(residual) >= 0).any())
    for i, (weight, bias) in enumerate(layers):
        initializers += [numpy_helper.from_array(np.ascontiguousarray(weight.T), f"W{i}T"),
                         numpy_helper.from_array(bias, f"b{i}")]
        last = i == len(layers) - 1
        output = ("dense" if adds else "logits") if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}T", f"b{i}"], [output if last else f"z{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [output]))
        current = output
    inputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", layers[0][0].shape[1]])]
    if adds:
        residual = np.asarray(residual, dtype=np.int64)
        initializers += [numpy_helper.from_array(np.maximum(residual, 0), "residual_columns"),
                         numpy_helper.from_array((residual >= 0).astype(np.float32), "residual_mask")]
        nodes += [helper.make_node("Gather", ["backbone_logits", "residual_columns"], ["gathered"], axis=1),
                  helper.make_node("Mul", ["gathered", "residual_mask"], ["added"]),
                  helper.make_node("Add", ["dense", "added"], ["logits"])]
        inputs.append(helper.make_tensor_value_info("backbone_logits", TensorProto.FLOAT, ["n", n_labels or "labels"]))
    graph = helper.make_graph(
        nodes, "birdemb_head", inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", layers[-1][0].shape[0]])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="birdemb")
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path
