"""What the game has tried so far, per cell of language x category x attack style, and the
curriculum's weights over those cells.

Rainbow Teaming (arXiv 2402.16822) keeps an archive over risk category x attack style; this one
adds the language. Each cell counts the candidates `generated` for it, those the judge `kept`,
those the game `accepted` into the pool and the kept ones that `fooled` the guardrail. A safe
prompt without topic has category None, a cell value of its own.

`curriculum_weights` turns the counts into a weight per cell for `ConditionSampler.draw`:
`under_covered` favours cells with few accepted candidates, `still_fooled` cells where the
guardrail was fooled most (a smoothed rate, so an untried cell is not ruled out).

The archive is saved as JSON (atomically) beside the round checkpoint, so a resumed game continues it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from duoguard.atomic import write_json_atomic
from duoguard.config import ConfigError, CurriculumConfig, CurriculumRule

Cell = tuple[str, str | None, str | None]  # (language, category, attack_style)
VERSION = 1


@dataclass
class CellCounts:
    generated: int = 0
    kept: int = 0  # the judge kept it
    accepted: int = 0  # the game put it in the pool
    fooled: int = 0  # kept and misclassified by the round's guardrail


def cell_of(record: Any) -> Cell:
    """The cell of a `PromptRecord` (or anything with language, category and attack_style)."""
    return (record.language, record.category, record.attack_style)


class Archive:
    """Per-cell counts over every round played; `update` once per round."""

    def __init__(self) -> None:
        self.cells: dict[Cell, CellCounts] = {}

    def counts(self, cell: Cell) -> CellCounts:
        """The counts of a cell (zeros for a cell never seen)."""
        return self.cells.get(tuple(cell), CellCounts())

    def update(self, records: Iterable[Any], accepted: Iterable[Any]) -> None:
        """Count a round: `records` every candidate the referee scored, `accepted` those the pool took."""
        for r in records:
            c = self.cells.setdefault(cell_of(r), CellCounts())
            c.generated += 1
            if r.judge is not None and r.judge.keep:
                c.kept += 1
                c.fooled += bool(r.fooled)
        for r in accepted:
            self.cells.setdefault(cell_of(r), CellCounts()).accepted += 1

    def fool_rate(self, cell: Cell) -> float | None:
        """Fooled among kept in a cell; None when nothing was kept there."""
        c = self.counts(cell)
        return c.fooled / c.kept if c.kept else None

    def coverage(self, cells: Sequence[Cell] | None = None, *, min_accepted: int = 1) -> float:
        """Share of `cells` (default: the cells seen) with at least `min_accepted` accepted candidates."""
        cells = list(self.cells) if cells is None else [tuple(c) for c in cells]
        if not cells:
            return 0.0
        return sum(self.counts(c).accepted >= min_accepted for c in cells) / len(cells)

    def rows(self) -> list[dict[str, Any]]:
        """One row per cell for reports, sorted by language, category, attack style (None first)."""
        return [
            {"language": lang, "category": cat, "attack_style": style, **asdict(c), "fool_rate": self.fool_rate(cell)}
            for cell, c in sorted(self.cells.items(), key=lambda kv: tuple((v is not None, v or "") for v in kv[0]))
            for lang, cat, style in [cell]
        ]

    def to_json(self) -> dict[str, Any]:
        rows = [{k: v for k, v in row.items() if k != "fool_rate"} for row in self.rows()]
        return {"version": VERSION, "cells": rows}

    def save(self, path: str | os.PathLike) -> Path:
        return write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Archive:
        """The archive `save` wrote; a malformed file fails naming the file and the cell."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON ({e})") from e
        return cls.from_json(data, path)

    @classmethod
    def from_json(cls, data: Any, path: str | os.PathLike) -> Archive:
        """The archive `to_json` gave (read from `path`, named in errors)."""
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("cells"), list):
            raise ValueError(f"{path}: not an archive of version {VERSION} (a 'version' and a 'cells' list)")
        archive = cls()
        for i, row in enumerate(data["cells"]):
            try:
                cell = (row["language"], row["category"], row["attack_style"])
                counts = CellCounts(**{k: int(row[k]) for k in ("generated", "kept", "accepted", "fooled")})
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}: cell {i} is malformed ({e!r}): {row!r}") from e
            if cell in archive.cells:
                raise ValueError(f"{path}: cell {i} {cell} appears twice")
            archive.cells[cell] = counts
        return archive

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Archive) and self.cells == other.cells


def curriculum_weights(
    archive: Archive, cells: Sequence[Cell], curriculum: CurriculumConfig
) -> dict[Cell, float] | None:
    """The rule's weight for each of `cells` (the sampler's `cells`); None for `uniform`."""
    rule = curriculum.rule
    if rule == CurriculumRule.uniform:
        return None
    out = {}
    for cell in cells:
        c = archive.counts(cell)
        if rule == CurriculumRule.under_covered:
            w = 1.0 / (1.0 + c.accepted)
        elif rule == CurriculumRule.still_fooled:
            w = (c.fooled + 1.0) / (c.kept + 2.0)  # Laplace-smoothed fool rate: 1/2 for an untried cell
        else:
            raise ConfigError(f"game.curriculum.rule: unknown rule {rule!r}")
        out[tuple(cell)] = w ** (1.0 / curriculum.temperature)
    return out
