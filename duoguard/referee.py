"""The referee: turns the generator's candidates into rewards and `PromptRecord` records, using the
judge and the guardrail.

It runs wherever the generator runs (in its Ray actor, or in-process) and reaches the judge and
the frozen guardrail through role handles, so the same code scores in both runtimes.

With `game.reward.novelty.weight` > 0 a kept candidate's reward also gets weight * its novelty
(duoguard/novelty.py): distance from the pool's texts (given at construction, their n-gram sets built
once) and from the other candidates written for the same condition (its GRPO group); with
`game.reward.novelty.embeddings=guardrail` also by the guardrail's embeddings (`Guardrail.embed`, the
pool's computed once per referee, on its first call). A record keeps its novelty in
`provenance["novelty"]`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from duoguard.config import NoveltyEmbeddings, RewardConfig
from duoguard.data.record import PromptRecord
from duoguard.novelty import NgramIndex, group_ids, novelty
from duoguard.rewards import add_novelty, fooled, game_rewards, intended_probability
from duoguard.roles.judge import Candidate

if TYPE_CHECKING:  # the handles are typed as the roles they reach (duoguard/runtime/handles.py)
    from duoguard.roles.guardrail import Guardrail
    from duoguard.roles.judge import Judge


class Referee:
    def __init__(
        self,
        guardrail: Guardrail,
        judge: Judge,
        reward_cfg: RewardConfig,
        threshold: float,
        round_index: int,
        *,
        pool_texts: Iterable[str] = (),
    ):
        """pool_texts: the texts novelty is measured against (the pool's accepted prompts); unused when
        the novelty term is off."""
        self.guardrail, self.judge = guardrail, judge
        self.reward_cfg = reward_cfg
        self.threshold = threshold
        self.round_index = round_index
        self.novelty_cfg = reward_cfg.novelty
        self.pool_texts = list(pool_texts) if self.novelty_cfg.weight > 0 else []
        self._pool_ngrams = NgramIndex.build(self.pool_texts, self.novelty_cfg.ngram)
        self._pool_embeddings: np.ndarray | None = None  # Guardrail.embed(pool_texts), on the first call needing them

    @property
    def uses_embeddings(self) -> bool:
        return self.novelty_cfg.weight > 0 and self.novelty_cfg.embeddings == NoveltyEmbeddings.guardrail

    def candidate_novelty(self, texts: list[str], conditions: list[dict[str, Any]]) -> np.ndarray:
        """Each candidate's novelty in [0, 1] against the pool and its group (the candidates of `texts`
        with an equal condition dict: duoguard/novelty.py, "Groups")."""
        vectors = None
        if self.uses_embeddings:
            if self._pool_embeddings is None and self.pool_texts:
                self._pool_embeddings = np.asarray(self.guardrail.embed(self.pool_texts))
            vectors = np.asarray(self.guardrail.embed(texts))
        return novelty(
            texts, group_ids(conditions), self._pool_ngrams, embeddings=vectors, pool_embeddings=self._pool_embeddings
        )

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
        novel = None
        if r.novelty.weight > 0:  # off: the rewards are exactly the fooling rewards
            novel = self.candidate_novelty(texts, conditions)
            rewards = add_novelty(rewards, keep, novel, r.novelty.weight)
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
                provenance={} if novel is None else {"novelty": float(novel[i])},
            )
            for i, (c, cond, v) in enumerate(zip(candidates, conditions, verdicts, strict=True))
        ]
        return rewards.tolist(), records
