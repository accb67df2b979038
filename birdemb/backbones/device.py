"""Which torch device a model runs on: "auto" takes CUDA when torch sees a GPU, else the CPU.
One rule for every torch user (EnCodec extraction, head training)."""
from __future__ import annotations

from birdemb.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


def choose_device(requested: str = "auto") -> str:
    """"cpu" or "cuda" for `requested` (auto | cpu | cuda); asking for CUDA without one is an error."""
    import torch

    if requested not in DEVICES:
        raise UsageError(f"device must be one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise UsageError("`device=cuda`: torch sees no CUDA device here")
    return "cpu"
