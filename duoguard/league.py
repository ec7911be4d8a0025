"""The league: earlier rounds' guardrails kept as checkpoints, and the fool-rate matrix they fill.

M[i, j] = the share of generator round i's accepted candidates that guardrail j misclassifies (its
decision at the threshold differs from the candidate's intended label); guardrail 0 is the warmed-up
one, guardrail j the one after round j's update. Round i fills, at no extra cost, M[i, i-1] (the
guardrail the generator played against, from the rollout's scores) and M[i, i] (the same guardrail
after learning from the round); with a league of `size` earlier guardrails it also fills

    row i:     M[i, j] for the `size` rounds j < i-1 kept in <game>/league/round_NNNN/
    column i:  M[k, i] for every earlier round k (the newest guardrail on the pool's older shards)

and reports

    exploitability = M[i, i]       the newest generator's fool rate against the newest guardrail
    forgetting     = mean over k < i of max(0, M[k, i] - M[k, k])
                     how much worse the newest guardrail does on round k than right after learning it
    old_rounds_accuracy = 1 - mean over k < i of M[k, i]

The entries live in each round's metrics as `league/g{i}_d{j}` (a resumed game reads them back from
the checkpoint's history), so the matrix is rebuilt from metrics.jsonl alone (`matrix`).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from duoguard.atomic import atomic_dir, link_or_copy

LEAGUE_DIR = "league"
_KEY = re.compile(r"^league/g(\d+)_d(\d+)$")
_FOLDER = re.compile(r"^round_(\d{4})$")


def matrix_key(generator_round: int, guardrail_round: int) -> str:
    return f"league/g{generator_round}_d{guardrail_round}"


def fool_rate(scores: Sequence[float], unsafe: Sequence[bool], threshold: float) -> float | None:
    """Share of candidates whose decision (score > threshold) differs from their intended label."""
    if len(scores) == 0:
        return None
    return float(np.mean((np.asarray(scores, dtype=np.float64) > threshold) != np.asarray(unsafe, dtype=bool)))


def matrix(history: Iterable[Mapping[str, Any]]) -> dict[tuple[int, int], float]:
    """{(generator round, guardrail round): fool rate} from every round's metrics."""
    out: dict[tuple[int, int], float] = {}
    for row in history:
        for key, value in row.items():
            m = _KEY.match(key)
            if m and value is not None:
                out[(int(m.group(1)), int(m.group(2)))] = float(value)
    return out


def forgetting(m: Mapping[tuple[int, int], float], r: int) -> float | None:
    """Mean over earlier rounds k of how much more the newest guardrail r is fooled by round k's
    candidates than guardrail k was right after learning them (0 = nothing forgotten)."""
    drops = [max(0.0, m[(k, r)] - m[(k, k)]) for k in range(1, r) if (k, r) in m and (k, k) in m]
    return float(np.mean(drops)) if drops else None


def old_rounds_accuracy(m: Mapping[tuple[int, int], float], r: int) -> float | None:
    """The newest guardrail r's accuracy on every earlier round's accepted candidates (mean over rounds)."""
    rates = [m[(k, r)] for k in range(1, r) if (k, r) in m]
    return 1.0 - float(np.mean(rates)) if rates else None


def summary(history: Sequence[Mapping[str, Any]], r: int) -> dict[str, float | None]:
    """Round r's exploitability, forgetting and accuracy on old rounds, from the matrix so far."""
    m = matrix(history)
    return {
        "exploitability": m.get((r, r)),
        "forgetting": forgetting(m, r),
        "old_rounds_accuracy": old_rounds_accuracy(m, r),
    }


class League:
    """Earlier rounds' guardrail checkpoints under `<game>/league/round_NNNN/` (hard links to the round
    checkpoints' files where the filesystem allows, so keeping them costs no extra disk)."""

    def __init__(self, folder: str | Path, size: int):
        self.folder, self.size = Path(folder), size

    def rounds(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _FOLDER.match(p.name)) and p.is_dir())

    def path(self, r: int) -> Path:
        return self.folder / f"round_{r:04d}"

    def add(self, r: int, guardrail_dir: str | Path) -> None:
        """Keep round r's guardrail (a checkpoint folder); keep only what the next rounds score against."""
        if self.size <= 0:
            return

        atomic_dir(
            self.path(r),
            lambda tmp: shutil.copytree(guardrail_dir, tmp, copy_function=link_or_copy, dirs_exist_ok=True),
            replace=True,
        )
        for old in self.rounds()[: -(self.size + 1)]:  # round r+1 scores rounds r-size .. r-1
            shutil.rmtree(self.path(old), ignore_errors=True)

    def members(self, r: int) -> list[tuple[int, Path]]:
        """The league round r plays against: the `size` newest kept rounds before r-1 (round r-1's
        guardrail already scored the round during play)."""
        earlier = [j for j in self.rounds() if j < r - 1]
        return [(j, self.path(j)) for j in earlier[-self.size :]] if self.size > 0 else []

    def truncate(self, last_round: int) -> None:
        """Forget guardrails of rounds after `last_round` (a resumed game replays them)."""
        for j in self.rounds():
            if j > last_round:
                shutil.rmtree(self.path(j), ignore_errors=True)
