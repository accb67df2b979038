"""Losses against their formulas (written out in numpy here, independently of torch)."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from birdemb.training.losses import ASL, BCE, SigmoidF1, make_loss, positive_weights


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


# --- infinite logits, pos_weight, positive_weights ----------------------------------------------------------

EXTREME = [-np.inf, -100.0, 0.0, 100.0, np.inf]


def _old_asl(logits, target, gamma_pos, gamma_neg, clip, eps=1e-8):
    """ASL as it was before the infinity fix (target * positive + (1 - target) * negative)."""
    p = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)
    if clip > 0:
        p_neg = (p - clip).clamp(min=0)
        log_not_p = torch.log((1 - p_neg).clamp(min=eps))
    else:
        p_neg, log_not_p = p, F.logsigmoid(-logits)
    positive = log_p if gamma_pos == 0 else (1 - p) ** gamma_pos * log_p
    negative = log_not_p if gamma_neg == 0 else p_neg ** gamma_neg * log_not_p
    return -(target * positive + (1 - target) * negative).mean()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("loss", [ASL(1, 4, 0.05), ASL(0, 0, 0), ASL(1, 2, 0.0), BCE(),
                                  ASL(1, 4, 0.05, pos_weight=[3.0] * 5), BCE(pos_weight=[3.0] * 5)])
@pytest.mark.parametrize("target_value", [0.0, 1.0])
def test_losses_are_finite_at_infinite_logits(loss, target_value, dtype):
    x = torch.tensor([EXTREME], dtype=dtype, requires_grad=True)
    value = loss(x, torch.full((1, 5), target_value, dtype=dtype))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()
    mixed = torch.tensor([EXTREME, EXTREME[::-1]], dtype=dtype, requires_grad=True)
    loss(mixed, torch.tensor([[0.0, 1, 0, 1, 0], [1, 0, 1, 0, 1]], dtype=dtype)).backward()
    assert torch.isfinite(mixed.grad).all()


@pytest.mark.parametrize("gamma_pos,gamma_neg,clip", [(1, 4, 0.05), (0, 2, 0.05), (1, 0, 0.0), (0, 0, 0.0)])
def test_asl_equals_the_old_formula_on_finite_logits(gamma_pos, gamma_neg, clip):
    logits, target = _batch(5)
    logits[0, :5] = EXTREME[1:4] + [-30.0, 30.0]
    x, y = torch.tensor(logits), torch.tensor(target)
    for t in (y, torch.zeros_like(y), torch.ones_like(y), y * 0.7):  # soft targets too
        expected = _old_asl(x, t, gamma_pos, gamma_neg, clip)
        assert ASL(gamma_pos, gamma_neg, clip)(x, t).item() == pytest.approx(expected.item(), rel=1e-12)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ASL(gamma_pos, gamma_neg, clip)(a, y).backward()
    _old_asl(b, y, gamma_pos, gamma_neg, clip).backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-15)


def test_infinite_logits_count_as_plus_minus_100():
    inf = ASL(1, 4, 0.05)(torch.tensor([[-np.inf, np.inf]]), torch.tensor([[1.0, 0.0]]))
    hundred = ASL(1, 4, 0.05)(torch.tensor([[-100.0, 100.0]]), torch.tensor([[1.0, 0.0]]))
    assert inf.item() == pytest.approx(hundred.item())
    assert BCE()(torch.tensor([[-np.inf]]), torch.tensor([[1.0]])).item() == pytest.approx(100.0)
    assert BCE()(torch.tensor([[-np.inf]]), torch.tensor([[0.0]])).item() == 0.0


def test_pos_weight_multiplies_the_positive_term():
    logits, target = _batch(6)
    weight = np.linspace(1, 7, 7).astype(np.float32)
    x, y = torch.tensor(logits), torch.tensor(target)
    expected = F.binary_cross_entropy_with_logits(x, y, pos_weight=torch.tensor(weight, dtype=torch.float64))
    assert BCE(weight)(x, y).item() == pytest.approx(expected.item(), rel=1e-6)
    assert BCE(None)(x, y).item() == pytest.approx(F.binary_cross_entropy_with_logits(x, y).item(), rel=1e-12)
    assert ASL(0, 0, 0, pos_weight=weight)(x, y).item() == pytest.approx(BCE(weight)(x, y).item(), rel=1e-6)
    p = _sigmoid(logits)
    p_m = np.maximum(p - 0.05, 0)
    by_hand = -np.mean(weight * target * (1 - p) * np.log(p) + (1 - target) * p_m ** 4 * np.log(1 - p_m))
    assert ASL(1, 4, 0.05, pos_weight=weight)(x, y).item() == pytest.approx(by_hand, rel=1e-6)
    # make_loss passes it on (sigmoidF1 ignores it), and the weight follows the module's device
    assert make_loss("bce", pos_weight=weight)(x, y).item() == pytest.approx(expected.item(), rel=1e-6)
    assert make_loss("asl", pos_weight=weight).pos_weight.tolist() == weight.tolist()
    assert make_loss("sigmoidf1", pos_weight=weight)(x, y).item() == pytest.approx(SigmoidF1()(x, y).item())
    assert "pos_weight" not in make_loss("bce", pos_weight=weight).state_dict()


def test_positive_weights_are_clipped_square_roots():
    labels = np.zeros((1000, 5), dtype=np.float32)
    labels[:500, 0] = 1  # balanced: sqrt(1) = 1
    labels[:10, 1] = 1  # sqrt(990 / 10) = 9.95
    labels[:1, 2] = 1  # sqrt(999) = 31.6, capped at 20 below
    labels[:, 3] = 1  # no negatives: sqrt(0) -> clipped up to 1
    weights = positive_weights(labels)  # column 4: no positives -> 1
    assert weights.dtype == np.float32 and weights.shape == (5,)
    assert weights.tolist() == pytest.approx([1.0, np.sqrt(99.0), np.sqrt(999.0), 1.0, 1.0])
    assert positive_weights(labels, cap=20)[2] == 20.0
