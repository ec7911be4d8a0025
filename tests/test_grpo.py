"""The advantages TRL's GRPOTrainer actually uses are `duoguard.rewards.group_advantages` of the
rewards it was given, and the rewards duoguard's Generator scores reach TRL unchanged.

One GRPO step on the tiny offline Qwen2 on CPU, with rewards fixed in advance (by a completion's
position in the reward call), so the expected advantages are known before TRL runs. Rewards are
exactly representable in float32 (TRL's reward dtype), so TRL and duoguard see the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from duoguard.rewards import group_advantages

G = 4  # completions per prompt (one GRPO group)
# one GRPO step of 2 prompts x G completions, no reference model, short prompts: fast
ONE_STEP = [
    "output_dir=/tmp/x",
    f"generator.grpo.num_generations={G}",
    "generator.grpo.prompts_per_step=2",
    "generator.grpo.steps_per_round=1",
    "generator.grpo.beta=0.0",
    "generator.sampling.max_new_tokens=4",
    "generator.templates.unsafe='{seed}'",
    "generator.templates.safe='{seed}'",
]
# three groups: spread rewards; equal rewards (zero std: no signal); one unscorable (None) candidate,
# which TRL leaves out of its group's baseline and gives advantage 0, as group_advantages does with NaN
FIXED_REWARDS = [1.0, 2.0, 3.0, 6.0, 0.5, 0.5, 0.5, 0.5, None, -1.0, 2.0, 0.25]
PROMPTS = ["tell me about bread", "the garden is green", "a cake for tea"]


def _as_float(rewards) -> list[float]:
    return [math.nan if r is None else float(r) for r in rewards]


@pytest.fixture
def captured_advantages(monkeypatch):
    """Every `advantages` tensor that GRPOTrainer's rollout hands to its loss, in order."""
    from trl import GRPOTrainer

    captured: list[list[float]] = []
    original = GRPOTrainer._generate_and_score_completions

    def spy(self, inputs):
        out = original(self, inputs)
        captured.append(out["advantages"].detach().float().cpu().tolist())
        return out

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", spy)
    return captured


def _tiny_grpo_args(tmp_path, scale_rewards: str, batch: int):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_generations=G,
        max_completion_length=4,
        max_steps=1,
        learning_rate=1e-4,
        beta=0.0,
        scale_rewards=scale_rewards,
        use_cpu=True,
        bf16=False,
        fp16=False,
        shuffle_dataset=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
    )


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_trl_advantages_equal_group_advantages(tmp_path, tiny_base, captured_advantages, scale):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOTrainer

    from duoguard.models import load_tokenizer

    calls: list[dict] = []

    def fixed_reward(prompts, completions, **kwargs):
        calls.append({"prompts": list(prompts), "n": len(completions)})
        return FIXED_REWARDS[: len(completions)]

    tokenizer = load_tokenizer(tiny_base, trust_remote_code=False, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[fixed_reward],
        args=_tiny_grpo_args(tmp_path, scale, len(FIXED_REWARDS)),
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tokenizer,
    )
    trainer.train()

    # one rollout of every prompt G times, laid out as group_advantages assumes: consecutive groups of G
    assert len(calls) == 1 and calls[0]["n"] == len(FIXED_REWARDS)
    prompts = calls[0]["prompts"]
    assert sorted(set(prompts)) == sorted(PROMPTS)
    assert all(prompts[i] == prompts[i - i % G] for i in range(len(prompts)))

    assert len(captured_advantages) == 1
    trl_adv = np.array(captured_advantages[0])
    expected = group_advantages(_as_float(FIXED_REWARDS), G, scale=scale)
    np.testing.assert_allclose(trl_adv, expected, rtol=1e-5, atol=1e-5)
    assert trl_adv[8] == 0.0 and np.all(trl_adv[4:8] == 0.0)  # unscorable candidate; zero-std group
    if scale == "group":  # by hand: group 1 has mean 3, Bessel std sqrt(14/3); TRL's epsilon is 1e-4
        std = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3)
        np.testing.assert_allclose(trl_adv[:4], np.array([-2, -1, 0, 3]) / (std + 1e-4), rtol=1e-6)
    # TRL's own log of the step holds the same advantages
    np.testing.assert_allclose(list(trainer._logs["advantages"]), expected, rtol=1e-5, atol=1e-5)


