"""A game run's report: `report.md` and `report/*.png`, built from what the run already writes.

The inputs are the rows of `metrics.jsonl` (one dict per round), the pool's accepted records, and
optionally the last round's rejected records and the coverage archive (`archive.json`). Parts whose
inputs are absent (diversity keys, archive, rejected candidates) are left out. The figures are written
into a temp folder that replaces `report/` whole, then `report.md` through a temp file, so a crash
mid-write leaves the previous report in place. It is cheap enough to rewrite after every round.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from duoguard.atomic import atomic_dir, write_text_atomic
from duoguard.data.record import PromptRecord
from duoguard.league import matrix
from duoguard.report import _pyplot, fmt, markdown_table

REPORT = "report.md"
FIGURES = "report"
SAMPLES_PER_ROUND = 3  # accepted candidates shown per round
REJECTED_SHOWN = 8
TEXT_CHARS = 120
COUNTS = ("generated", "kept", "accepted", "fooled")

# One line per number, in the order the round table shows them.
MEANINGS = {
    "generated": "candidates the generator wrote this round",
    "kept": "candidates the judge kept (they keep their intended label and are usable)",
    "accepted": "kept candidates that were new (not in the pool, not a seed) and not near-copies of evaluation "
    "prompts; they enter the pool",
    "keep_rate": "kept / generated",
    "fool_rate": "kept candidates the round's guardrail misclassified / generated (the generator's success)",
    "fool_rate_of_kept": "kept candidates the guardrail misclassified / kept",
    "mean_reward": "mean GRPO reward the referee gave the round's candidates (game.reward), unitless",
    "guardrail_acc_before": "guardrail accuracy on the round's accepted candidates before its update",
    "guardrail_acc_after": "the same after the guardrail trained on the pool",
    "heldout_f1": "guardrail F1 on the held-out seed families at guardrail.threshold",
    "heldout_auprc": "guardrail area under the precision-recall curve on the held-out seed families",
    "pool_size": "accepted prompts in the pool after the round",
    "pool_contaminated": "accepted candidates that nearly copy an evaluation prompt (not pooled by default)",
    "kl": "mean over the round's GRPO steps of TRL's KL estimate from the reference model (–: not measured)",
    "judge/rejected_<rule>": "candidates that judge rule rejected (a candidate may fail several)",
    "diversity/<name>": "diversity of the round's candidates, as the diversity metric of that name measures it",
    "seconds_<phase>": "wall-clock seconds of that phase of the round (seconds_round: their sum)",
    "mean_fool_reward": "mean reward of the kept candidates (the fooling reward the generator is paid)",
    "label_pass_rate": "candidates the label check passed / generated (when a label check runs)",
    "league/g<i>_d<j>": "fool rate matrix entry: share of round i's accepted candidates that guardrail j "
    "(after round j's update; 0 = warmed up) misclassifies",
    "exploitability": "the round's accepted candidates' fool rate against the guardrail after its update",
    "forgetting": "mean over earlier rounds k of how much more the newest guardrail is fooled by round k's "
    "candidates than guardrail k was (0 = nothing forgotten)",
    "old_rounds_accuracy": "the newest guardrail's accuracy on every earlier round's accepted candidates",
    "guardrail score": "the round's guardrail P(unsafe) for a candidate, in [0, 1]",
}
ROUND_COLUMNS = (
    "generated",
    "kept",
    "accepted",
    "keep_rate",
    "fool_rate",
    "fool_rate_of_kept",
    "mean_reward",
    "mean_fool_reward",
    "label_pass_rate",
    "guardrail_acc_before",
    "guardrail_acc_after",
    "heldout_f1",
    "heldout_auprc",
    "pool_size",
    "pool_contaminated",
    "kl",
)


# ---------------------------------------------------------------- inputs
def read_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a `metrics.jsonl`; a missing file is no rounds yet."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e})") from e
    return rows


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(rounds, values) where the key holds a finite number."""
    xs, ys = [], []
    for i, row in enumerate(history, 1):
        v = _number(row.get(key))
        if v is not None:
            xs.append(int(row.get("round", i)))
            ys.append(v)
    return xs, ys


def _keys(history: Sequence[Mapping[str, Any]], prefix: str) -> list[str]:
    """Every key with this prefix that some round holds as a number, in first-seen order."""
    seen: dict[str, None] = {}
    for row in history:
        for k, v in row.items():
            if k.startswith(prefix) and _number(v) is not None:
                seen.setdefault(k, None)
    return list(seen)


