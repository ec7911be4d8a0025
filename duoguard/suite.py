"""DuoGuard's main table: six benchmarks by four languages, from a guardrail evaluation report.

DuoGuard (arXiv 2502.05163; its `evaluation/evaluate_duoguard.py`) scores each benchmark in each
language on its own: unsafe = max category probability > 0.5, F1 of the unsafe class, AUPRC, and
latency per input; its headline is the mean F1 over the six benchmarks per language. This module
only lays out the report `duoguard.evaluate.evaluate_guardrail` already produces
(`report["benchmarks"][name]["languages"][lang]`) in that shape; it computes no metric itself
beyond the averages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from duoguard.report import markdown_table

SUITE_BENCHMARKS = ("XSTest", "OpenAI Moderation", "ToxicChat", "BeaverTails", "RTP-LX", "XSafety")  # paper order
SUITE_LANGUAGES = ("en", "fr", "es", "de")
SUITE_METRICS = ("f1", "auprc")
PAPER_F1 = "f1@0.5"  # evaluate_guardrail's F1 at DuoGuard's fixed threshold; "f1" is at the guardrail's own


def _metric(metrics: dict[str, Any], metric: str) -> float | None:
    """F1 as the paper computes it (at 0.5) where the report has it, else the report's F1."""
    return metrics.get(PAPER_F1, metrics.get("f1")) if metric == "f1" else metrics.get(metric)


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean, or None when any value is missing: an average over fewer benchmarks is not the paper's."""
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


def suite_languages(report: dict[str, Any], benchmarks: Sequence[str]) -> list[str]:
    """En, Fr, Es, De always (a missing one shows as a gap), then any other language the report has."""
    seen = {lang for name in benchmarks for lang in report["benchmarks"].get(name, {}).get("languages", {})}
    return [*SUITE_LANGUAGES, *sorted(seen - set(SUITE_LANGUAGES))]


def suite_table(
    report: dict[str, Any], benchmarks: Sequence[str] = SUITE_BENCHMARKS, languages: Sequence[str] | None = None
) -> dict[str, Any]:
    """Rows = `benchmarks` (report names, in order), per language F1 and AUPRC, the benchmark's
    ms/input; plus the average row (mean per language; ms/input over all inputs)."""
    languages = list(languages or suite_languages(report, benchmarks))
    rows: dict[str, dict[str, Any]] = {}
    for name in benchmarks:
        result = report["benchmarks"].get(name)
        per_language = result["languages"] if result else {}
        rows[name] = {
            metric: {lang: _metric(per_language.get(lang, {}), metric) for lang in languages}
            for metric in SUITE_METRICS
        }
        rows[name]["n"] = result["overall"]["n"] if result else None
        rows[name]["ms_per_input"] = result["overall"]["ms_per_input"] if result else None
    average: dict[str, Any] = {
        metric: {lang: _mean([rows[name][metric][lang] for name in benchmarks]) for lang in languages}
        for metric in SUITE_METRICS
    }
    timed = [(rows[name]["ms_per_input"], rows[name]["n"]) for name in benchmarks]
    complete = bool(timed) and all(ms is not None for ms, _ in timed)
    inputs = sum(n for _, n in timed) if complete else 0
    average["ms_per_input"] = sum(ms * n for ms, n in timed) / inputs if inputs else None
    at_half = any(PAPER_F1 in m for r in report["benchmarks"].values() for m in r["languages"].values())
    return {
        "threshold": 0.5 if at_half else report.get("threshold"),
        "benchmarks": list(benchmarks),
        "languages": languages,
        "rows": rows,
        "average": average,
    }


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def suite_markdown(table: dict[str, Any]) -> str:
    """The table as DuoGuard prints it: scores x100 with one decimal, a column pair per language."""
    langs = table["languages"]
    columns = ["benchmark", *(f"{lang.capitalize()} {m.upper()}" for lang in langs for m in SUITE_METRICS), "ms/input"]

    def cells(label: str, row: dict[str, Any]) -> list[Any]:
        scores = [_percent(row[m][lang]) for lang in langs for m in SUITE_METRICS]
        return [label, *scores, row["ms_per_input"]]

    body = [cells(name, table["rows"][name]) for name in table["benchmarks"]]
    body.append(cells("**Average**", table["average"]))
    threshold = table["threshold"]
    return (
        f"## DuoGuard suite (F1 of the unsafe class at threshold {threshold}, and AUPRC, x100)\n\n"
        + markdown_table(columns, body, digits=1)
        + "\n"
    )
