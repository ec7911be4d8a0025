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


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_guardrail_training_on_two_ranks_with_deepspeed_matches_one_rank(tmp_path, tiny_base, stage):
    from transformers import AutoModelForCausalLM

    one, one_weights = train_stage(guardrail_cfg(tmp_path, "one"), ranks=1, deepspeed=False)
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
