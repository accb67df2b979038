"""Losses against their formulas (written out in numpy here, independently of torch)."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from birdemb.training.losses import ASL, BCE, SigmoidF1, make_loss


def _batch(seed=0, n=64, s=7):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, s))
    target = (rng.random((n, s)) < 0.3).astype(np.float64)
    return logits, target


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_bce_is_mean_binary_cross_entropy():
    logits, target = _batch()
    p = _sigmoid(logits)
    expected = -np.mean(target * np.log(p) + (1 - target) * np.log(1 - p))
    got = BCE()(torch.tensor(logits), torch.tensor(target)).item()
    assert got == pytest.approx(expected, rel=1e-9)


def test_asl_without_focusing_or_clip_equals_bce():
    logits, target = _batch(1)
    x, y = torch.tensor(logits), torch.tensor(target)
    assert ASL(0, 0, 0)(x, y).item() == pytest.approx(F.binary_cross_entropy_with_logits(x, y).item(), rel=1e-9)


@pytest.mark.parametrize("gamma_pos,gamma_neg,clip", [(1, 4, 0.05), (0, 2, 0.05), (1, 0, 0.0)])
def test_asl_matches_formula(gamma_pos, gamma_neg, clip):
    logits, target = _batch(2)
    p = _sigmoid(logits)
    p_m = np.maximum(p - clip, 0)
    positive = (1 - p) ** gamma_pos * np.log(p)
    negative = p_m ** gamma_neg * np.log(1 - p_m)
    expected = -np.mean(target * positive + (1 - target) * negative)
    got = ASL(gamma_pos, gamma_neg, clip)(torch.tensor(logits), torch.tensor(target)).item()
    assert got == pytest.approx(expected, rel=1e-7)


def test_asl_clip_ignores_easy_negatives():
    # a negative with probability below the clip costs nothing
    loss = ASL(1, 4, 0.05)(torch.tensor([[-5.0]]), torch.tensor([[0.0]]))  # p = 0.0067 < 0.05
    assert loss.item() == 0.0


@pytest.mark.parametrize("S,E", [(-1, 0), (-15, 0), (-30, 1)])
def test_sigmoid_f1_matches_formula(S, E):
    logits, target = _batch(3)
    s = 1 / (1 + np.exp(S * (_sigmoid(logits) + E)))
    tp = (s * target).sum(0)
    fp = (s * (1 - target)).sum(0)
    fn = ((1 - s) * target).sum(0)
    expected = np.mean(1 - 2 * tp / (2 * tp + fn + fp + 1e-16))
    got = SigmoidF1(S, E)(torch.tensor(logits), torch.tensor(target)).item()
    assert got == pytest.approx(expected, rel=1e-7)


def test_sigmoid_f1_rewards_right_answers():
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    right = SigmoidF1(-30, -0.5)(torch.tensor([[8.0, -8.0], [-8.0, 8.0]]), target)
    wrong = SigmoidF1(-30, -0.5)(torch.tensor([[-8.0, 8.0], [8.0, -8.0]]), target)
    assert right.item() < 0.01 and wrong.item() > 0.99


def test_losses_give_gradients_and_names():
    logits, target = _batch(4)
    for name in ("bce", "asl", "sigmoidf1"):
        x = torch.tensor(logits, requires_grad=True)
        make_loss(name)(x, torch.tensor(target)).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        make_loss("focal")
