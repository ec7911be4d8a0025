"""From the game's prompts to a safer target: preference pairs, SafeDPO's T(D), and its trainer.

Pairs (Egida's recipe by default): the target answers each prompt several times, a safe
responder answers it once, and the trained guardrail labels every answer (response
classification). Egida keeps prompts the target answered unsafely: its unsafe answer is
`rejected`, the safe answer `chosen`. PKU-SafeRLHF-style files can be added as they are.

SafeDPO (Kim et al., arXiv 2505.20065) then transforms the pairs (T(D): keep / swap / drop) and
trains with one extra hyperparameter Δ: the DPO logit gets a margin -(h_l - h_w)·Δ. The trainer is
TRL's DPOTrainer with the reference log-probs precomputed and the rejected ones shifted by
-(Δ/β)(h_l - h_w), which is the same loss exactly (REFERENCE §3; `tests/test_safedpo.py` checks
it against `duoguard.losses.safedpo_loss` and against TRL's own loss at Δ = 0). DeepSpeed,
LoRA, gradient checkpointing and bf16 come with DPOTrainer.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from duoguard.config import PairRecipe, PairsConfig, Precision, Responder, SafeDPOConfig
from duoguard.data.readers import DataError, iter_rows
from duoguard.data.schema import SampleError, parse_bool

log = logging.getLogger(__name__)

PAIR_FIELDS = ("prompt", "chosen", "rejected", "chosen_unsafe", "rejected_unsafe")
PROVENANCE_FIELDS = ("prompt_id", "language", "category", "attack_style", "source", "round")


# ---------------------------------------------------------------- T(D)
def safedpo_transform(records: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """SafeDPO's T(D): keep a pair whose chosen answer is safe, swap one whose chosen answer is
    unsafe and rejected safe, drop one where both are unsafe. Returns the pairs and the counts."""
    out, counts = [], Counter(kept=0, swapped=0, dropped=0)
    for r in records:
        h_w, h_l = bool(r["chosen_unsafe"]), bool(r["rejected_unsafe"])
        if not h_w:
            out.append(dict(r))
            counts["kept"] += 1
        elif not h_l:
            out.append(
                {**r, "chosen": r["rejected"], "rejected": r["chosen"], "chosen_unsafe": False, "rejected_unsafe": True}
            )
            counts["swapped"] += 1
        else:
            counts["dropped"] += 1
    return out, dict(counts)


# ---------------------------------------------------------------- public preference files
def check_pair(row: Mapping[str, Any]) -> dict[str, Any]:
    """A pair record with every field present, answers non-empty and labels boolean."""
    missing = [f for f in PAIR_FIELDS if f not in row or row[f] is None]
    if missing:
        raise SampleError(f"missing field(s) {missing}")
    for f in ("prompt", "chosen", "rejected"):
        if not isinstance(row[f], str) or not row[f].strip():
            raise SampleError(f"'{f}' is empty")
    for f in ("chosen_unsafe", "rejected_unsafe"):
        if not isinstance(row[f], bool):
            raise SampleError(f"'{f}' must be a boolean, got {row[f]!r}")
    return dict(row)


def read_pku_saferlhf(
    path: str | os.PathLike, *, source: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """PKU-SafeRLHF-style rows: prompt, response_0, response_1, better_response_id,
    is_response_0_safe, is_response_1_safe (jsonl, json, csv or parquet)."""
    need = ("prompt", "response_0", "response_1", "better_response_id", "is_response_0_safe", "is_response_1_safe")
    out: list[dict[str, Any]] = []
    for line, row in iter_rows(path):
        try:
            missing = [k for k in need if k not in row or row[k] is None]
            if missing:
                raise SampleError(f"missing field(s) {missing}")
            better = int(row["better_response_id"])
            if better not in (0, 1):
                raise SampleError(f"better_response_id must be 0 or 1, got {row['better_response_id']!r}")
            safe = [parse_bool(row[f"is_response_{i}_safe"], f"is_response_{i}_safe", true_word="safe") for i in (0, 1)]
            pair = check_pair({
                "prompt": row["prompt"], "chosen": row[f"response_{better}"], "rejected": row[f"response_{1 - better}"],
                "chosen_unsafe": not safe[better], "rejected_unsafe": not safe[1 - better],
            })  # fmt: skip
        except (SampleError, ValueError, TypeError) as e:
            raise DataError(path, line, str(e)) from None
        out.append({**pair, "prompt_id": f"{Path(path).name}:{line}", "language": row.get("language") or "en",
                    "category": None, "attack_style": None, "source": source or Path(path).name, "round": None})  # fmt: skip
        if limit is not None and len(out) >= limit:
            break
    return out


# ---------------------------------------------------------------- pairs from the game's prompts
def safe_answers(
    prompts: Sequence[Mapping[str, Any]], pairs_cfg: PairsConfig, refusals: Mapping[str, str], target, responder
) -> list[str]:
    """The safe responder's answer to each prompt: a canned refusal in the prompt's language
    (`refusals`, from data.response_templates.refusal), the target itself with a
    safety system prompt, or another model with that prompt."""
    kind = pairs_cfg.responder
    if kind == Responder.refusal:
        return [refusals.get(p.get("language") or "en", refusals["en"]) for p in prompts]
    model = target if kind == Responder.target else responder
    answers = model.answer([p["text"] for p in prompts], n=1, system=pairs_cfg.safety_system_prompt, seed=1)
    return [a[0] for a in answers]


def build_pairs(
    prompts: Sequence[Mapping[str, Any]],
    target,
    guardrail,
    pairs_cfg: PairsConfig,
    *,
    refusals: Mapping[str, str],
    responder=None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Pairs from prompts (dicts with text, id, language, category, attack_style, source, round)."""
    k = pairs_cfg.samples_per_prompt
    answers = target.answer([p["text"] for p in prompts], n=k, seed=0, progress=progress)
    safe = safe_answers(prompts, pairs_cfg, refusals, target, responder)
    flat_prompts = [p["text"] for p in prompts for _ in range(k)] + [p["text"] for p in prompts]
    flat_answers = [a for group in answers for a in group] + safe
    unsafe = guardrail.is_unsafe(flat_prompts, flat_answers, progress=progress)
    target_unsafe = unsafe[: len(prompts) * k].reshape(len(prompts), k)
    safe_unsafe = unsafe[len(prompts) * k :]
    if pairs_cfg.responder == Responder.refusal:
        safe_unsafe[:] = False  # a canned refusal is safe by construction, whatever a weak judge says
    recipe = pairs_cfg.recipe
    stats = Counter(
        prompts=len(prompts), target_answers=len(prompts) * k, target_unsafe_answers=int(target_unsafe.sum())
    )
    pairs: list[dict[str, Any]] = []
    for i, p in enumerate(prompts):
        if recipe == PairRecipe.egida:
            bad = [j for j in range(k) if target_unsafe[i, j] and answers[i][j].strip()]
            if not bad:
                stats["skipped_target_safe"] += 1
                continue
            if safe_unsafe[i] or not safe[i].strip():
                stats["skipped_responder_unsafe"] += 1
                continue
            rejected, h_l, h_w = answers[i][bad[0]], True, False
        else:  # "all": the responder's answer against the target's first, labels as judged
            rejected, h_l, h_w = answers[i][0], bool(target_unsafe[i, 0]), bool(safe_unsafe[i])
            if not rejected.strip() or not safe[i].strip():
                stats["skipped_empty_answer"] += 1
                continue
        pairs.append({
            "prompt": p["text"], "chosen": safe[i], "rejected": rejected, "chosen_unsafe": h_w, "rejected_unsafe": h_l,
            **{f: p.get(f if f != "prompt_id" else "id") for f in PROVENANCE_FIELDS},
        })  # fmt: skip
        if len(pairs) >= pairs_cfg.max_pairs:
            break
    stats["pairs"] = len(pairs)
    return pairs, dict(stats)


