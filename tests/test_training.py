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


def nan_on_calls(calls: set[int]):
    count = {"n": 0}

    def loss(logits, target):
        count["n"] += 1
        value = zlpr_loss(logits, target)
        return value * float("nan") if count["n"] in calls else value

    return loss


def test_nan_loss_step_is_skipped_and_counted(guard, tmp_path, monkeypatch):
    monkeypatch.setitem(guardrail_module.MULTILABEL_LOSSES, "zlpr", nan_on_calls({2}))
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
