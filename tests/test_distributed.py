"""Trained stages as process groups on CPU: 2 gloo ranks started by torch's elastic launcher (the code
behind torchrun), with DeepSpeed ZeRO-2 and ZeRO-3 (its CPU accelerator falls back to gloo without
oneCCL), each compared with one rank of the same global batch in this process.

The two runs see the same examples in each optimizer step (the launcher's sampler hands each rank
every other micro-batch), so loss and weights agree up to float summation order: the tolerance below.
`pytest -k zero3` selects the ZeRO-3 tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CONF_DIR, compose
from tests.test_grpo import ONE_STEP, G

pytestmark = pytest.mark.slow

LOSS_RTOL = 1e-4  # summation order across ranks and DeepSpeed's reduction buckets
WEIGHT_ATOL = 1e-5


def guardrail_cfg(tmp_path, name: str, *extra: str):
    return compose(
        [
            f"output_dir={tmp_path / name}",
            "guardrail.train.global_batch_size=8",
            "guardrail.train.per_device_batch_size=2",
            "guardrail.train.max_steps=3",
            "guardrail.train.learning_rate=1e-3",
            "guardrail.train.logging_steps=1",
            "progress=false",
            *extra,
        ]
    )


def train_stage(cfg, ranks: int, deepspeed: bool):
    """The guardrail stage's training (every rank trains, rank 0 saves): stats and saved weights."""
    from transformers import AutoModelForSequenceClassification

    from duoguard.distributed import run_ranks
    from duoguard.factory import build_taxonomy, load_training_samples, split_with_responses
    from duoguard.stages.guardrail import train_and_save

    taxonomy = build_taxonomy(cfg)
    train, _ = split_with_responses(load_training_samples(cfg, taxonomy), cfg)
    path = Path(cfg.output_dir) / "guardrail"
    stats = run_ranks(train_and_save, cfg, taxonomy, train, path, ranks=ranks, deepspeed=deepspeed, name="test")
    return stats, AutoModelForSequenceClassification.from_pretrained(path).state_dict()


@pytest.fixture(scope="module")
def one_rank_guardrail(tmp_path_factory, tiny_base):
    """The guardrail stage on one rank, without DeepSpeed: what every DeepSpeed stage is compared with."""
    return train_stage(guardrail_cfg(tmp_path_factory.mktemp("guardrail"), "one"), ranks=1, deepspeed=False)


@pytest.mark.parametrize("stage", ["zero2", "zero3", "zero3_offload"])  # offload: optimizer and weights on CPU
def test_guardrail_training_on_two_ranks_with_deepspeed_matches_one_rank(
    tmp_path, tiny_base, one_rank_guardrail, stage
):
    from transformers import AutoModelForCausalLM

    one, one_weights = one_rank_guardrail
    cfg = guardrail_cfg(tmp_path, "two", f"guardrail.train.deepspeed={CONF_DIR / 'deepspeed' / f'{stage}.json'}")
    two, two_weights = train_stage(cfg, ranks=2, deepspeed=True)
    assert one["train_steps"] == two["train_steps"] == 3
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=LOSS_RTOL)
    apart = max((one_weights[k] - v).abs().max().item() for k, v in two_weights.items())
    assert apart <= WEIGHT_ATOL, f"{stage}: 2-rank weights differ from 1-rank by {apart:g}"
    base = AutoModelForCausalLM.from_pretrained(tiny_base).state_dict()
    trained = max((two_weights[k] - base[k]).abs().max().item() for k in base if k in two_weights)
    assert trained > 100 * WEIGHT_ATOL  # both trained: the agreement is not of two untouched models
    assert all(v.numel() > 0 for v in two_weights.values())  # a full checkpoint, not ZeRO-3's empty shards


