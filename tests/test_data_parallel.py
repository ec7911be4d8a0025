"""Data-parallel ranks in the game (generator.num_workers, guardrail.num_workers, runtime=ray): each generator
rank samples and scores its share of every GRPO step, gradients are averaged over ranks, results merge
deterministically, and a ZeRO-3 game resumes from its round checkpoint exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from duoguard.config import ConfigError
from tests.conftest import compose

FAST = [
    "runtime=ray",
    "generator.num_workers=2",
    "game.rounds=1",
    "generator.grpo.steps_per_round=2",
    "game.warmup_guardrail=false",
    "game.guardrail_epochs=1",
    "data.response_examples=false",
    "logger=none",
    "progress=false",
]


def test_data_parallel_settings_are_checked_before_anything_starts():
    for role in ("generator", "guardrail"):
        with pytest.raises(
            ConfigError, match=rf"{role}\.num_workers: is 2: in the game, a role's ranks need runtime=ray"
        ):
            compose([f"{role}.num_workers=2", "output_dir=/tmp/x"], "game")  # runtime=local
    with pytest.raises(ConfigError, match=r"generator\.num_workers.*must divide a step's completions.*= 16"):
        compose(["runtime=ray", "generator.num_workers=3", "output_dir=/tmp/x"], "game")  # 4 x 4 completions


def test_rollouts_from_ranks_merge_by_step_then_rank():
    from duoguard.roles.generator import Rollout
    from tests.test_pool import records

    def rollout(texts_and_steps, stats):
        return Rollout([replace(r, text=t, step=s) for r, (t, s) in zip(records(1, 2), texts_and_steps)], stats)

    rank0 = rollout([("a", 0), ("c", 1)], {"kl": 0.1, "seconds_scoring": 1.0})
    rank1 = rollout([("b", 0), ("d", 1)], {"kl": 0.2, "seconds_scoring": 3.0})
    merged = Rollout.merged([rank0, rank1])
    assert [r.text for r in merged.records] == ["a", "b", "c", "d"]
    assert merged.stats["kl"] == 0.1  # TRL gathers its metrics over ranks: rank 0 logs them
    assert merged.stats["seconds_scoring"] == 3.0  # the slowest rank


@pytest.mark.slow
def test_a_zero3_game_on_ray_ranks_resumed_from_its_round_checkpoint_plays_the_same_round(tmp_path, cache_dir):
    """Generator and guardrail each as 2 Ray ranks under DeepSpeed ZeRO-3. The game is played for two rounds;
    then a copy of its run, cut back to the round-1 checkpoint (DeepSpeed's own checkpoint for the
    generator's optimizer, gathered full weights for both), plays round 2 again: same candidates, same
    weights."""
    import json
    import shutil

    from duoguard.data.pool import Pool
    from duoguard.factory import model_path
    from duoguard.game import play_game
    from tests.conftest import CONF_DIR
    from tests.test_distributed import max_apart, saved_weights

    zero3 = CONF_DIR / "deepspeed" / "zero3.json"
    overrides = [
        *FAST,
        "game.rounds=2",
        "generator.grpo.steps_per_round=1",
        "guardrail.num_workers=2",
        f"generator.grpo.deepspeed={zero3}",
        f"guardrail.train.deepspeed={zero3}",
    ]
    straight = play_game(compose([*overrides, f"output_dir={tmp_path / 'a'}"], "game"))
    assert [h["round"] for h in straight["history"]] == [1, 2]
    # 4 prompts x G=4: each rank generates and scores only its half of the step, so the full count means both
    # ranks' candidates were merged (the game also checked, after every update, that each role's ranks hold
    # identical full weights, else RoleError)
    assert [h["generated"] for h in straight["history"]] == [16, 16]
    assert (tmp_path / "a" / "checkpoints" / "round_0001" / "generator" / "deepspeed" / "latest").is_file()

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for name in ("generator", "guardrail"):  # the final exports: written again when the game ends
        shutil.rmtree(tmp_path / "b" / name)
    (tmp_path / "b" / "manifest.json").unlink()
    (tmp_path / "b" / "checkpoints" / "latest.json").write_text(json.dumps({"round": 1, "dir": "round_0001"}))
    resumed = play_game(compose([*overrides, f"output_dir={tmp_path / 'b'}"], "game"))
    assert [h["round"] for h in resumed["history"]] == [1, 2]

    rows = lambda d: [(r.id, r.text, round(r.guardrail_score, 5)) for r in Pool(tmp_path / d / "pool").records()]
    assert rows("b") == rows("a") and rows("a")
    for role in ("generator", "guardrail"):
        assert max_apart(saved_weights(tmp_path / "a" / role), saved_weights(tmp_path / "b" / role)) == 0.0, role
    generator_model = compose([*overrides, f"output_dir={tmp_path / 'a'}"], "game").generator.model
    base = saved_weights(Path(model_path(generator_model, str(cache_dir))))
    assert max_apart(base, saved_weights(tmp_path / "a" / "generator")) > 0  # the synced policy moved
