"""The algorithms' losses as small pure functions, checkable line by line against the papers.

- ZLPR: the multi-label categorical cross-entropy DuoGuard trains its classifier with
  (Su, "ZLPR"): L = log(1 + sum_{j in neg} e^{s_j}) + log(1 + sum_{i in pos} e^{-s_i}).
  Its decision boundary is logit 0, i.e. sigmoid 0.5, like BCE's.
- Unknown categories: a target entry of -1 (`UNKNOWN`) has no per-category term. A row with no
  positive but some unknown entries is unsafe in a category nobody named (an AdvBench prompt):
  it trains only the any-unsafe decision, softplus(-max_j s_j) over its unknown entries, which
  is ZLPR's (and BCE's) positive term for the category the model finds likeliest. The max, not a
  noisy-or, because the guardrail's unsafe score is the largest category probability.
- SafeDPO: DPO with a safety margin Δ on pairs whose rejected answer is unsafe (below).

GRPO's loss is TRL's (see duoguard.rewards for the advantages it uses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

UNKNOWN = -1.0  # target entry: the row's membership of this category is not known (no loss term)


def zlpr_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """ZLPR loss for multi-hot `labels` (1 = positive, 0 = negative, -1 = unknown) over `logits` [N, C]."""
    labels = labels.to(logits.dtype)
    pos = labels > 0.5
    neg = labels.abs() < 0.5
    neg_inf = torch.finfo(logits.dtype).min
    zeros = torch.zeros_like(logits[..., :1])
    neg_scores = torch.where(neg, logits, neg_inf)  # s_j over negatives
    pos_scores = torch.where(pos, -logits, neg_inf)  # -s_i over positives
    loss = torch.logsumexp(torch.cat([zeros, neg_scores], dim=-1), dim=-1) + torch.logsumexp(
        torch.cat([zeros, pos_scores], dim=-1), dim=-1
    )
    return _reduce(loss + any_unsafe_loss(logits, labels), reduction)


def bce_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Per-sample sum over known categories of binary cross-entropy (same scale as ZLPR)."""
    labels = labels.to(logits.dtype)
    known = labels >= 0
    per_category = F.binary_cross_entropy_with_logits(logits, labels.clamp(min=0), reduction="none")
    loss = torch.where(known, per_category, 0.0).sum(-1)
    return _reduce(loss + any_unsafe_loss(logits, labels), reduction)


def any_unsafe_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row: softplus(-max_j s_j) over the unknown entries (-1) of a row with no positive, else 0.

    -log sigmoid(max_j s_j): the unsafe score (the largest category probability) pushed towards 1
    through the likeliest unknown category alone, and no category pushed down."""
    unknown = labels < -0.5
    category_less = unknown.any(-1) & ~(labels > 0.5).any(-1)
    top = torch.where(unknown, logits, torch.finfo(logits.dtype).min).amax(-1)
    top = torch.where(category_less, top, 0.0)  # rows without the term: a finite stand-in, masked below
    return torch.where(category_less, F.softplus(-top), 0.0)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction '{reduction}'")


MULTILABEL_LOSSES = {"zlpr": zlpr_loss, "bce": bce_loss}


def safedpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    chosen_unsafe: torch.Tensor,
    rejected_unsafe: torch.Tensor,
    beta: float = 0.1,
    delta: float = 0.0,
) -> torch.Tensor:
    """SafeDPO's per-example loss (Kim et al., arXiv 2505.20065), on pairs already through T(D):

        L = -log σ( β·[log π(y_w)/π_ref(y_w)] - β·[log π(y_l)/π_ref(y_l)] - (h_l - h_w)·Δ )

    h = 1 marks an unsafe response. Δ = 0 is TRL's sigmoid DPO loss; Δ > 0 asks for a larger
    margin exactly when the rejected response is unsafe and the chosen one safe.
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    h_margin = rejected_unsafe.to(chosen_logratios.dtype) - chosen_unsafe.to(chosen_logratios.dtype)
    return -F.logsigmoid(beta * (chosen_logratios - rejected_logratios) - h_margin * delta)
