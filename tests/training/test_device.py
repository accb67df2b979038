"""Head training's device: CUDA when torch sees one (auto), the CPU when asked or when there is
none, and an error for `cuda` without one. The choice alone is checked (no CUDA kernel runs);
the CPU path itself trains in test_train.py / test_learning.py."""
from __future__ import annotations

import pytest
import torch

from birdemb.errors import UsageError
from birdemb.training.fit import accelerator


def test_auto_picks_cuda_when_torch_sees_one_and_cpu_when_forced(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert accelerator("auto") == accelerator("cuda") == "cuda"
    assert accelerator("cpu") == "cpu"


def test_without_a_gpu_auto_is_the_cpu_and_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert accelerator("auto") == accelerator("cpu") == "cpu"
    with pytest.raises(UsageError, match="no CUDA device"):
        accelerator("cuda")
