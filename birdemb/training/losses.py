"""Multi-label losses on raw logits, as torch modules: BCE, ASL and sigmoidF1.

Infinite logits are allowed (a species a surrogate lacks has logit -inf): BCE and ASL count
-inf/+inf as -/+INFINITE_LOGIT, so loss and gradient stay finite for either target, and a
target's unused branch is never multiplied (0 x inf would be NaN). Finite logits are untouched.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LOSSES = ("bce", "asl", "sigmoidf1")
INFINITE_LOGIT = 100.0  # what ±inf counts as: sigmoid(±100) is 0 or 1 to float precision


def finite_logits(logits: torch.Tensor) -> torch.Tensor:
    """±inf -> ±INFINITE_LOGIT (no gradient through those entries); finite values and NaN unchanged."""
    return torch.where(torch.isinf(logits), logits.detach().clamp(-INFINITE_LOGIT, INFINITE_LOGIT), logits)


def positive_weights(labels: np.ndarray, cap: float = 100.0) -> np.ndarray:
    """Per species pos_weight for BCE/ASL: sqrt(negatives / positives), clipped to [1, cap];
    1 for a species without positives. float32 [species].

    The balanced weight n_neg / n_pos makes positives and negatives weigh the same in total, but
    for a rare species with a handful of positives it reaches the hundreds or thousands: those
    few windows then dominate the loss and the head overfits them (and over-predicts the
    species). The square root is the usual compromise: rare species still gain (100x rarer ->
    10x weight), common ones stay near 1, and `cap` bounds the worst case."""
    positive = (np.asarray(labels) > 0.5).sum(axis=0).astype(np.float64)
    negative = len(labels) - positive
    ratio = np.divide(negative, positive, out=np.ones_like(positive), where=positive > 0)
    return np.clip(np.sqrt(ratio), 1.0, max(cap, 1.0)).astype(np.float32)


def _as_weight(pos_weight) -> torch.Tensor | None:
    return None if pos_weight is None else torch.as_tensor(np.asarray(pos_weight, dtype=np.float32))


class BCE(nn.Module):
    """Binary cross-entropy on logits, mean over every (window, species) element; an optional
    `pos_weight` [species] multiplies each species' positive term (torch's pos_weight)."""

    def __init__(self, pos_weight=None):
        super().__init__()
        self.register_buffer("pos_weight", _as_weight(pos_weight), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.pos_weight is None else self.pos_weight.to(logits.dtype)
        return F.binary_cross_entropy_with_logits(finite_logits(logits), target, pos_weight=weight)


class ASL(nn.Module):
    """Asymmetric loss (Ridnik et al., 2021), mean over elements:

        p = sigmoid(x),  p_m = max(p - clip, 0)
        L = -[ w y (1-p)^gamma_pos log p  +  (1-y) p_m^gamma_neg log(1-p_m) ]

    w is the optional `pos_weight` [species] (1 without it). With gamma_pos = gamma_neg = 0,
    clip = 0 and no pos_weight it is exactly BCE."""

    def __init__(self, gamma_pos: float = 1.0, gamma_neg: float = 4.0, clip: float = 0.05, eps: float = 1e-8,
                 pos_weight=None):
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.clip, self.eps = gamma_pos, gamma_neg, clip, eps
        self.register_buffer("pos_weight", _as_weight(pos_weight), persistent=False)

    def _positive(self, logits: torch.Tensor) -> torch.Tensor:
        log_p = F.logsigmoid(logits)  # stable where p underflows
        positive = log_p if self.gamma_pos == 0 else (1 - torch.sigmoid(logits)) ** self.gamma_pos * log_p
        return positive if self.pos_weight is None else positive * self.pos_weight.to(logits.dtype)

    def _negative(self, logits: torch.Tensor) -> torch.Tensor:
        if self.clip > 0:
            p_neg = (torch.sigmoid(logits) - self.clip).clamp(min=0)  # shifted probability: easy negatives vanish
            log_not_p = torch.log((1 - p_neg).clamp(min=self.eps))
        else:
            p_neg = torch.sigmoid(logits)
            log_not_p = F.logsigmoid(-logits)
        return log_not_p if self.gamma_neg == 0 else p_neg ** self.gamma_neg * log_not_p

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = finite_logits(logits)
        zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
        is_pos, is_neg = target > 0, target < 1
        # each branch sees only the logits its target uses (0 elsewhere) and counts only there:
        # no 0 x inf in the loss, and no 0 x inf-or-NaN derivative in the backward pass
        positive = self._positive(torch.where(is_pos, logits, zero))
        negative = self._negative(torch.where(is_neg, logits, zero))
        loss = torch.where(is_pos, target * positive, zero) + torch.where(is_neg, (1 - target) * negative, zero)
        return -loss.mean()


class SigmoidF1(nn.Module):
    """sigmoidF1 (Bénédict et al., 2021): 1 - smooth macro F1 over the batch.

        s = 1 / (1 + exp(S * (sigmoid(x) + E)))         (S < 0: a steep step around -E)
        tp = sum_i s y,  fp = sum_i s (1-y),  fn = sum_i (1-s) y      per species
        L = mean_j [ 1 - 2 tp / (2 tp + fn + fp) ]"""

    def __init__(self, S: float = -1.0, E: float = 0.0, eps: float = 1e-16):
        super().__init__()
        self.S, self.E, self.eps = S, E, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(-self.S * (torch.sigmoid(logits) + self.E))  # == 1/(1+exp(S(p+E)))
        tp = (s * target).sum(dim=0)
        fp = (s * (1 - target)).sum(dim=0)
        fn = ((1 - s) * target).sum(dim=0)
        f1 = 2 * tp / (2 * tp + fn + fp + self.eps)
        return (1 - f1).mean()


def make_loss(name: str, gamma_pos: float = 1.0, gamma_neg: float = 4.0, clip: float = 0.05,
              sigmoid_s: float = -1.0, sigmoid_e: float = 0.0, pos_weight=None) -> nn.Module:
    """`pos_weight` ([species], e.g. `positive_weights(labels)`) goes to BCE and ASL; sigmoidF1 ignores it."""
    if name == "bce":
        return BCE(pos_weight)
    if name == "asl":
        return ASL(gamma_pos, gamma_neg, clip, pos_weight=pos_weight)
    if name == "sigmoidf1":
        return SigmoidF1(sigmoid_s, sigmoid_e)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
