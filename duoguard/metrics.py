"""Binary safety metrics as DuoGuard reports them: F1 at a threshold, precision, recall, FPR, AUPRC.

A metric that is undefined for the data (recall with no unsafe example, FPR with no safe one)
is None, never a silent 0: all-unsafe benchmarks such as MultiJail have no FPR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def average_precision(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the precision-recall curve as step-wise average precision.

    AP = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, highest first (the
    definition scikit-learn's `average_precision_score` uses). None without a positive.
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # one point per distinct threshold
    tp, fp = tp[last_of_tie], fp[last_of_tie]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def binary_metrics(
    labels: Sequence[bool], scores: Sequence[float], threshold: float = 0.5
) -> dict[str, float | int | None]:
    """Metrics of `score > threshold` as the unsafe prediction against boolean `labels`."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    pred = s > threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    tn = int(np.sum(~pred & ~y))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        "n": int(y.size),
        "n_unsafe": int(y.sum()),
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "fpr": _ratio(fp, fp + tn),
        "accuracy": _ratio(tp + tn, y.size),
        "auprc": average_precision(y, s),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }
