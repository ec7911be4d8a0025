"""The algorithms' losses as small pure functions, checkable line by line against the papers.

- ZLPR: the multi-label categorical cross-entropy DuoGuard trains its classifier with
  (Su, "ZLPR"): L = log(1 + sum_{j in neg} e^{s_j}) + log(1 + sum_{i in pos} e^{-s_i}).
  Its decision boundary is logit 0, i.e. sigmoid 0.5, like BCE's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def zlpr_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """ZLPR loss for multi-hot `labels` (1 = positive) over `logits` [N, C]."""
    labels = labels.to(logits.dtype)
    pos = labels > 0.5
    neg_inf = torch.finfo(logits.dtype).min
    zeros = torch.zeros_like(logits[..., :1])
    neg_scores = torch.where(pos, neg_inf, logits)  # s_j over negatives
    pos_scores = torch.where(pos, -logits, neg_inf)  # -s_i over positives
    loss = torch.logsumexp(torch.cat([zeros, neg_scores], dim=-1), dim=-1) + torch.logsumexp(
        torch.cat([zeros, pos_scores], dim=-1), dim=-1
    )
    return _reduce(loss, reduction)


def bce_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Per-sample sum over categories of binary cross-entropy (same scale as ZLPR)."""
    loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none").sum(-1)
    return _reduce(loss, reduction)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction '{reduction}'")


MULTILABEL_LOSSES = {"zlpr": zlpr_loss, "bce": bce_loss}
