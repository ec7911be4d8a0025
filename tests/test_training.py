"""Non-finite losses and rewards: the update is skipped, counted, and leaves the weights alone."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import duoguard.roles.guardrail as guardrail_module
from duoguard import Guardrail
from duoguard.config import GuardrailTrainConfig
from duoguard.losses import zlpr_loss

CFG = GuardrailTrainConfig(
    loss="zlpr",
    learning_rate=1e-2,
    lr_scheduler="constant",
    warmup_ratio=0.0,
    epochs=1,
    global_batch_size=4,
    per_device_batch_size=4,
    weight_decay=0.0,
    max_grad_norm=1.0,
    max_steps=3,
    logging_steps=100,
    gradient_checkpointing=False,
    deepspeed=None,
    seed=0,
)
TEXTS = ["a b c", "d e f", "g h i", "j k l"] * 3


@pytest.fixture()
def guard(tiny_base, taxonomy):
    torch.manual_seed(0)
    return Guardrail.from_base(tiny_base, taxonomy.names, device="cpu")


def labels(n):
    y = torch.zeros(n, 12)
    y[::2, 0] = 1
    return y.numpy()


def nan_on_calls(calls: set[int], *, finite_loss: bool = False):
    """The zlpr loss, poisoned on the given calls: a NaN loss, or (finite_loss) a finite loss whose
    gradients are NaN (d sqrt(0 x) = inf x 0)."""
    count = {"n": 0}

    def loss(logits, target):
        count["n"] += 1
        value = zlpr_loss(logits, target)
        if count["n"] not in calls:
            return value
        return value + torch.sqrt(logits.sum() * 0.0) if finite_loss else value * float("nan")

    return loss


def test_nan_loss_step_is_skipped_and_counted(guard, tmp_path, monkeypatch):
    monkeypatch.setitem(guardrail_module.MULTILABEL_LOSSES, "zlpr", nan_on_calls({2}))
    stats = guard.fit(TEXTS, labels(len(TEXTS)), CFG, output_dir=tmp_path, progress=False)
    assert stats["skipped_steps"] == 1 and stats["train_steps"] == 3
    assert all(torch.isfinite(p).all() for p in guard.model.parameters())


def test_nan_gradients_from_a_finite_loss_skip_the_step(guard, tmp_path, monkeypatch):
    monkeypatch.setitem(guardrail_module.MULTILABEL_LOSSES, "zlpr", nan_on_calls({2}, finite_loss=True))
    stats = guard.fit(TEXTS, labels(len(TEXTS)), CFG, output_dir=tmp_path, progress=False)
    assert stats["skipped_steps"] == 1 and stats["train_steps"] == 3
    assert all(torch.isfinite(p).all() for p in guard.model.parameters())


def test_a_skipped_step_changes_nothing(guard, tmp_path, monkeypatch):
    before = {k: v.clone() for k, v in guard.model.state_dict().items()}
    monkeypatch.setitem(guardrail_module.MULTILABEL_LOSSES, "zlpr", nan_on_calls({1}))
    stats = guard.fit(TEXTS[:4], labels(4), replace(CFG, max_steps=1), output_dir=tmp_path, progress=False)
    assert stats["skipped_steps"] == 1
    after = guard.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_finite_training_skips_nothing(guard, tmp_path):
    stats = guard.fit(TEXTS, labels(len(TEXTS)), CFG, output_dir=tmp_path, progress=False)
    assert stats["skipped_steps"] == 0


def test_one_process_trains_on_one_device_whatever_the_host_has(tmp_path):
    """With 4 GPUs visible and no launcher, the Trainer would run nn.DataParallel over all of them (TRL refuses
    it) and a step would see 4 x the per-device batch. Here the host's count is stood in for by `_n_gpu`."""
    from transformers import TrainingArguments

    from duoguard.training import one_device_per_process

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, use_cpu=True, report_to=[])
    assert args.n_gpu == 0  # this machine: no GPU
    args._n_gpu = 4  # as _setup_devices finds it on a host with 4 GPUs visible
    assert args.train_batch_size == 8
    one_device_per_process(args)
    assert args.n_gpu == 1 and args.train_batch_size == 2


def test_too_few_optimizer_steps_are_warned_once_naming_the_key(guard, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="duoguard"):
        guard.fit(TEXTS, labels(len(TEXTS)), CFG, output_dir=tmp_path, progress=False)  # 3 steps
        guard.fit(TEXTS, labels(len(TEXTS)), CFG, output_dir=tmp_path, progress=False)
    warned = [r.getMessage() for r in caplog.records if "optimizer steps" in r.getMessage()]
    assert warned == [
        "guardrail: 12 examples at guardrail.train.global_batch_size=4 make 3 optimizer steps "
        "(fewer than ~50 rarely train a classifier): lower the global batch or raise the epochs"
    ]
    caplog.clear()
    fresh = Guardrail(guard.model, guard.tokenizer)
    with caplog.at_level(logging.WARNING, logger="duoguard"):
        fresh.fit(TEXTS, labels(len(TEXTS)), replace(CFG, max_steps=50), output_dir=tmp_path, progress=False)
    assert not [r for r in caplog.records if "optimizer steps" in r.getMessage()]


class _Built(Exception):
    """Raised by a stand-in model class to report the device a stage asked for."""


def test_ranks_of_a_stage_build_on_their_own_gpu_not_the_configured_one(monkeypatch):
    # runtime.device=cuda:0 names the GPU of a single process; in a process group every rank must build on
    # its own GPU ("cuda", bound from LOCAL_RANK by join_group), or all ranks would pile onto GPU 0
    import duoguard.factory as factory
    import duoguard.roles.target as target_module
    from duoguard.stages.safedpo import train_target
    from tests.conftest import compose

    cfg = compose(["output_dir=/tmp/x", "runtime.device=cuda:0"])
    seen = {}

    def record(*args, device, **kwargs):
        seen["device"] = device
        raise _Built

    monkeypatch.setattr(factory, "build_guardrail", lambda **kw: record(**kw))
    monkeypatch.setattr(target_module, "Target", record)
    monkeypatch.setattr("duoguard.stages.safedpo.set_up_torch", lambda cfg: None)
    for env in ({}, {"LOCAL_RANK": "1", "WORLD_SIZE": "2"}):
        for key in ("LOCAL_RANK", "WORLD_SIZE"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        expected = "cuda" if env else "cuda:0"
        with pytest.raises(_Built):
            factory.new_guardrail(cfg, taxonomy=type("T", (), {"names": ["x"]})())
        assert seen.pop("device") == expected, env
        with pytest.raises(_Built):
            train_target(cfg, [], "base", "/tmp/x")
        assert seen.pop("device") == expected, env