def test_generator_scores_reach_trl_unchanged(tmp_path, tiny_base, captured_advantages):
    """duoguard's Generator.play: what `score` returns is what TRL trains on, candidate by candidate."""

    from duoguard.prompts import Condition
    from duoguard.roles.generator import Generator
    from tests.conftest import compose
    from tests.test_pool import records

    cfg = compose(ONE_STEP, "game").generator
    gen = Generator(tiny_base, cfg, work_dir=tmp_path, device="cpu", seed=0)
    conditions = [
        Condition(f"s{i}", f"seed text number {i}", i % 2 == 0, "Violent Crimes", "en", "direct") for i in range(2)
    ]
    seen: list[dict] = []

    def score(texts, conds):
        # known rewards: a fixed function of the candidate's position in the call (float32-exact)
        rewards = [float((3 * i) % 5) - 1.5 for i in range(len(texts))]
        seen.append({"rewards": rewards, "seed_ids": [c["seed_id"] for c in conds]})
        (record,) = records(0, 1)
        return rewards, [replace(record, text=t, reward=r) for t, r in zip(texts, rewards, strict=True)]

    rollout = gen.play(conditions, score, round_index=0)

    assert len(seen) == 1
    rewards, seed_ids = seen[0]["rewards"], seen[0]["seed_ids"]
    assert len(rewards) == 2 * G and sorted(set(seed_ids)) == ["s0", "s1"]
    assert all(seed_ids[i] == seed_ids[i - i % G] for i in range(len(seed_ids)))  # groups share a condition
    assert rollout.stats["grpo_steps"] == 1.0 and len(rollout.records) == 2 * G
    assert [r.reward for r in rollout.records] == rewards
    assert [r.step for r in rollout.records] == [0] * len(rewards)  # the GRPO step, set by the generator

    trainer = gen._trainer
    # per candidate, in order, as TRL logged them
    assert list(trainer._logs["rewards"]["_reward"]) == pytest.approx(rewards, abs=1e-6)
    step = next(h for h in trainer.state.log_history if "reward" in h)
    assert step["reward"] == pytest.approx(float(np.mean(rewards)), abs=1e-5)
    assert step["reward_std"] == pytest.approx(float(np.std(rewards, ddof=1)), abs=1e-5)
    assert rollout.stats["reward_std"] == pytest.approx(float(np.std(rewards, ddof=1)), abs=1e-5)
    np.testing.assert_allclose(captured_advantages[0], group_advantages(rewards, G), rtol=1e-5, atol=1e-5)


def test_bf16_generator_keeps_fp32_master_weights_so_a_tiny_update_moves_them(tmp_path, tiny_base):
    """precision=bf16 computes in bf16 (autocast) but updates fp32 weights: at lr 1e-6 the policy still moves.
    In pure bf16 a weight of ~0.02 has a spacing of ~1e-4, and Adam's ~1e-6 steps round to nothing."""
    import torch

    from duoguard.prompts import Condition
    from duoguard.roles.generator import Generator
    from tests.conftest import compose
    from tests.test_pool import records

    overrides = [*ONE_STEP, "generator.model.precision=bf16", "generator.grpo.learning_rate=1e-6"]
    gen = Generator(tiny_base, compose(overrides, "game").generator, work_dir=tmp_path, device="cpu", seed=0)
    assert gen.dtype == torch.bfloat16
    before = {k: v.detach().clone() for k, v in gen.model.named_parameters() if ".layers." in k}
    conditions = [Condition(f"s{i}", f"seed text {i}", True, "Violent Crimes", "en", "direct") for i in range(2)]

    def score(texts, conds):
        rewards = [float(i % 3) for i in range(len(texts))]  # unequal within each group: a gradient
        (record,) = records(0, 1)
        return rewards, [replace(record, text=t, reward=r) for t, r in zip(texts, rewards, strict=True)]

    gen.play(conditions, score, round_index=0)
    assert gen._trainer.args.bf16  # the compute ran in bf16
    after = dict(gen.model.named_parameters())
    assert all(after[k].dtype == torch.float32 for k in before)
    moved = sum(int((after[k].detach() != v).sum()) for k, v in before.items())
    total = sum(v.numel() for v in before.values())
    assert moved / total > 0.5, f"only {moved} of {total} weights moved at lr 1e-6"


def test_attention_kernel_is_config(tmp_path, tiny_base):
    """generator.model.attn_implementation reaches the model (eager avoided NaN gradients of bf16 GRPO on an
    H200, BENCHMARKS.md); a kernel transformers does not know, and the guardrail (not wired), are refused."""
    from duoguard.config import ConfigError
    from duoguard.roles.generator import Generator
    from tests.conftest import compose

    cfg = compose([*ONE_STEP, "generator.model.attn_implementation=eager"], "game").generator
    gen = Generator(tiny_base, cfg, work_dir=tmp_path, device="cpu", seed=0)
    assert gen.model.config._attn_implementation == "eager"
    default = Generator(tiny_base, compose(ONE_STEP, "game").generator, work_dir=tmp_path / "d", device="cpu")
    assert default.model.config._attn_implementation == "sdpa"
    with pytest.raises(ConfigError, match=r"generator\.model\.attn_implementation: must be one of"):
        compose([*ONE_STEP, "generator.model.attn_implementation=fast"], "game")
    with pytest.raises(ConfigError, match=r"guardrail\.model\.attn_implementation: is not applied"):
        compose([*ONE_STEP, "guardrail.model.attn_implementation=eager"], "game")