def fail_on_rank_one(how: str) -> None:
    """Rank 1 fails while rank 0 waits in a collective that rank 1 never joins."""
    import os

    import torch.distributed as dist

    from duoguard.distributed import rank
    from duoguard.errors import UserError

    if rank() == 1:
        if how == "raise":
            raise UserError("data.train_files[0]: bad row at line 3")
        os._exit(3)  # dies without a word, as a process killed for host memory would
    dist.barrier()


@pytest.mark.parametrize("how", ["raise", "die"])
def test_a_failing_rank_stops_the_group_and_its_error_reaches_the_caller(how):
    from duoguard.distributed import RankFailed, run_ranks
    from duoguard.errors import UserError

    expected = UserError if how == "raise" else RankFailed
    with pytest.raises(expected) as caught:
        run_ranks(fail_on_rank_one, how, ranks=2, name="guardrail training")
    if how == "raise":  # the rank's own exception, as raised, with where it was raised
        assert "bad row at line 3" in str(caught.value)
        assert "raised in guardrail training, rank 1 of 2" in caught.value.__notes__
    else:
        assert "guardrail training: rank 1 of 2 died with exit code 3" in str(caught.value)


def safedpo_cfg(tmp_path, name: str, *extra: str):
    return compose(
        [
            f"output_dir={tmp_path / name}",
            "safedpo.global_batch_size=4",
            "safedpo.per_device_batch_size=1",
            "safedpo.learning_rate=1e-3",
            "safedpo.warmup_ratio=0",
            "safedpo.lr_scheduler=constant",
            "safedpo.max_length=64",
            "safedpo.logging_steps=1",
            "safedpo.delta=5",
            "progress=false",
            *extra,
        ],
        "safedpo",
    )


def train_target_stage(cfg, base: str, ranks: int, deepspeed: bool):
    """The SafeDPO stage's training (every rank trains, rank 0 saves): stats and saved weights."""
    from transformers import AutoModelForCausalLM

    from duoguard.distributed import run_ranks
    from duoguard.stages.safedpo import train_target

    pairs = [
        {
            "prompt": f"request number {i}",
            "chosen": "I can't help with that.",
            "rejected": f"Sure, step {i} is this.",
            "chosen_unsafe": False,
            "rejected_unsafe": True,
        }
        for i in range(8)
    ]
    stats = run_ranks(train_target, cfg, pairs, base, cfg.output_dir, ranks=ranks, deepspeed=deepspeed, name="test")
    return stats, AutoModelForCausalLM.from_pretrained(Path(cfg.output_dir) / "target").state_dict()


@pytest.fixture(scope="module")
def one_rank_safedpo(tmp_path_factory, tiny_base):
    """The SafeDPO stage on one rank, without DeepSpeed: what every DeepSpeed stage is compared with."""
    return train_target_stage(
        safedpo_cfg(tmp_path_factory.mktemp("safedpo"), "one"), tiny_base, ranks=1, deepspeed=False
    )


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_safedpo_on_two_ranks_with_deepspeed_matches_one_rank(tmp_path, tiny_base, one_rank_safedpo, stage):
    from transformers import AutoModelForCausalLM

    one, one_weights = one_rank_safedpo
    cfg = safedpo_cfg(tmp_path, "two", f"safedpo.deepspeed={CONF_DIR / 'deepspeed' / f'{stage}.json'}")
    two, two_weights = train_target_stage(cfg, tiny_base, ranks=2, deepspeed=True)
    assert one["train_steps"] == two["train_steps"] == 2 * cfg.safedpo.epochs  # 8 pairs, 4 per optimizer step
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=LOSS_RTOL)
    assert two["safety/margin"] == pytest.approx(5.0)
    apart = max((one_weights[k] - v).abs().max().item() for k, v in two_weights.items())
    assert apart <= WEIGHT_ATOL, f"{stage}: 2-rank weights differ from 1-rank by {apart:g}"
    base = AutoModelForCausalLM.from_pretrained(tiny_base).state_dict()
    assert max((two_weights[k] - base[k]).abs().max().item() for k in base) > 100 * WEIGHT_ATOL


