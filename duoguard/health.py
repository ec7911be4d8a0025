"""The reward-hacking alarm: the generator's fooling reward rises while the checks of its candidates'
quality fall, over the last `game.reward_hacking.rounds` rounds.

Rewarded quality is the fooling reward of the kept candidates (`mean_fool_reward`); the checks are the
judge's keep rate, the label check's pass rate (`label_pass_rate`, when a label rule runs) and the LLM
judge's mean rating (`judge/mean_rating`, when it rates). A generator that earns more by writing
candidates the judge is less sure about is being paid for the wrong thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from duoguard.config import RewardHackingConfig

REWARD = "mean_fool_reward"
CHECKS = ("keep_rate", "label_pass_rate", "judge/mean_rating")


def _change(history: Sequence[Mapping[str, Any]], key: str, rounds: int) -> float | None:
    a, b = history[-1 - rounds].get(key), history[-1].get(key)
    return None if a is None or b is None else float(b) - float(a)


def reward_hacking_alarm(history: Sequence[Mapping[str, Any]], cfg: RewardHackingConfig) -> str | None:
    """A message naming what rose and what fell, or None."""
    if not cfg.enabled or len(history) <= cfg.rounds:
        return None
    rose = _change(history, REWARD, cfg.rounds)
    if rose is None or rose <= cfg.min_change:
        return None
    fell = {k: d for k in CHECKS if (d := _change(history, k, cfg.rounds)) is not None and d < -cfg.min_change}
    if not fell:
        return None
    first, last = history[-1 - cfg.rounds].get("round"), history[-1].get("round")
    falls = ", ".join(f"{k} {history[-1 - cfg.rounds][k]:.3f} -> {history[-1][k]:.3f}" for k in fell)
    return (
        f"from round {first} to {last} the fooling reward of kept candidates rose "
        f"{history[-1 - cfg.rounds][REWARD]:.3f} -> {history[-1][REWARD]:.3f} while {falls} fell: the generator "
        "may be paid for candidates the judge trusts less (reward hacking)"
    )