def archive_cells(archive: Any) -> dict[tuple[str, str, str], dict[str, float]]:
    """(language, category, attack_style) -> counts, from the archive in any of the shapes it may take:
    an `archive.Archive`, a path to its `archive.json`, a mapping with a "cells" entry, a list of cell
    dicts naming language, category and attack_style (or style), or a mapping from
    "language|category|style" keys to counts."""
    if callable(getattr(archive, "rows", None)):  # an archive.Archive
        archive = archive.rows()
    elif isinstance(archive, (str, os.PathLike)):
        archive = json.loads(Path(archive).read_text(encoding="utf-8"))
    if isinstance(archive, Mapping) and "cells" in archive:
        archive = archive["cells"]
    cells: dict[tuple[str, str, str], dict[str, float]] = {}
    if isinstance(archive, Mapping):
        items: Iterable[tuple[Any, Any]] = archive.items()
    elif isinstance(archive, Sequence):
        items = ((None, cell) for cell in archive)
    else:
        raise ValueError(f"coverage archive: expected a mapping or a list of cells, got {type(archive).__name__}")
    for key, cell in items:
        if not isinstance(cell, Mapping):
            raise ValueError(f"coverage archive: cell {key!r} is not a mapping of counts")
        if key is None or "language" in cell:
            parts = (cell.get("language"), cell.get("category"), cell.get("attack_style", cell.get("style")))
        else:
            parts = tuple(str(key).replace("/", "|").split("|"))
        if len(parts) != 3:
            raise ValueError(f"coverage archive: cell {key!r} does not name language, category and attack style")
        name = tuple("–" if p is None else str(p) for p in parts)
        counts = cells.setdefault(name, dict.fromkeys(COUNTS, 0.0))  # type: ignore[arg-type]
        for c in COUNTS:
            counts[c] += _number(cell.get(c)) or 0.0
    return cells


def pool_cells(records: Sequence[PromptRecord]) -> dict[tuple[str, str, str], dict[str, float]]:
    """Accepted (and fooled) counts per cell, from pool records."""
    cells: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in records:
        key = (r.language, r.category or "–", r.attack_style or "–")
        counts = cells.setdefault(key, {"accepted": 0.0, "fooled": 0.0})
        counts["accepted"] += 1
        counts["fooled"] += bool(r.fooled)
    return cells


def figures_dir(report_path: str | os.PathLike) -> Path:
    """The folder of a report's figures, given the path `write_game_report` returned."""
    return Path(report_path).parent / FIGURES


def league_grid(history: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int], list[list[float | None]]]:
    """(generator rounds, guardrail rounds, fool rates) of the matrix in the rounds' metrics."""
    m = matrix(history)
    gens = sorted({g for g, _ in m})
    guards = sorted({d for _, d in m})
    return gens, guards, [[m.get((g, d)) for d in guards] for g in gens]