def generator_cfg(*extra: str):
    """One GRPO step of 2 prompts x G completions: each of 2 ranks' share of a step is one whole group."""
    return compose([*ONE_STEP, "generator.grpo.learning_rate=1e-3", *extra], "game").generator


def grpo_rounds(base: str, cfg, work: str, resume: bool = True) -> dict:
    """In each rank: two GRPO rounds straight through and, with `resume`, the same two rounds with a
    checkpoint and a new generator (a resumed game) between them. Rank 0 saves the weights of both;
    returns every rank's weight checksum, the completions and the rewards scored."""
    import torch.distributed as dist

    from duoguard.prompts import Condition
    from duoguard.roles.generator import Generator
    from tests.test_pool import records

    conditions = [Condition(f"s{i}", f"seed text {i}", True, "Violent Crimes", "en", "direct") for i in range(2)]
    scored: list[tuple[str, float]] = []

    def score(texts, conds):  # by position within each group: a gradient even when a group's texts agree
        rewards = [float(i % G) for i in range(len(texts))]
        scored.extend(zip(texts, rewards, strict=True))
        (record,) = records(0, 1)
        return rewards, [record] * len(texts)

    work = Path(work)
    straight = Generator(base, cfg, work_dir=work / "a", device="cpu", seed=0, reference_path=base)
    stats = [straight.play(conditions, score, r).stats for r in range(2)]
    straight_scored = list(scored)
    straight.save(work / "straight")
    sums = [straight.checksum()]
    if resume:
        first = Generator(base, cfg, work_dir=work / "b", device="cpu", seed=0, reference_path=base)
        first.play(conditions, score, 0)
        first.save(work / "round_0")
        resumed = Generator(str(work / "round_0"), cfg, work_dir=work / "c", device="cpu", seed=0, reference_path=base)
        resumed.play(conditions, score, 1)
        resumed.save(work / "resumed")
    if dist.is_initialized():  # every rank's checksum, and every rank's share of the rollouts in rank order
        sums, shares = [None] * dist.get_world_size(), [None] * dist.get_world_size()
        dist.all_gather_object(sums, straight.checksum())
        dist.all_gather_object(shares, straight_scored)
        straight_scored = [x for share in shares for x in share]
    return {"stats": stats, "checksums": sums, "scored": straight_scored}


def saved_weights(folder: Path) -> dict:
    """Every tensor of a saved checkpoint, as stored."""
    from safetensors.torch import load_file

    return load_file(Path(folder) / "model.safetensors")


def max_apart(a: dict, b: dict) -> float:
    """The largest difference between two checkpoints' weights (which must hold the same tensors)."""
    assert a.keys() == b.keys()
    return max((a[k] - v).abs().max().item() for k, v in b.items())


def test_a_grpo_round_on_two_ranks_sees_the_global_batch_of_one_rank(tmp_path, tiny_base):
    """Greedy decoding, so 1 and 2 ranks generate the same completions: the step sees the same 8 candidates
    and rewards, split 4 + 4. (Weights are compared between 2-rank runs below: with greedy decoding a
    group's completions agree and its policy gradient is rounding noise, which Adam would amplify.)"""
    from duoguard.distributed import run_ranks

    greedy = "generator.sampling.top_k=1"
    one = grpo_rounds(tiny_base, generator_cfg(greedy), str(tmp_path / "one"), resume=False)
    cfg = generator_cfg(greedy, f"generator.grpo.deepspeed={CONF_DIR / 'deepspeed' / 'zero2.json'}")
    two = run_ranks(grpo_rounds, tiny_base, cfg, str(tmp_path / "two"), False, ranks=2, deepspeed=True, name="test")
    assert len(one["scored"]) == 2 * 2 * G  # two rounds of 2 prompts x G
    assert sorted(two["scored"]) == sorted(one["scored"])
    for a, b in zip(one["stats"], two["stats"], strict=True):
        assert b["reward_std"] == pytest.approx(a["reward_std"], rel=LOSS_RTOL)
        assert b["policy_loss"] == pytest.approx(a["policy_loss"], abs=1e-6)


