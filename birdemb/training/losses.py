"""Multi-label losses on raw logits, as torch modules: BCE, ASL and sigmoidF1."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

LOSSES = ("bce", "asl", "sigmoidf1")


class BCE(nn.Module):
    """Binary cross-entropy on logits, mean over every (window, species) element."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target)


class ASL(nn.Module):
    """Asymmetric loss (Ridnik et al., 2021), mean over elements:

        p = sigmoid(x),  p_m = max(p - clip, 0)
        L = -[ y (1-p)^gamma_pos log p  +  (1-y) p_m^gamma_neg log(1-p_m) ]

    With gamma_pos = gamma_neg = 0 and clip = 0 it is exactly BCE."""

    def __init__(self, gamma_pos: float = 1.0, gamma_neg: float = 4.0, clip: float = 0.05, eps: float = 1e-8):
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.clip, self.eps = gamma_pos, gamma_neg, clip, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        log_p = F.logsigmoid(logits)  # stable where p underflows
        if self.clip > 0:
            p_neg = (p - self.clip).clamp(min=0)  # shifted probability: easy negatives vanish
            log_not_p = torch.log((1 - p_neg).clamp(min=self.eps))
        else:
            p_neg = p
            log_not_p = F.logsigmoid(-logits)
        positive = log_p if self.gamma_pos == 0 else (1 - p) ** self.gamma_pos * log_p
        negative = log_not_p if self.gamma_neg == 0 else p_neg ** self.gamma_neg * log_not_p
        return -(target * positive + (1 - target) * negative).mean()


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
              sigmoid_s: float = -1.0, sigmoid_e: float = 0.0) -> nn.Module:
    if name == "bce":
        return BCE()
    if name == "asl":
        return ASL(gamma_pos, gamma_neg, clip)
    if name == "sigmoidf1":
        return SigmoidF1(sigmoid_s, sigmoid_e)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
