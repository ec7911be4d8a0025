"""safedpo.sft_weight: an NLL term on the chosen answer added to SafeDPO's loss (RPO-style, TRL's
loss_type ["sigmoid", "sft"]); weight 0 leaves SafeDPO's loss exactly as it was."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from duoguard.config import ConfigError, Precision
from duoguard.losses import safedpo_loss
from tests.test_safedpo import TOY_SAFEDPO, perturb, preference_dataset, sequence_logps, tiny_lm  # noqa: F401


def chosen_nll(model, batch) -> torch.Tensor:
    """Mean NLL per chosen-answer token over the batch, computed independently of TRL."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    logps = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = batch["completion_mask"][:, 1:].bool()
    chosen_logps, _ = logps.chunk(2)
    chosen_mask, _ = mask.chunk(2)
    return -chosen_logps[chosen_mask].mean()


def args_for(tmp_path, weight: float):
    from duoguard.safedpo.trainer import dpo_args

    cfg = replace(TOY_SAFEDPO, beta=0.1, sft_weight=weight)
    return dpo_args(cfg, output_dir=tmp_path, device="cpu", precision=Precision.fp32, progress=False)


def test_dpo_args_add_the_sft_term_only_when_weighted(tmp_path):
    plain = args_for(tmp_path / "a", 0.0)
    assert list(plain.loss_type) == ["sigmoid"] and not plain.loss_weights
    rpo = args_for(tmp_path / "b", 0.5)
    assert list(rpo.loss_type) == ["sigmoid", "sft"] and list(rpo.loss_weights) == [1.0, 0.5]


@pytest.mark.parametrize("weight", [0.0, 0.7])
def test_loss_is_safedpo_plus_weighted_chosen_nll(tiny_lm, tmp_path, weight):  # noqa: F811
    from duoguard.safedpo.trainer import _safedpo_trainer_class

    model, tok = tiny_lm
    delta = 2.0
    trainer = _safedpo_trainer_class()(
        model=model,
        args=args_for(tmp_path, weight),
        train_dataset=preference_dataset(),
        processing_class=tok,
        delta=delta,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    ref_c, ref_r = sequence_logps(trainer.model, batch)  # the unshifted reference the trainer precomputed
    hl = batch["safety_margin"] / delta
    perturb(trainer.model)  # the policy moves away from the reference, so neither term is trivial
    got = trainer.compute_loss(trainer.model, dict(batch)).item()
    chosen, rejected = sequence_logps(trainer.model, batch)
    dpo = safedpo_loss(chosen, rejected, ref_c, ref_r, torch.zeros_like(hl), hl, beta=0.1, delta=delta).mean().item()
    nll = chosen_nll(trainer.model, batch).item()
    assert nll > 0.5  # the NLL term is not negligible, so the check below tells the two cases apart
    assert got == pytest.approx(dpo + weight * nll, rel=1e-4)


def test_negative_sft_weight_is_rejected():
    with pytest.raises(ConfigError, match=r"safedpo\.sft_weight"):
        replace(TOY_SAFEDPO, sft_weight=-0.1).check("safedpo")