@pytest.fixture(scope="module")
def plain_data_parallel(tmp_path_factory, tiny_base):
    """Two sampled GRPO rounds on 2 ranks without DeepSpeed: what the ZeRO runs are compared with."""
    from duoguard.distributed import run_ranks

    folder = tmp_path_factory.mktemp("ddp")
    return run_ranks(grpo_rounds, tiny_base, generator_cfg(), str(folder), False, ranks=2, name="test"), folder


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_grpo_rounds_with_deepspeed_match_plain_data_parallel_and_resume_exactly(
    tmp_path, tiny_base, plain_data_parallel, stage
):
    """Two sampled GRPO rounds on 2 ranks: DeepSpeed (ZeRO-2 or ZeRO-3, a new engine each round that loads the
    last one's checkpoint) against plain data parallelism (one optimizer kept across rounds), which sample the
    same completions; then a game resumed from the round-0 checkpoint ends with the same weights."""
    from duoguard.distributed import run_ranks

    plain, ddp = plain_data_parallel
    cfg = generator_cfg(f"generator.grpo.deepspeed={CONF_DIR / 'deepspeed' / f'{stage}.json'}")
    zero = run_ranks(grpo_rounds, tiny_base, cfg, str(tmp_path / stage), ranks=2, deepspeed=True, name="test")
    assert sorted(zero["scored"]) == sorted(plain["scored"])  # the same rollouts
    assert len({text for text, _ in zero["scored"]}) > 2  # sampled: groups with different completions
    for a, b in zip(plain["stats"], zero["stats"], strict=True):
        assert b["policy_loss"] == pytest.approx(a["policy_loss"], rel=LOSS_RTOL, abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)
    assert len(zero["checksums"]) == 2 and zero["checksums"][0] == zero["checksums"][1]  # full weights, both ranks
    straight = saved_weights(tmp_path / stage / "straight")
    apart = max_apart(saved_weights(ddp / "straight"), straight)
    assert apart <= WEIGHT_ATOL, f"{stage}: weights differ from plain data parallel by {apart:g} after two rounds"
    # the resumed game continues from the round checkpoint's weights and optimizer state
    assert max_apart(straight, saved_weights(tmp_path / stage / "resumed")) == 0.0
    assert (tmp_path / stage / "round_0" / "deepspeed" / "latest").is_file()
    assert max_apart(saved_weights(Path(tiny_base)), straight) > 100 * WEIGHT_ATOL


def test_target_answers_on_two_ranks_come_back_whole_and_in_order(tmp_path, tiny_base):
    """The target evaluation's answers from 2 ranks: rank r answers prompts[r::2], sampled from seed + r, and
    every answer comes back to its prompt's place, as answering those shares in one process gives them."""
    from duoguard.distributed import run_ranks
    from duoguard.roles.target import Target
    from duoguard.stages.target_eval import answer_share

    cfg = compose(["output_dir=/tmp/x", "target.sampling.max_new_tokens=6", "progress=false"], "eval")
    prompts = [f"how do I do thing number {i}?" for i in range(5)]  # odd: rank 0 answers 3, rank 1 answers 2
    calls = [(prompts, 2), (prompts[:3], 1)]
    two = run_ranks(answer_share, tiny_base, cfg, calls, ranks=2, name="test")
    target = Target(tiny_base, cfg.target, device="cpu")
    for (asked, n), got in zip(calls, two, strict=True):
        expected: list = [None] * len(asked)
        for r in (0, 1):
            expected[r::2] = target.answer(asked[r::2], n=n, seed=r)
        assert got == expected
    assert [len(x) for x in two[0]] == [2] * 5 and len({a for x in two[0] for a in x}) > 2  # sampled answers
