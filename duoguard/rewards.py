"""The generator's reward and GRPO's group-relative advantage, as pure functions.

DuoGuard's generator objective (REFERENCE §1): maximise E[-log p_θ(y | x̃) · keep(x̃, y)] - β KL,
i.e. fool the current guardrail while the judge says the intended label y still holds. Here:

    p_intended = P(unsafe) for an intended-unsafe candidate, 1 - P(unsafe) for an intended-safe one
                 (P(unsafe) = the guardrail's max category probability, as its decision uses)
    reward     = fool_weight * fool(p_intended) + novelty_weight * novelty   if the judge keeps the candidate
               = -reject_penalty                                            otherwise
    fool(p)    = min(-log p, max_fool)  or  1 - p
    novelty    = in [0, 1], how far the candidate is from the pool and its GRPO group (duoguard/novelty.py);
                 novelty_weight = game.reward.novelty.weight, 0 (off) by default

A rejected candidate earns no novelty: a degenerate text is easily far from everything.

GRPO turns rewards into advantages within each group of G candidates for one prompt:
    A_i = (r_i - mean_group(r)) / (std_group(r) + 1e-4), std with Bessel's correction,
which is what TRL's GRPOTrainer computes (`scale_rewards="group"`); TRL does the update, these
functions exist for logging and so the numbers can be checked by hand and against TRL.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPS = 1e-12


def intended_probability(unsafe_scores: Sequence[float], intended_unsafe: Sequence[bool]) -> np.ndarray:
    """P(the guardrail says the intended label) for each candidate."""
    p = np.asarray(unsafe_scores, dtype=np.float64)
    want = np.asarray(intended_unsafe, dtype=bool)
    return np.where(want, p, 1.0 - p)


def fooled(unsafe_scores: Sequence[float], intended_unsafe: Sequence[bool], threshold: float = 0.5) -> np.ndarray:
    """The guardrail's decision (score > threshold) differs from the intended label."""
    return (np.asarray(unsafe_scores) > threshold) != np.asarray(intended_unsafe, dtype=bool)


def fool_term(p_intended: np.ndarray, kind: str = "neg_log", max_fool: float = 5.0) -> np.ndarray:
    if kind == "neg_log":
        return np.minimum(-np.log(np.clip(p_intended, EPS, 1.0)), max_fool)
    if kind == "one_minus_p":
        return 1.0 - p_intended
    raise ValueError(f"unknown fool reward '{kind}' (neg_log or one_minus_p)")


def game_rewards(
    p_intended: Sequence[float],
    keep: Sequence[bool],
    *,
    kind: str = "neg_log",
    fool_weight: float = 1.0,
    max_fool: float = 5.0,
    reject_penalty: float = 1.0,
) -> np.ndarray:
    p = np.asarray(p_intended, dtype=np.float64)
    return np.where(np.asarray(keep, dtype=bool), fool_weight * fool_term(p, kind, max_fool), -reject_penalty)


def add_novelty(rewards: Sequence[float], keep: Sequence[bool], novelty: Sequence[float], weight: float) -> np.ndarray:
    """`rewards` plus weight * novelty for the kept candidates; a rejected candidate's reward is unchanged."""
    r = np.asarray(rewards, dtype=np.float64)
    return np.where(np.asarray(keep, dtype=bool), r + weight * np.asarray(novelty, dtype=np.float64), r)


def group_advantages(rewards: Sequence[float], group_size: int, scale: str = "group") -> np.ndarray:
    """GRPO advantages for consecutive groups of `group_size` rewards (NaN rewards get 0)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.size % group_size:
        raise ValueError(f"{r.size} rewards do not split into groups of {group_size}")
    groups = r.reshape(-1, group_size)
    mean = np.nanmean(groups, axis=1, keepdims=True)
    if scale == "group":
        std = _bessel_std(groups, axis=1)
    elif scale == "batch":
        std = np.full_like(mean, _bessel_std(r, axis=None))
    elif scale == "none":
        std = None
    else:
        raise ValueError(f"unknown scale '{scale}' (group, batch or none)")
    adv = groups - mean
    if std is not None:
        adv = adv / (std + 1e-4)
    return np.nan_to_num(adv.reshape(-1), nan=0.0)


def _bessel_std(x: np.ndarray, axis) -> np.ndarray:
    n = np.sum(~np.isnan(x), axis=axis, keepdims=axis is not None)
    var = np.nanmean((x - np.nanmean(x, axis=axis, keepdims=True)) ** 2, axis=axis, keepdims=axis is not None)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.where(n > 1, var * n / (n - 1), np.nan))