# ---------------------------------------------------------------- figures
def _league_plot(plt, history, path: Path) -> bool:
    gens, guards, grid = league_grid(history)
    if not gens:
        return False
    values = [[float("nan") if v is None else v for v in row] for row in grid]
    fig, ax = plt.subplots(figsize=(max(3.5, 0.6 * len(guards) + 2.5), max(2.5, 0.5 * len(gens) + 1.5)))
    im = ax.imshow(values, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if v is not None:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.5 else "black")
    ax.set_xticks(range(len(guards)), [str(d) for d in guards])
    ax.set_yticks(range(len(gens)), [str(g) for g in gens])
    ax.set_xlabel("guardrail after round")
    ax.set_ylabel("generator round")
    ax.set_title("fool rate of accepted candidates", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return True


def _line_plot(plt, history, keys: Sequence[str], ylabel: str, path: Path, unit_range: bool) -> bool:
    drawn = [(k, *_series(history, k)) for k in keys]
    drawn = [d for d in drawn if d[1]]
    if not drawn:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, xs, ys in drawn:
        ax.plot(xs, ys, marker="o", label=key)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    if unit_range:
        ax.set_ylim(-0.02, 1.02)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _seconds_plot(plt, history, path: Path) -> bool:
    phases = [k for k in _keys(history, "seconds_") if k != "seconds_round"]
    if not phases:
        return False
    rounds = [int(row.get("round", i)) for i, row in enumerate(history, 1)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bottom = [0.0] * len(history)
    for k in phases:
        vals = [_number(row.get(k)) or 0.0 for row in history]
        ax.bar(rounds, vals, bottom=bottom, label=k.removeprefix("seconds_"))
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xlabel("round")
    ax.set_ylabel("seconds")
    ax.set_xticks(rounds)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return True


def _coverage_plot(plt, cells: Mapping[tuple[str, str, str], Mapping[str, float]], path: Path) -> bool:
    if not cells:
        return False
    langs = sorted({k[0] for k in cells})
    columns = sorted({f"{k[1]} / {k[2]}" for k in cells})
    grid = [[0.0] * len(columns) for _ in langs]
    for (lang, cat, style), counts in cells.items():
        grid[langs.index(lang)][columns.index(f"{cat} / {style}")] += counts.get("accepted", 0.0)
    fig, ax = plt.subplots(figsize=(min(20, max(5, 0.35 * len(columns) + 2)), max(2.5, 0.35 * len(langs) + 1.5)))
    im = ax.imshow(grid, cmap="Blues", aspect="auto", vmin=0)
    if len(langs) * len(columns) <= 150:  # the counts themselves while they stay legible
        top = max(max(row) for row in grid) or 1.0
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=7, color="white" if v > top / 2 else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(langs)), langs, fontsize=8)
    ax.set_title("accepted candidates per language x (category / attack style)", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return True


# ---------------------------------------------------------------- markdown
def _cell_text(text: str | None, limit: int = TEXT_CHARS) -> str:
    text = " ".join((text or "").split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _samples_table(records: Sequence[PromptRecord]) -> str:
    by_round: dict[Any, list[PromptRecord]] = defaultdict(list)
    for r in records:
        by_round[r.round].append(r)
    rows = []
    for rnd in sorted(by_round, key=lambda x: (x is None, x or 0)):
        for r in by_round[rnd][:SAMPLES_PER_ROUND]:
            rows.append(
                (rnd, _cell_text(r.text), r.language, r.category, r.attack_style, r.unsafe, r.guardrail_score, r.fooled)
            )
    columns = ("round", "text", "language", "category", "style", "unsafe", "guardrail score", "fooled")
    return markdown_table(columns, rows)


def _rejected_table(records: Sequence[PromptRecord]) -> str:
    rows = [
        (
            _cell_text(r.text),
            r.language,
            r.category,
            r.attack_style,
            r.unsafe,
            ", ".join(r.judge.reasons) if r.judge and r.judge.reasons else "–",
        )
        for r in records[:REJECTED_SHOWN]
    ]
    return markdown_table(("text", "language", "category", "style", "unsafe", "judge's reasons"), rows)


def _round_table(history: Sequence[Mapping[str, Any]], keys: Sequence[str], strip: str = "") -> str:
    rows = [(row.get("round", i), *(row.get(k) for k in keys)) for i, row in enumerate(history, 1)]
    return markdown_table(("round", *(k.removeprefix(strip) for k in keys)), rows)


def _coverage_table(cells: Mapping[tuple[str, str, str], Mapping[str, float]]) -> str:
    counts = [c for c in COUNTS if any(c in v for v in cells.values())]
    rows = sorted(cells.items(), key=lambda kv: (-kv[1].get("accepted", 0), kv[0]))
    shown = rows[:5] + (rows[-5:] if len(rows) > 10 else rows[5:])
    body = [(*key, *(int(v.get(c, 0)) for c in counts)) for key, v in shown]
    note = f"The {len(shown)} cells shown are the most and least filled of {len(rows)}.\n\n" if len(rows) > 10 else ""
    return note + markdown_table(("language", "category", "attack style", *counts), body)


def render(
    history: Sequence[Mapping[str, Any]],
    pool_records: Sequence[PromptRecord],
    rejected: Sequence[PromptRecord] | None,
    cells: Mapping[tuple[str, str, str], Mapping[str, float]],
    cells_from: str,
    figures: Mapping[str, str],
) -> str:
    """The markdown, given which figures (name -> caption) exist."""
    last = history[-1] if history else {}
    out = ["# Game report", ""]
    if history:
        out += [
            f"Rounds: {len(history)}; round {last.get('round', len(history))}: fool rate {fmt(last.get('fool_rate'))}, "
            f"keep rate {fmt(last.get('keep_rate'))}, held-out F1 {fmt(last.get('heldout_f1'))}, "
            f"held-out AUPRC {fmt(last.get('heldout_auprc'))}, pool {fmt(last.get('pool_size'))} prompts.",
            "",
        ]
        if last.get("label_check") == "none":
            out += ["The kept candidates' labels are unchecked (judge.label_check=none).", ""]
    else:
        out += ["No round has finished yet.", ""]

    def figure(name: str) -> None:
        if name in figures:
            out.extend([f"![{figures[name]}]({FIGURES}/{name}.png)", ""])

    out += ["## Rounds", ""]
    if history:
        out += [_round_table(history, [k for k in ROUND_COLUMNS if any(k in row for row in history)]), ""]
    figure("rates")
    figure("heldout")
    judge = _keys(history, "judge/rejected_")
    if judge:
        out += ["## Judge rejections", "", _round_table(history, judge, "judge/rejected_"), ""]
    diversity = _keys(history, "diversity/")
    if diversity:
        out += ["## Diversity", "", _round_table(history, diversity, "diversity/"), ""]
        figure("diversity")
    if cells:
        out += ["## Coverage", "", f"Counts per (language, category, attack style) cell, from {cells_from}.", ""]
        figure("coverage")
        out += [_coverage_table(cells), ""]
    gens, guards, grid = league_grid(history)
    if gens:
        out += [
            "## Exploitability and forgetting",
            "",
            "Fool rate of each generator round's accepted candidates (rows) against the guardrail after each "
            "round's update (columns; 0 = warmed up); – = not measured (outside the league).",
            "",
            markdown_table(("generator \\ guardrail", *guards), [(g, *row) for g, row in zip(gens, grid, strict=True)]),
            "",
        ]
        figure("league")
        summary_keys = [k for k in ("exploitability", "forgetting", "old_rounds_accuracy") if _keys(history, k)]
        if summary_keys:
            out += [_round_table(history, summary_keys), ""]
        figure("exploitability")
    if "seconds" in figures:
        out += ["## Time per phase", ""]
        figure("seconds")
    out += ["## Accepted candidates", ""]
    if pool_records:
        out += [f"Up to {SAMPLES_PER_ROUND} per round, from the pool.", "", _samples_table(pool_records), ""]
    else:
        out += ["No accepted candidates yet.", ""]
    if rejected:
        out += [
            "## Rejected candidates",
            "",
            f"Up to {REJECTED_SHOWN} of the last round's {len(rejected)} rejected candidates, with the judge rules "
            "they failed.",
            "",
            _rejected_table(rejected),
            "",
        ]
    out += ["## What the numbers mean", ""]
    out += [f"- `{k}`: {v}" for k, v in MEANINGS.items()]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the report
def write_game_report(
    out_dir: str | os.PathLike,
    history: Sequence[Mapping[str, Any]],
    pool_records: Sequence[PromptRecord],
    rejected: Sequence[PromptRecord] | None = None,
    archive: Any = None,
) -> Path:
    """Write `out_dir/report.md` and its figures `out_dir/report/*.png`; returns the markdown's path.

    `history`: the rounds' metrics (metrics.jsonl rows); `pool_records`: the pool's accepted records;
    `rejected`: records of one round (those with judge.keep False are shown with the judge's reasons);
    `archive`: the coverage archive (`archive_cells` reads its shapes). Each call replaces the report."""
    out = Path(out_dir)
    history = list(history)
    pool_records = list(pool_records)
    rejected = [r for r in rejected or [] if r.judge is not None and not r.judge.keep]
    if archive is not None:
        cells, cells_from = archive_cells(archive), "the coverage archive (every candidate generated)"
    else:
        cells, cells_from = pool_cells(pool_records), "the pool (accepted candidates only)"
    figures: dict[str, str] = {}

    def build(tmp: Path) -> None:
        plt = _pyplot()
        plots = {
            "rates": ("fool and keep rates per round", lambda p: _line_plot(
                plt, history, ("fool_rate", "keep_rate", "fool_rate_of_kept"), "rate", p, True)),
            "heldout": ("held-out F1 and AUPRC per round", lambda p: _line_plot(
                plt, history, ("heldout_f1", "heldout_auprc"), "held-out score", p, True)),
            "diversity": ("diversity per round", lambda p: _line_plot(
                plt, history, _keys(history, "diversity/"), "diversity", p, False)),
            "coverage": ("accepted candidates per cell", lambda p: _coverage_plot(plt, cells, p)),
            "seconds": ("seconds per phase per round", lambda p: _seconds_plot(plt, history, p)),
            "league": ("fool rate: generator round x guardrail round", lambda p: _league_plot(plt, history, p)),
            "exploitability": ("exploitability, forgetting and accuracy on old rounds", lambda p: _line_plot(
                plt, history, ("exploitability", "forgetting", "old_rounds_accuracy"), "rate", p, True)),
        }  # fmt: skip
        os.chmod(tmp, 0o755)  # readable like the rest of the run folder (a temp folder starts private)
        for name, (caption, draw) in plots.items():
            if draw(tmp / f"{name}.png"):
                figures[name] = caption

    atomic_dir(out / FIGURES, build, replace=True)
    return write_text_atomic(out / REPORT, render(history, pool_records, rejected, cells, cells_from, figures))
