"""Data-parallel generator ranks (generator.num_workers, runtime=ray): each rank samples and scores
its share of every GRPO step, gradients are averaged over ranks, results merge deterministically."""

from __future__ import annotations

from dataclasses import replace

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


@pytest.mark.slow
def test_two_generator_ranks_play_one_game_in_sync_and_deterministically(tmp_path, cache_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from duoguard.data.pool import Pool
    from duoguard.factory import model_path
    from duoguard.game import play_game

    runs = [play_game(compose([*FAST, f"output_dir={tmp_path / name}"], "game")) for name in ("a", "b")]
    first = runs[0]["history"][0]
    # 4 prompts x G=4 x 2 steps: each rank scores only its half of every step, so the
    # full count means both ranks' candidates were merged
    assert first["generated"] == 32
    assert first["gen/grpo_steps"] == 2
    # the game checks after every round that the ranks hold identical weights (else RoleError);
    # here: the synced policy did move away from the base model
    cfg = compose([*FAST, f"output_dir={tmp_path / 'a'}"], "game")
    base = AutoModelForCausalLM.from_pretrained(model_path(cfg.generator.model, cfg.cache_dir))
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "generator")
    moved = sum((p - q).abs().sum().item() for p, q in zip(trained.parameters(), base.parameters(), strict=True))
    assert moved > 0 and all(torch.isfinite(p).all() for p in trained.parameters())
    # same seed, same game: the merge order does not depend on which rank finished first
    rows = lambda d: [(r.id, r.text, round(r.guardrail_score, 6)) for r in Pool(tmp_path / d / "pool").records()]
    assert rows("a") == rows("b") and rows("a")
    assert runs[0]["history"][0]["mean_reward"] == pytest.approx(runs[1]["history"][0]["mean_reward"])


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
