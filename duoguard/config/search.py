"""What hyperparameter sweeps optimise, and the ranges they search (conf/sweep/*_optuna.yaml read them)."""

from __future__ import annotations

from dataclasses import dataclass

from duoguard.config.base import Section, check, setting


def _check_range(values: list[float], key: str) -> None:
    check(
        len(values) == 2 and 0 < values[0] < values[1],
        key,
        f"must be [low, high] with 0 < low < high, got {list(values)}",
    )


@dataclass
class SearchConfig(Section):
    """duoguard-pipeline returns, for a sweeper to minimise,
        ASR after SafeDPO + over_refusal_weight * over-refusal after + heldout_f1_weight * (1 - game held-out F1),
    so a target that refuses everything does not win a sweep. Each experiment preset sets learning-rate ranges
    sized to its models (conf/experiment/)."""

    over_refusal_weight: float = setting(
        1.0, "weight of the over-refusal rate (safe prompts refused, after SafeDPO) in the pipeline's objective"
    )
    heldout_f1_weight: float = setting(
        0.0, "weight of 1 - the game guardrail's last held-out F1 in the pipeline's objective"
    )
    safedpo_learning_rate: list[float] = setting(
        factory=lambda: [1.0e-4, 3.0e-3], help="[low, high] of safedpo.learning_rate (sweep=pipeline_optuna, log scale)"
    )
    guardrail_learning_rate: list[float] = setting(
        factory=lambda: [3.0e-4, 1.0e-2],
        help="[low, high] of guardrail.train.learning_rate (sweep=game_optuna, log scale)",
    )

    def check(self, key: str) -> None:
        check(self.over_refusal_weight >= 0, f"{key}.over_refusal_weight", "must be >= 0")
        check(self.heldout_f1_weight >= 0, f"{key}.heldout_f1_weight", "must be >= 0")
        _check_range(self.safedpo_learning_rate, f"{key}.safedpo_learning_rate")
        _check_range(self.guardrail_learning_rate, f"{key}.guardrail_learning_rate")
