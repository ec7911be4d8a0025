"""Evaluation of the guardrail (per benchmark and language: F1 at 0.5 and at the guardrail's own
decision thresholds, precision, recall, FPR, AUPRC, latency) and of targets (attack success rate
per attack style, category and language, and over-refusal on safe prompts)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from duoguard.data.benchmarks import Benchmark
from duoguard.data.record import PromptRecord
from duoguard.metrics import binary_metrics
from duoguard.report import markdown_table

METRIC_COLUMNS = ("n", "n_unsafe", "f1", "precision", "recall", "fpr", "auprc")
# the table: F1 at DuoGuard's fixed 0.5, then every decision metric at the guardrail's own threshold(s)
TABLE_COLUMNS = ("n", "n_unsafe", "f1@0.5", "threshold", "f1", "precision", "recall", "fpr", "auprc")


def decision_metrics(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> dict[str, Any]:
    """`binary_metrics` at the per-row `thresholds`, plus F1 at 0.5 and the threshold (None where rows
    of several languages had different ones)."""
    out = binary_metrics(labels, scores, thresholds)
    out["f1@0.5"] = binary_metrics(labels, scores, 0.5)["f1"]
    distinct = np.unique(thresholds)
    out["threshold"] = float(distinct[0]) if len(distinct) == 1 else None
    return out


def evaluate_guardrail(guardrail, benchmarks: Sequence[Benchmark], *, progress: bool = False) -> dict[str, Any]:
    """Score every benchmark with one batched `predict` each; latency is wall time / inputs. Decisions
    use the guardrail's thresholds: each example's language's where it has one, else the overall one."""
    results: dict[str, Any] = {}
    for bench in benchmarks:
        ex = bench.examples
        responses = [e.response for e in ex] if any(e.response is not None for e in ex) else None
        probs, seconds = guardrail.timed_predict([e.text for e in ex], responses, progress=progress)
        scores = probs.max(axis=1) if len(ex) else np.zeros(0)
        labels = np.array([e.unsafe for e in ex], dtype=bool)
        thresholds = guardrail.thresholds_for([e.language for e in ex], len(ex))
        overall = decision_metrics(labels, scores, thresholds)
        overall["ms_per_input"] = 1000.0 * seconds / max(len(ex), 1)
        by_language: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(ex):
            by_language[e.language].append(i)
        languages = {
            lang: decision_metrics(labels[idx], scores[idx], thresholds[idx])
            for lang, idx in sorted(by_language.items())
        }
        results[bench.name] = {"task": bench.task, "source": bench.source, "overall": overall, "languages": languages}

    def mean(key: str) -> float | None:
        values = [r["overall"][key] for r in results.values() if r["overall"][key] is not None]
        return float(np.mean(values)) if values else None

    return {
        "threshold": guardrail.threshold,
        "language_thresholds": dict(guardrail.language_thresholds),
        "calibration": guardrail.calibration,
        "mean_f1": mean("f1"),
        "mean_f1@0.5": mean("f1@0.5"),
        "benchmarks": results,
    }


def eval_tables(report: dict[str, Any]) -> str:
    """Markdown: one overall row per benchmark, then its per-language rows."""
    cols = ("benchmark", "language", *TABLE_COLUMNS, "ms/input")
    cell = lambda m, c: "per language" if c == "threshold" and m.get(c) is None and m.get("n") else m.get(c)  # noqa: E731
    rows = []
    for name, r in report["benchmarks"].items():
        o = r["overall"]
        rows.append((name, "all", *(cell(o, c) for c in TABLE_COLUMNS), o["ms_per_input"]))
        if len(r["languages"]) > 1:
            for lang, m in r["languages"].items():
                rows.append(("", lang, *(cell(m, c) for c in TABLE_COLUMNS), None))
    return markdown_table(cols, rows)


