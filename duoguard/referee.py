"""The referee: turns the generator's candidates into rewards and `PromptRecord` records, using the
judge and the guardrail.

It runs wherever the generator runs (in its Ray actor, or in-process) and reaches the judge and
the frozen guardrail through role handles, so the same code scores in both runtimes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from duoguard.config import RewardConfig
from duoguard.data.record import PromptRecord
from duoguard.rewards import fooled, game_rewards, intended_probability
from duoguard.roles.judge import Candidate

if TYPE_CHECKING:  # the handles are typed as the roles they reach (duoguard/runtime/handles.py)
    from duoguard.roles.guardrail import Guardrail
    from duoguard.roles.judge import Judge


class Referee:
    def __init__(
        self, guardrail: Guardrail, judge: Judge, reward_cfg: RewardConfig, threshold: float, round_index: int
    ):
        self.guardrail, self.judge = guardrail, judge
        self.reward_cfg = reward_cfg
        self.threshold = threshold
        self.round_index = round_index

    def __call__(self, texts: list[str], conditions: list[dict[str, Any]]) -> tuple[list[float], list[PromptRecord]]:
        candidates = [
            Candidate(t, c["seed_text"], bool(c["intended_unsafe"]), c["language"], c["category"])
            for t, c in zip(texts, conditions, strict=True)
        ]
        verdicts = self.judge.judge(candidates)
        scores = np.asarray(self.guardrail.unsafe_scores(texts), dtype=np.float64)
        intended = np.array([c.intended_unsafe for c in candidates])
        keep = np.array([v.keep for v in verdicts])
        r = self.reward_cfg
        rewards = game_rewards(
            intended_probability(scores, intended),
            keep,
            kind=r.fool.value,
            fool_weight=r.fool_weight,
            max_fool=r.max_fool,
            reject_penalty=r.reject_penalty,
        )
        was_fooled = fooled(scores, intended, self.threshold)
        records = [
            PromptRecord(
                text=c.text,
                language=c.language,
                category=c.category,
                attack_style=cond["attack_style"],
                unsafe=c.intended_unsafe,
                seed_id=cond["seed_id"],
                family=cond.get("family") or cond["seed_id"],
                round=self.round_index,
                guardrail_score=float(scores[i]),
                fooled=bool(was_fooled[i]),
                judge=v,
                reward=float(rewards[i]),
            )
            for i, (c, cond, v) in enumerate(zip(candidates, conditions, verdicts, strict=True))
        ]
        return rewards.tolist(), records