def save_pairs(pairs: Sequence[Mapping[str, Any]], path: str | os.PathLike):
    """The pairs as a `datasets` dataset on disk (written whole, then renamed into place)."""
    from datasets import Dataset

    from duoguard.atomic import atomic_dir

    for i, p in enumerate(pairs):
        try:
            check_pair(p)
        except SampleError as e:
            raise DataError(path, i + 1, str(e)) from None
    columns = {f: [p.get(f) for p in pairs] for f in (*PAIR_FIELDS, *PROVENANCE_FIELDS)}
    dataset = Dataset.from_dict(columns)
    atomic_dir(path, lambda tmp: dataset.save_to_disk(str(tmp)), replace=True)
    return dataset


# ---------------------------------------------------------------- the trainer
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
            if list(self.loss_types) != ["sigmoid"]:
                raise ValueError(f"SafeDPO is defined on the sigmoid DPO loss, got loss_type={self.loss_types}")
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
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                     "chosen_unsafe": bool(p["chosen_unsafe"]), "rejected_unsafe": bool(p["rejected_unsafe"])})  # fmt: skip
    return rows


def dpo_args(cfg: SafeDPOConfig, *, output_dir: str | os.PathLike, device: str, precision: Precision, progress: bool):
    """TRL's DPOConfig from the `safedpo` config (also used by scripts/bench_safedpo.py)."""
    import math

    import torch
    from trl import DPOConfig

    from duoguard.config import config_file
    from duoguard.models import pick_dtype

    dtype = pick_dtype(precision, device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_device = cfg.per_device_batch_size
    return DPOConfig(
        output_dir=str(output_dir),
        beta=cfg.beta,
        loss_type=["sigmoid"],
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

    from datasets import Dataset

    from duoguard.training import quiet_trainer

    transformed, counts = safedpo_transform(pairs)
    if not transformed:
        raise DataError(work_dir, None, f"no pairs left to train on after T(D) ({counts})")
    peft_config = None
    if cfg.lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **dataclasses.asdict(cfg.lora))
    trainer = _safedpo_trainer_class()(
        model=target.model,
        args=dpo_args(
            cfg, output_dir=Path(work_dir) / ".dpo", device=target.device, precision=precision, progress=progress
        ),
        train_dataset=Dataset.from_list(trainer_rows(transformed, target)),
        processing_class=target.tokenizer,
        peft_config=peft_config,
        delta=cfg.delta,
    )
    quiet_trainer(trainer)
    start = time.perf_counter()
    result = trainer.train()
    model = trainer.model
    if peft_config is not None:
        model = model.merge_and_unload()
    target.model = model.eval()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    last = logged[-1] if logged else {}
    return {
        "transform": counts,
        "pairs_trained": len(transformed),
        "train_loss": float(result.training_loss),
        "train_steps": int(result.global_step),
        "train_seconds": time.perf_counter() - start,
        **{k: float(v) for k, v in last.items() if k.startswith(("rewards", "safety"))},
    }