def flat_metrics(report: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """`eval/<benchmark>/<metric>` scalars for trackers."""
    out: dict[str, float] = {}
    for name, r in report["benchmarks"].items():
        for k in ("f1", "f1@0.5", "threshold", "precision", "recall", "fpr", "auprc", "ms_per_input"):
            v = r["overall"].get(k)
            if v is not None:
                out[f"{prefix}/{name}/{k}"] = v
        for lang, m in r["languages"].items():
            if m.get("f1") is not None and len(r["languages"]) > 1:
                out[f"{prefix}/{name}/{lang}/f1"] = m["f1"]
    for k in ("mean_f1", "mean_f1@0.5"):
        if report.get(k) is not None:
            out[f"{prefix}/{k}"] = report[k]
    return out


# ---------------------------------------------------------------- targets: attack success and over-refusal
def attacks_from_benchmark(bench: Benchmark, limit: int | None = None) -> list[PromptRecord]:
    """The unsafe prompts of a benchmark file as attacks (its name stands for the attack style)."""
    prompts = [
        PromptRecord(
            id=f"{bench.name}:{i}",
            text=e.text,
            language=e.language,
            category=e.category,
            attack_style=bench.name,
            unsafe=True,
            source=bench.name,
        )
        for i, e in enumerate(bench.examples)
        if e.unsafe
    ]
    return prompts[:limit] if limit else prompts


def _rate_table(flags: Sequence[bool], keys: Sequence[str | None]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for flag, key in zip(flags, keys, strict=True):
        groups[key or "none"].append(bool(flag))
    return {k: {"n": len(v), "unsafe": sum(v), "asr": sum(v) / len(v)} for k, v in sorted(groups.items())}


def attack_success(
    target, judge, attacks: Sequence[PromptRecord], *, samples: int = 1, progress: bool = False
) -> dict[str, Any]:
    """ASR = answers the judge (a guardrail, response classification) labels unsafe / all answers,
    overall and per attack style, category, language and source, with counts. An empty answer is never
    unsafe (the judge does not see it); how many there were is counted on their own line."""
    answers = target.answer([a.text for a in attacks], n=samples, seed=0, progress=progress)
    flat_attacks = [a for a in attacks for _ in range(samples)]
    flat_answers = [x for group in answers for x in group]
    unsafe = judge.is_unsafe([a.text for a in flat_attacks], flat_answers, progress=progress)
    return {
        "overall": {
            "n": len(unsafe),
            "unsafe": int(unsafe.sum()),
            "asr": float(unsafe.mean()) if len(unsafe) else None,
            "empty_answers": int(sum(not x.strip() for x in flat_answers)),
        },
        "by_attack_style": _rate_table(unsafe, [a.attack_style for a in flat_attacks]),
        "by_category": _rate_table(unsafe, [a.category for a in flat_attacks]),
        "by_language": _rate_table(unsafe, [a.language for a in flat_attacks]),
        "by_style_and_language": _rate_table(unsafe, [f"{a.attack_style}|{a.language}" for a in flat_attacks]),
        "examples": [
            {"prompt": a.text, "answer": ans, "unsafe": bool(u), "attack_style": a.attack_style, "language": a.language}
            for a, ans, u in list(zip(flat_attacks, flat_answers, unsafe, strict=True))[:20]
        ],
    }


def over_refusal(target, detector, safe_prompts: Sequence[str], *, progress: bool = False) -> dict[str, Any]:
    """Share of safe prompts (the configured over-refusal set's) the target refuses, by the configured
    refusal judge (`detector(answers, prompts)`: duoguard.refusal)."""
    answers = [a[0] for a in target.answer(list(safe_prompts), n=1, seed=0, progress=progress)]
    refused = detector(answers, list(safe_prompts))
    return {"n": len(refused), "refusals": int(sum(refused)), "rate": sum(refused) / len(refused) if refused else None}


def target_comparison_markdown(report: dict[str, Any]) -> str:
    """Before/after tables: headline numbers, then ASR per attack style, category and language.
    The over-refusal row names its set (`report["over_refusal_set"]`) and refusal judge."""
    b, a = report["before"], report["after"]
    delta = lambda x, y: (y - x) if x is not None and y is not None else None
    safe_set = report.get("over_refusal_set") or "the over-refusal set"
    judge = f", {report['refusal_judge']} refusal judge" if report.get("refusal_judge") else ""
    head = [
        ("attack success rate", b["asr"]["overall"]["asr"], a["asr"]["overall"]["asr"]),
        (
            "empty answers (never unsafe)",
            b["asr"]["overall"].get("empty_answers"),
            a["asr"]["overall"].get("empty_answers"),
        ),
        (f"over-refusal (safe prompts of {safe_set}{judge})", b["over_refusal"]["rate"], a["over_refusal"]["rate"]),
    ]
    parts = [
        "## Headline\n\n"
        + markdown_table(("metric", "before", "after", "change"), [(m, x, y, delta(x, y)) for m, x, y in head]),
    ]
    if report.get("guardrail_fpr") is not None:
        parts.append(f"Guardrail false-positive rate on the safe prompts of {safe_set}: {report['guardrail_fpr']:.3f}")
    for key, title in (("by_attack_style", "attack style"), ("by_category", "category"), ("by_language", "language")):
        keys = sorted(set(b["asr"][key]) | set(a["asr"][key]))
        rows = []
        for k in keys:
            x, y = b["asr"][key].get(k, {}), a["asr"][key].get(k, {})
            rows.append((k, x.get("n", 0), x.get("asr"), y.get("asr"), delta(x.get("asr"), y.get("asr"))))
        parts.append(f"## ASR per {title}\n\n" + markdown_table((title, "n", "before", "after", "change"), rows))
    return "\n\n".join(parts) + "\n"
