"""SafeDPO's trainer: TRL's DPOTrainer with the safety margin Δ.

The loss is DPO's logit with a margin -(h_l - h_w)·Δ (Kim et al., arXiv 2505.20065). The trainer is
TRL's DPOTrainer with the reference log-probs precomputed and the rejected ones shifted by
-(Δ/β)(h_l - h_w), which is the same loss exactly (REFERENCE §3; `tests/test_safedpo.py` checks
it against `duoguard.losses.safedpo_loss` and against TRL's own loss at Δ = 0). DeepSpeed,
LoRA, gradient checkpointing and bf16 come with DPOTrainer.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from duoguard.config import Precision, SafeDPOConfig
from duoguard.data.readers import DataError
from duoguard.errors import UserError
from duoguard.safedpo.transform import safedpo_transform

log = logging.getLogger(__name__)


def _safedpo_trainer_class():
    """Defined lazily: importing TRL costs seconds, and only SafeDPO training needs it."""
    import torch
    from trl import DPOTrainer

    from duoguard.training import SkipNonFinite
    from duoguard.trl_private import check_dpo_trainer

    check_dpo_trainer()  # the overrides below replace private DPOTrainer methods: a rename must not skip them

    def with_margin(base_collator):
        """TRL's collator keeps only its own columns; carry the per-pair margin along."""

        def collate(examples):
            batch = base_collator(examples)
            if "safety_margin" in examples[0]:
                batch["safety_margin"] = torch.tensor([e["safety_margin"] for e in examples], dtype=torch.float32)
            return batch

        return collate

    class SafeDPOTrainer(SkipNonFinite, DPOTrainer):
        """TRL's DPOTrainer with SafeDPO's margin Δ.

        The reference log-probs are precomputed and the rejected ones shifted by
        -(Δ/β)(h_l - h_w), so TRL's sigmoid loss becomes SafeDPO's. TRL's logged rewards then
        include the margin; the clean ones are logged as `rewards_clean/*` and the margin as
        `safety/margin`.
        """

        def __init__(self, *args, delta: float = 0.0, **kwargs):
            self.delta = float(delta)
            super().__init__(*args, **kwargs)
            if not self.precompute_ref_logps:
                raise ValueError("SafeDPOTrainer needs precompute_ref_log_probs=True")
            if list(self.loss_types) not in (["sigmoid"], ["sigmoid", "sft"]):
                raise ValueError(
                    "SafeDPO is defined on the sigmoid DPO loss (with an optional NLL term on the chosen answer, "
                    f"loss_type=['sigmoid', 'sft']), got loss_type={self.loss_types}"
                )
            self.data_collator = with_margin(self.data_collator)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            dataset = super()._precompute_ref_logps(dataset, name, batch_size)
            scale = self.delta / self.beta

            def shift(batch):
                pairs = zip(batch["chosen_unsafe"], batch["rejected_unsafe"], strict=True)
                margins = [float(h_l) - float(h_w) for h_w, h_l in pairs]
                return {
                    "ref_rejected_logps": [
                        r - scale * m for r, m in zip(batch["ref_rejected_logps"], margins, strict=True)
                    ],
                    "safety_margin": [self.delta * m for m in margins],
                }

            return dataset.map(shift, batched=True, desc=f"SafeDPO margin (Δ={self.delta:g}) for {name}")

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "safety_margin" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "safety_margin"]

        def _compute_loss(self, model, inputs, return_outputs):
            margin = inputs.pop("safety_margin", None)
            out = super()._compute_loss(model, inputs, return_outputs)
            if margin is not None:
                mode = "train" if self.model.training else "eval"
                m = self.accelerator.gather_for_metrics(margin.float()).mean().item()
                metrics = self._metrics[mode]
                metrics["safety/margin"].append(m)
                metrics["rewards_clean/rejected"].append(metrics["rewards/rejected"][-1] - m)
                metrics["rewards_clean/margins"].append(metrics["rewards/margins"][-1] + m)
            return out

    return SafeDPOTrainer


def trainer_rows(pairs: Sequence[Mapping[str, Any]], target) -> list[dict[str, Any]]:
    """Pairs in TRL's preference format, the prompt shown as the target sees it when answering."""
    rows = []
    for p in pairs:
        if target.chat:
            prompt = target.messages(p["prompt"])
            chosen = [{"role": "assistant", "content": p["chosen"]}]
            rejected = [{"role": "assistant", "content": p["rejected"]}]
        else:
            prompt, chosen, rejected = target.render(p["prompt"]), " " + p["chosen"], " " + p["rejected"]
        rows.append(
            {
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "chosen_unsafe": bool(p["chosen_unsafe"]),
                "rejected_unsafe": bool(p["rejected_unsafe"]),
            }
        )
    return rows


