"""The private TRL names duoguard relies on (duoguard/trl_private.py) exist in the installed TRL,
a TRL without one of them stops the generator and SafeDPO at start, and the GRPO rollout reset
really makes a reused GRPOTrainer generate afresh."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from duoguard import trl_private
from duoguard.trl_private import check_dpo_trainer, check_grpo_trainer, reset_grpo_rollout, set_grpo_reference
from tests.conftest import ROOT


def test_installed_trl_has_every_private_name_and_is_the_pinned_minor():
    import trl
    from packaging.version import Version

    check_grpo_trainer()
    check_dpo_trainer()
    low, high = map(Version, re.search(r'"trl>=([\d.]+),<([\d.]+)"', (ROOT / "pyproject.toml").read_text()).groups())
    assert low <= Version(trl.__version__) < high
    assert (high.major, high.minor) == (low.major, low.minor + 1)  # the pin spans one minor version


# fakes shaped like the trainers: the complete ones pass, so each incomplete one fails for its missing name
class FakeGRPO:
    def __init__(self, model):
        self._step, self._buffered_inputs = 0, None
        self.reference = model.get_config_model_id


class GRPOWithoutBuffer:
    def __init__(self, model):
        self._step = 0
        self.reference = model.get_config_model_id


class FakeDPO:
    def __init__(self):
        self._metrics = {"train": {"rewards/rejected": [], "rewards/margins": []}}
        self._signature_columns = ["ref_rejected_logps"]

    def _precompute_ref_logps(self, dataset, name, batch_size): ...

    def _compute_loss(self, model, inputs, return_outputs): ...

    def _set_signature_columns_if_needed(self): ...


class DPOWithoutComputeLoss:
    def __init__(self):
        self._metrics = {"train": {"rewards/rejected": [], "rewards/margins": []}}
        self._signature_columns = ["ref_rejected_logps"]

    def _precompute_ref_logps(self, dataset, name, batch_size): ...

    def _set_signature_columns_if_needed(self): ...


class DPOWithOtherPrecomputeSignature:
    def __init__(self):
        self._metrics = {"train": {"rewards/rejected": [], "rewards/margins": []}}
        self._signature_columns = ["ref_rejected_logps"]

    def _precompute_ref_logps(self, dataset, name): ...

    def _compute_loss(self, model, inputs, return_outputs): ...

    def _set_signature_columns_if_needed(self): ...


def test_a_trainer_without_a_private_name_fails_naming_it():
    check_grpo_trainer(FakeGRPO)
    check_dpo_trainer(FakeDPO)
    version = re.escape(__import__("trl").__version__)
    with pytest.raises(
        RuntimeError,
        match=rf"TRL {version}: `_buffered_inputs` in GRPOWithoutBuffer is not in the class source.*last round",
    ):
        check_grpo_trainer(GRPOWithoutBuffer)
    with pytest.raises(RuntimeError, match=r"`_compute_loss` in DPOWithoutComputeLoss is not a method.*clean rewards"):
        check_dpo_trainer(DPOWithoutComputeLoss)
    with pytest.raises(
        RuntimeError,
        match=r"`_precompute_ref_logps` in .* takes \(self, dataset, name\), "
        r"expected \(self, dataset, name, batch_size\)",
    ):
        check_dpo_trainer(DPOWithOtherPrecomputeSignature)
    with pytest.raises(RuntimeError, match="`_step`"):
        reset_grpo_rollout(SimpleNamespace(_buffered_inputs=None))


def test_generator_and_safedpo_check_before_building_their_trainers(monkeypatch):
    from duoguard.roles.generator import Generator
    from duoguard.safedpo.trainer import _safedpo_trainer_class

    monkeypatch.setitem(trl_private.GRPO_PRIVATE, "_renamed_grpo", (None, "a test"))
    monkeypatch.setitem(trl_private.DPO_PRIVATE, "_renamed_dpo", (None, "a test"))
    with pytest.raises(RuntimeError, match="`_renamed_grpo`"):
        Generator._build_trainer(SimpleNamespace(), None)
    with pytest.raises(RuntimeError, match="`_renamed_dpo`"):
        _safedpo_trainer_class()


def test_grpo_reference_is_the_model_id_trl_reads():
    from trl.trainer.utils import get_config_model_id

    model = SimpleNamespace(config=SimpleNamespace(_name_or_path="checkpoints/round_3"))
    set_grpo_reference(model, "base/policy")
    assert get_config_model_id(model.config) == "base/policy"


def test_reset_makes_a_reused_grpo_trainer_generate_from_its_new_dataset(tmp_path, tiny_base):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from duoguard.models import load_tokenizer

    seen: list[list[str]] = []

    def reward(prompts, completions, **kwargs):
        seen.append(sorted(set(prompts)))
        return [float(i) for i in range(len(completions))]

    # one generation feeds two optimizer steps; each train() takes one, as a round may end mid-rollout
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        steps_per_generation=2,
        num_generations=2,
        max_completion_length=4,
        max_steps=1,
        learning_rate=1e-4,
        beta=0.0,
        use_cpu=True,
        shuffle_dataset=False,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_base),
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": "round one a"}, {"prompt": "round one b"}]),
        processing_class=load_tokenizer(tiny_base, trust_remote_code=False, padding_side="left"),
    )
    trainer.train()
    assert seen == [["round one a", "round one b"]] and trainer._buffered_inputs is not None

    trainer.train_dataset = Dataset.from_list([{"prompt": "round two a"}, {"prompt": "round two b"}])
    reset_grpo_rollout(trainer)
    assert (trainer._step, trainer._buffered_inputs) == (0, None)
    trainer.train()  # without the reset this step would train on round one's second buffered slice
    assert seen == [["round one a", "round one b"], ["round two a", "round two b"]]
