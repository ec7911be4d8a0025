"""Guardrail evaluation: per benchmark and per language F1, precision, recall, FPR, AUPRC, latency."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from duoguard.data.benchmarks import Benchmark
from duoguard.metrics import binary_metrics
from duoguard.report import markdown_table

METRIC_COLUMNS = ("n", "n_unsafe", "f1", "precision", "recall", "fpr", "auprc")


def evaluate_guardrail(guardrail, benchmarks: Sequence[Benchmark], *, progress: bool = False) -> dict[str, Any]:
    """Score every benchmark with one batched `predict` each; latency is wall time / inputs."""
    results: dict[str, Any] = {}
    for bench in benchmarks:
        ex = bench.examples
        responses = [e.response for e in ex] if any(e.response is not None for e in ex) else None
        probs, seconds = guardrail.timed_predict([e.text for e in ex], responses, progress=progress)
        scores = probs.max(axis=1) if len(ex) else np.zeros(0)
        labels = np.array([e.unsafe for e in ex], dtype=bool)
        overall = binary_metrics(labels, scores, guardrail.threshold)
        overall["ms_per_input"] = 1000.0 * seconds / max(len(ex), 1)
        by_language: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(ex):
            by_language[e.language].append(i)
        languages = {
            lang: binary_metrics(labels[idx], scores[idx], guardrail.threshold)
            for lang, idx in sorted(by_language.items())
        }
        results[bench.name] = {"task": bench.task, "source": bench.source, "overall": overall, "languages": languages}
    f1s = [r["overall"]["f1"] for r in results.values() if r["overall"]["f1"] is not None]
    return {
        "threshold": guardrail.threshold,
        "mean_f1": float(np.mean(f1s)) if f1s else None,
        "benchmarks": results,
    }


def eval_tables(report: dict[str, Any]) -> str:
    """Markdown: one overall row per benchmark, then its per-language rows."""
    cols = ("benchmark", "language", *METRIC_COLUMNS, "ms/input")
    rows = []
    for name, r in report["benchmarks"].items():
        o = r["overall"]
        rows.append((name, "all", *(o[c] for c in METRIC_COLUMNS), o["ms_per_input"]))
        if len(r["languages"]) > 1:
            for lang, m in r["languages"].items():
                rows.append(("", lang, *(m[c] for c in METRIC_COLUMNS), None))
    return markdown_table(cols, rows)


def flat_metrics(report: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """`eval/<benchmark>/<metric>` scalars for trackers."""
    out: dict[str, float] = {}
    for name, r in report["benchmarks"].items():
        for k in ("f1", "precision", "recall", "fpr", "auprc", "ms_per_input"):
            v = r["overall"].get(k)
            if v is not None:
                out[f"{prefix}/{name}/{k}"] = v
        for lang, m in r["languages"].items():
            if m.get("f1") is not None and len(r["languages"]) > 1:
                out[f"{prefix}/{name}/{lang}/f1"] = m["f1"]
    if report.get("mean_f1") is not None:
        out[f"{prefix}/mean_f1"] = report["mean_f1"]
    return out
