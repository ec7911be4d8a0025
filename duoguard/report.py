"""Reports: one table renderer for console and markdown, written as JSON + markdown atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from duoguard.atomic import write_json_atomic, write_text_atomic


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """A pipe table; it reads as plain text on a console too."""
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [max(len(str(c)), *(len(r[i]) for r in cells)) if cells else len(str(c)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(str(v).ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), sep, *(line(r) for r in cells)])


def write_report(out_dir: str | os.PathLike, name: str, data: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """`<name>.json` and `<name>.md` in `out_dir`, each written through a temp file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    write_json_atomic(json_path, data)
    write_text_atomic(md_path, markdown)
    return json_path, md_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_asr_by_style(before: Mapping[str, Mapping], after: Mapping[str, Mapping], path: str | os.PathLike) -> Path:
    """Grouped bars: ASR per attack style, before and after."""
    plt = _pyplot()
    styles = sorted(set(before) | set(after))
    x = range(len(styles))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(styles) + 2), 4))
    ax.bar([i - 0.2 for i in x], [before.get(s, {}).get("asr") or 0 for s in styles], 0.4, label="before")
    ax.bar([i + 0.2 for i in x], [after.get(s, {}).get("asr") or 0 for s in styles], 0.4, label="after")
    ax.set_xticks(list(x), styles, rotation=30, ha="right")
    ax.set_ylabel("attack success rate")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_asr_heatmap(before: Mapping[str, Mapping], after: Mapping[str, Mapping], path: str | os.PathLike) -> Path:
    """Attack style x language heat maps of ASR, before and after (keys are 'style|language')."""
    plt = _pyplot()
    keys = set(before) | set(after)
    styles = sorted({k.split("|")[0] for k in keys})
    langs = sorted({k.split("|")[1] for k in keys})
    fig, axes = plt.subplots(1, 2, figsize=(2 * max(4, 0.8 * len(langs) + 2), max(3, 0.5 * len(styles) + 1.5)))
    for ax, table, title in ((axes[0], before, "before"), (axes[1], after, "after")):
        grid = [[(table.get(f"{s}|{lang}") or {}).get("asr", float("nan")) for lang in langs] for s in styles]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="Reds", aspect="auto")
        ax.set_xticks(range(len(langs)), langs)
        ax.set_yticks(range(len(styles)), styles)
        ax.set_title(f"ASR {title}")
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def decontamination_line(counts: dict[str, int]) -> str:
    """One line on what decontamination found (counts from factory.decontaminate)."""
    if not counts.get("overlaps"):
        checked = counts.get("checked", 0)
        return f"Decontamination: {checked:,} training texts checked, no near-copy of an evaluation prompt."
    return (
        f"Decontamination: {counts['overlaps']:,} of {counts['checked']:,} training texts nearly copy evaluation "
        f"prompts; {counts['dropped']:,} rows left out (with their families); both texts in decontamination/."
    )
