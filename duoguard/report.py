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
