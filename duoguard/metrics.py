"""Binary safety metrics as DuoGuard reports them: F1 at a threshold, precision, recall, FPR, AUPRC.

A metric that is undefined for the data (recall with no unsafe example, FPR with no safe one)
is None, never a silent 0: all-unsafe benchmarks such as MultiJail have no FPR.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    labels: Sequence[bool], scores: Sequence[float], threshold: float | np.ndarray = 0.5
) -> dict[str, float | int | None]:
    """Metrics of `score > threshold` as the unsafe prediction against boolean `labels`; `threshold` is one
    number or one per row (per-language thresholds)."""
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


# ---------------------------------------------------------------- decision thresholds
CALIBRATION_RULES = ("best_f1", "target_fpr", "none")
_EDGE = 1e-6  # thresholds stay strictly inside (0, 1)


def _cut_below(scores: np.ndarray, tau: float) -> float:
    """The threshold t with {s > t} == {s >= tau} on `scores`: halfway down to the next lower score."""
    lower = scores[scores < tau]
    t = (tau + float(lower.max())) / 2 if lower.size else tau / 2
    return float(np.clip(t, _EDGE, 1.0 - _EDGE))


def calibrate_threshold(
    labels: Sequence[bool], scores: Sequence[float], rule: str = "best_f1", *, target_fpr: float = 0.05
) -> float | None:
    """The decision threshold (unsafe = score > t) a rule picks on a calibration set, or None where the
    rule cannot say (the set lacks unsafe or safe rows, or rule is `none`).

    - best_f1: the threshold of highest F1 on the set (scikit-learn's precision_recall_curve);
    - target_fpr: the most unsafe rows caught with a false-positive rate <= target_fpr (roc_curve).

    The cut lies halfway between the chosen score and the next lower one, so it does not sit on a
    score of the calibration set."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    if rule not in CALIBRATION_RULES:
        raise ValueError(f"unknown calibration rule {rule!r} (known: {', '.join(CALIBRATION_RULES)})")
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if rule == "none" or y.all() or not y.any():
        return None
    if rule == "best_f1":
        precision, recall, cuts = precision_recall_curve(y, s)  # predicts s >= cut; last point has no cut
        p, r = precision[:-1], recall[:-1]
        f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
        return _cut_below(s, float(cuts[int(np.argmax(f1))]))
    fpr, _tpr, cuts = roc_curve(y, s, drop_intermediate=False)  # cuts fall; cuts[0] = inf flags nothing
    best = int(np.nonzero(fpr <= target_fpr)[0][-1])  # fpr rises with the index: the last one catches most
    if best == 0:
        return float(np.clip(s.max(), _EDGE, 1.0 - _EDGE))
    return _cut_below(s, float(cuts[best]))


def calibrate_thresholds(
    labels: Sequence[bool],
    scores: Sequence[float],
    languages: Sequence[str],
    rule: str,
    *,
    target_fpr: float = 0.05,
    min_rows: int = 100,
    default: float = 0.5,
) -> dict[str, Any]:
    """An overall threshold and one per language with at least `min_rows` rows of both kinds.

    A language the rule cannot calibrate (too few rows, one class only) is left out and falls back to
    the overall threshold; the overall one falls back to `default` the same way (and under `none`).
    Returns {"rule", "target_fpr", "threshold", "languages": {lang: t}, "n", "fallback": {lang: why}}."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    langs = np.asarray(languages, dtype=object)
    if not y.shape == s.shape == langs.shape:
        raise ValueError(f"labels {y.shape}, scores {s.shape} and languages {langs.shape} differ in shape")

    def pick(mask: np.ndarray) -> tuple[float | None, str | None]:
        n = int(mask.sum())
        if rule == "none":
            return None, "rule none"
        if n < min_rows:
            return None, f"{n} rows < min_rows {min_rows}"
        t = calibrate_threshold(y[mask], s[mask], rule, target_fpr=target_fpr)
        return (t, None) if t is not None else (None, "needs safe and unsafe rows")

    overall, why = pick(np.ones(len(y), dtype=bool))
    out: dict[str, Any] = {
        "rule": rule,
        "target_fpr": target_fpr if rule == "target_fpr" else None,
        "threshold": overall if overall is not None else default,
        "languages": {},
        "n": int(len(y)),
        "fallback": {"all": why} if why else {},
    }
    if overall is None:  # no overall calibration: languages keep the default too
        return out
    for lang in sorted(set(langs.tolist())):
        t, why = pick(langs == lang)
        if t is None:
            out["fallback"][lang] = why
        else:
            out["languages"][lang] = t
    return out