def dpo_args(cfg: SafeDPOConfig, *, output_dir: str | os.PathLike, device: str, precision: Precision, progress: bool):
    """TRL's DPOConfig from the `safedpo` config (also used by scripts/bench_safedpo.py)."""
    import math

    import torch
    from trl import DPOConfig

    from duoguard.config import config_file
    from duoguard.distributed import world_size
    from duoguard.models import pick_dtype

    dtype = pick_dtype(precision, device)
    world = world_size()
    per_device = cfg.per_device_batch_size
    # safedpo.sft_weight > 0 adds the chosen answer's NLL (RPO); the margin only shifts the sigmoid term
    loss = (
        {"loss_type": ["sigmoid"]}
        if cfg.sft_weight == 0
        else {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, float(cfg.sft_weight)]}
    )
    return DPOConfig(
        output_dir=str(output_dir),
        beta=cfg.beta,
        **loss,
        precompute_ref_log_probs=True,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler.value,
        warmup_steps=cfg.warmup_ratio,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=max(1, math.ceil(cfg.global_batch_size / (per_device * world))),
        max_length=cfg.max_length,
        weight_decay=cfg.weight_decay,
        activation_checkpointing=cfg.gradient_checkpointing,
        deepspeed=config_file(cfg.deepspeed) if cfg.deepspeed else None,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=device == "cpu",
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to=[],
        disable_tqdm=not progress,
    )


SATURATING_MARGIN = 4.0  # σ(4) ≈ 0.98: a pair's DPO gradient weight, saturated


def margin_saturates(pairs: Sequence[Mapping[str, Any]], delta: float) -> bool:
    """Whether the margin term Δ·(h_l - h_w) alone saturates every pair's gradient weight (after T(D))."""
    margins = [delta * (float(p["rejected_unsafe"]) - float(p["chosen_unsafe"])) for p in pairs]
    return bool(margins) and min(margins) >= SATURATING_MARGIN


def shared_dataset(rows: list[dict[str, Any]], folder: Path):
    """The rows as a dataset every rank reads from one folder. TRL caches the precomputed reference
    log-probs beside the dataset's files and every rank reads rank 0's cache: an in-memory dataset
    would put that cache in a temp folder of rank 0's own."""
    from datasets import Dataset, load_from_disk

    from duoguard.distributed import barrier, is_main, world_size

    if world_size() == 1:
        return Dataset.from_list(rows)
    if is_main():
        Dataset.from_list(rows).save_to_disk(str(folder))
    barrier()
    return load_from_disk(str(folder))


def train_safedpo(
    pairs: Sequence[Mapping[str, Any]],
    target,
    cfg: SafeDPOConfig,
    *,
    work_dir: str | os.PathLike,
    precision: Precision = Precision.auto,
    progress: bool = True,
) -> dict[str, Any]:
    """SafeDPO on `pairs` (through T(D) first); trains `target.model` in place, returns stats."""
    import time

    from duoguard.distributed import join_group, launched
    from duoguard.training import one_device_per_process, quiet_trainer, trained_model

    if cfg.deepspeed and not launched():
        raise UserError(
            f"safedpo.deepspeed={cfg.deepspeed}: DeepSpeed trains in a process group; the SafeDPO stage launches one "
            "(safedpo.num_workers ranks)"
        )
    join_group(target.device, deepspeed=bool(cfg.deepspeed))

    transformed, counts = safedpo_transform(pairs)
    if not transformed:
        raise DataError(work_dir, None, f"no pairs left to train on after T(D) ({counts})")
    saturated = margin_saturates(transformed, cfg.delta)
    if saturated:
        log.warning(
            "SafeDPO: every pair's safety margin Δ·(h_l - h_w) is >= %g (safedpo.delta=%g): each pair's gradient "
            "weight σ(Δ·(h_l - h_w) - β·h) starts near 1 and stays there until the policy's own margin β·h nears it, "
            "so the margin is one fixed offset that removes DPO's weighting of easy and hard pairs. Lower "
            "safedpo.delta, or build pairs in which T(D) keeps, swaps and drops (safedpo.pairs.recipe)",
            SATURATING_MARGIN,
            cfg.delta,
        )

    from duoguard.models import pick_dtype

    # fp32 weights and optimizer state, bf16/fp16 compute under autocast (dpo_args): the target may
    # have been loaded in half precision to answer
    compute_dtype = pick_dtype(precision, target.device)
    target.model = target.model.float()
    peft_config = None
    if cfg.lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **dataclasses.asdict(cfg.lora))
    out = Path(work_dir) / ".dpo"
    args = dpo_args(cfg, output_dir=out, device=target.device, precision=precision, progress=progress)
    one_device_per_process(args)
    trainer = _safedpo_trainer_class()(
        model=target.model,
        args=args,
        train_dataset=shared_dataset(trainer_rows(transformed, target), out / "rows"),
        processing_class=target.tokenizer,
        peft_config=peft_config,
        delta=cfg.delta,
    )
    quiet_trainer(trainer)
    start = time.perf_counter()
    result = trainer.train()
    model = trained_model(trainer)  # full weights on every rank, also under ZeRO-3
    if peft_config is not None:
        model = model.merge_and_unload()
    target.model = model.to(compute_dtype).eval()  # answers (and is saved) in the configured precision
    logged = [h for h in trainer.state.log_history if "loss" in h]
    last = logged[-1] if logged else {}
    return {
        "transform": counts,
        "pairs_trained": len(transformed),
        "margin_saturated": saturated,
        "train_loss": float(result.training_loss),
        "train_steps": int(result.global_step),
        "train_seconds": time.perf_counter() - start,
        **{k: float(v) for k, v in last.items() if k.startswith(("rewards", "safety"))},
    }
