"""The generator: a causal-LM policy that rewrites seeds, updated online with GRPO through TRL.

Each round the generator gets a batch of conditions (seed, language, category, attack style)
and a `score` callable. TRL's GRPOTrainer samples G candidates per prompt, asks `score` for
their rewards (the judge and the frozen guardrail stand behind it), computes group-relative
advantages and takes a clipped policy-gradient step with KL to the reference policy. The
trainer lives as long as the generator, so the optimizer state carries over between rounds.

Why TRL and not a hand-written update: TRL's loss, generation (HF `generate`, or vLLM on GPU),
DeepSpeed and PEFT paths are maintained upstream; `tests/test_grpo.py` checks that the
advantages it uses are the ones `duoguard.rewards.group_advantages` computes by hand.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from duoguard.atomic import link_or_copy
from duoguard.config import GeneratorConfig, config_file
from duoguard.data.record import PromptRecord
from duoguard.distributed import barrier, join_group, launched
from duoguard.errors import UserError
from duoguard.models import attention_kwargs, load_tokenizer, pick_device, pick_dtype, quiet_transformers
from duoguard.prompts import Condition, render
from duoguard.training import (
    SkipNonFinite,
    full_state_dict,
    gathered,
    one_device_per_process,
    quiet_trainer,
    zero3,
)
from duoguard.trl_private import check_grpo_trainer, reset_grpo_rollout, set_grpo_reference

log = logging.getLogger(__name__)

# score(texts, conditions) -> (rewards, records): a reward and a record per candidate
ScoreFn = Callable[[list[str], list[dict[str, Any]]], tuple[list[float], list[PromptRecord]]]

OPTIMIZER_FILE = "optimizer.pt"
DEEPSPEED_DIR = "deepspeed"  # under DeepSpeed: its own checkpoint (every rank's shard of weights and optimizer)
DEEPSPEED_TAG = "round"  # one folder, replaced each round


@dataclass
class Rollout:
    """What one round of play produced: every scored candidate and the trainer's statistics."""

    records: list[PromptRecord] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def merged(ranks: Sequence[Rollout]) -> Rollout:
        """One rollout from a data-parallel generator's ranks: candidates ordered by step, then rank;
        TRL's logged statistics are already gathered over ranks (rank 0's), timings the slowest."""
        records = sorted(
            (rec for rollout in ranks for rec in rollout.records), key=lambda rec: rec.step or 0
        )  # sorted() is stable: within a step, rank order
        stats = dict(ranks[0].stats)
        for key in ("seconds_scoring", "seconds_generate_and_update"):
            stats[key] = max(r.stats.get(key, 0.0) for r in ranks)
        return Rollout(records=records, stats=stats)


def candidate_text(completion: Any, first_line_only: bool) -> str:
    """The prompt a completion proposes: message content for chat models, first line if asked."""
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        completion = completion[-1]["content"] if completion else ""
    # a byte-level token can end mid-character; what decodes to U+FFFD is an artifact, not content
    text = str(completion).replace("\ufffd", "").strip()
    if first_line_only:
        text = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return text.strip().strip('"“”«»').strip()


class Generator:
    def __init__(
        self,
        model_path: str,
        cfg: GeneratorConfig,
        *,
        work_dir: str | os.PathLike,
        device: str = "auto",
        seed: int = 0,
        reference_path: str | None = None,
        progress: bool = False,
    ):
        from transformers import AutoModelForCausalLM

        quiet_transformers()
        self.cfg = cfg
        self.seed = seed
        self.progress = progress
        self.work_dir = Path(work_dir)
        self.device = pick_device(device)
        model_cfg = cfg.model
        # compute precision: bf16/fp16 run under autocast (GRPOConfig's bf16/fp16), while the weights,
        # their gradients and the optimizer state stay fp32: at lr 1e-6 a bf16 weight would not move
        self.dtype = pick_dtype(model_cfg.precision, self.device)
        # the base model's hub revision (a local checkpoint folder ignores it)
        self.revision = model_cfg.revision
        self.tokenizer = load_tokenizer(
            model_path, trust_remote_code=model_cfg.trust_remote_code, revision=self.revision, padding_side="left"
        )
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path,
            dtype=torch.float32,
            trust_remote_code=model_cfg.trust_remote_code,
            revision=self.revision,
            **attention_kwargs(model_cfg),
        )
        # the KL reference stays the original policy, also when this generator was restored from a
        # later round's checkpoint
        set_grpo_reference(self.model, reference_path or model_path)
        self._optimizer_state = Path(model_path) / OPTIMIZER_FILE
        # under DeepSpeed the Trainer builds a new engine at every train(): it resumes from this checkpoint
        self._deepspeed_state = Path(model_path) / DEEPSPEED_DIR
        self._trainer = None
        self._score: ScoreFn | None = None
        self._records: list[PromptRecord] = []
        self._score_seconds = 0.0

    # ------------------------------------------------------------------ prompts
    @property
    def chat(self) -> bool:
        return self.cfg.use_chat_template and bool(getattr(self.tokenizer, "chat_template", None))

    def prompt(self, condition: Condition) -> Any:
        text = render(condition, self.cfg.templates)
        return [{"role": "user", "content": text}] if self.chat else text

    @property
    def completions_per_step(self) -> int:
        g = self.cfg.grpo
        return g.prompts_per_step * g.num_generations

    @property
    def world_size(self) -> int:
        """Data-parallel ranks (generator.num_workers): each generates and scores its share of
        every step's completions; gradients are averaged over ranks."""
        return int(os.environ.get("WORLD_SIZE", 1))

    @property
    def is_main_process(self) -> bool:
        return int(os.environ.get("RANK", 0)) == 0

    @property
    def prompts_per_round(self) -> int:
        g = self.cfg.grpo
        return g.prompts_per_step * g.steps_per_round

    # ------------------------------------------------------------------ GRPO through TRL
    def _reward(self, prompts, completions, **columns) -> list[float]:
        """TRL's reward-function hook: turn completions into candidates and ask `score`."""
        n = len(completions)
        keys = [k for k in Condition.__dataclass_fields__ if k in columns]
        conditions = [{k: columns[k][i] for k in keys} for i in range(n)]
        texts = [candidate_text(c, self.cfg.first_line_only) for c in completions]
        start = time.perf_counter()
        rewards, records = self._score(texts, conditions)
        self._score_seconds += time.perf_counter() - start
        step = columns["trainer_state"].global_step if "trainer_state" in columns else None
        for r in records:
            r.step = step
        self._records.extend(records)
        finite = [x is not None and math.isfinite(x) for x in rewards]
        if not all(finite):  # a broken reward must not move the policy: skip this update, count it
            self._trainer.flag_nonfinite()
            log.warning("generator: %d non-finite rewards at step %s; the update is skipped", finite.count(False), step)
        return [float(x) if ok else None for x, ok in zip(rewards, finite, strict=True)]

    def grpo_args(self):
        """TRL's GRPOConfig for this generator (also used by scripts/bench_game.py)."""
        from trl import GRPOConfig

        g, s = self.cfg.grpo, self.cfg.sampling
        return GRPOConfig(
            output_dir=str(self.work_dir / "grpo"),
            per_device_train_batch_size=self.completions_per_step // self.world_size,
            gradient_accumulation_steps=1,
            num_generations=g.num_generations,
            max_completion_length=s.max_new_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            repetition_penalty=s.repetition_penalty,
            learning_rate=g.learning_rate,
            lr_scheduler_type="constant",
            beta=g.beta,
            epsilon=g.epsilon,
            num_iterations=g.num_iterations,
            loss_type=g.loss_type.value,
            scale_rewards=g.scale_rewards.value,
            max_grad_norm=g.max_grad_norm,
            weight_decay=g.weight_decay,
            max_steps=g.steps_per_round,
            activation_checkpointing=g.gradient_checkpointing,
            use_vllm=g.use_vllm,
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=g.vllm_gpu_memory_utilization,
            vllm_enable_sleep_mode=g.vllm_sleep_mode,
            deepspeed=config_file(g.deepspeed) if g.deepspeed else None,
            bf16=self.dtype == torch.bfloat16,
            fp16=self.dtype == torch.float16,
            use_cpu=self.device == "cpu",
            shuffle_dataset=False,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=not self.progress,
            seed=self.seed,
            # TRL loads the KL reference itself, from the base model: same code and revision, and (it only
            # infers) in the compute precision, not the policy's fp32 (TRL warns these kwargs do not apply
            # to the policy, which is already built)
            trust_remote_code=self.cfg.model.trust_remote_code,
            model_init_kwargs=self._reference_kwargs(),
        )

    def _reference_kwargs(self) -> dict[str, Any] | None:
        kwargs: dict[str, Any] = {"dtype": self.dtype} if self.cfg.grpo.beta > 0 else {}
        if self.revision:
            kwargs["revision"] = self.revision
        return kwargs or None

    def _build_trainer(self, dataset):
        from trl import GRPOTrainer

        check_grpo_trainer()  # play() and __init__ rely on GRPOTrainer's private state
        deepspeed = self.cfg.grpo.deepspeed
        if deepspeed and not launched():
            raise UserError(
                f"generator.grpo.deepspeed={deepspeed}: DeepSpeed trains in a process group: run the game with "
                "runtime=ray (one actor per rank, generator.num_workers ranks)"
            )
        join_group(self.device, deepspeed=bool(deepspeed))  # a rank of a Ray worker group joins here

        class _GRPOTrainer(SkipNonFinite, GRPOTrainer):
            pass

        args = self.grpo_args()
        one_device_per_process(args)
        callbacks = [_ResumeEngine(self)] if deepspeed else None
        trainer = _GRPOTrainer(
            model=self.model,
            reward_funcs=[self._reward],
            args=args,
            train_dataset=dataset,
            processing_class=self.tokenizer,
            callbacks=callbacks,
        )
        quiet_trainer(trainer)
        return trainer

    @property
    def _deepspeed(self) -> bool:
        return bool(self.cfg.grpo.deepspeed)

    @property
    def _sharded(self) -> bool:
        """ZeRO-3: each rank holds a shard of every weight (after the first train())."""
        return self._trainer is not None and zero3(self._trainer)

    def _restore_optimizer(self) -> None:
        """The optimizer state saved beside the weights (`save`), into the trainer; none saved
        (a checkpoint from before the first update) starts the optimizer afresh. Under DeepSpeed the
        engine restores its own checkpoint when train() builds it (see play)."""
        if self._deepspeed:
            return
        if self._optimizer_state.is_file():
            if self._trainer.optimizer is None:
                self._trainer.create_optimizer()
            state = torch.load(self._optimizer_state, map_location="cpu", weights_only=True)
            self._trainer.optimizer.load_state_dict(state)
        else:
            self._trainer.optimizer = None

    def play(self, conditions: Sequence[Condition], score: ScoreFn, round_index: int) -> Rollout:
        """Generate, score and update for one round; returns every scored candidate."""
        from datasets import Dataset
        from transformers import set_seed

        if len(conditions) != self.prompts_per_round:
            raise ValueError(f"play() needs {self.prompts_per_round} conditions, got {len(conditions)}")
        rows = [{"prompt": self.prompt(c), **c.as_columns()} for c in conditions]
        dataset = Dataset.from_list(rows)
        self._score, self._records, self._score_seconds = score, [], 0.0
        start = time.perf_counter()
        if self._trainer is not None and self._deepspeed:
            # transformers' Trainer cannot train() twice under DeepSpeed (its second call leaves the model
            # unprepared): a new trainer each round, whose engine loads the last one's checkpoint (_ResumeEngine)
            self._trainer.model_wrapped.destroy()
            self._trainer = None
        if self._trainer is None:  # Trainer.__init__ reseeds torch: build it before seeding the round
            self._trainer = self._build_trainer(dataset)
            self._restore_optimizer()  # a generator restored from a checkpoint continues its optimizer
        # the round's randomness depends only on the seed and the round: not on placement, nor on
        # whether this process played the earlier rounds or resumed from their checkpoint
        set_seed(self.seed * 100_003 + round_index)
        trainer = self._trainer
        trainer.train_dataset = dataset
        reset_grpo_rollout(trainer)  # each round starts with a fresh rollout
        skipped = trainer.skipped_steps
        trainer.train()  # under DeepSpeed, a new engine that first loads self._deepspeed_state (_ResumeEngine)
        if self._deepspeed:  # the next round's engine continues from this one's weights and optimizer state
            self._save_engine()
        self._score = None
        stats = _round_stats(trainer.state.log_history)
        stats["skipped_updates"] = float(trainer.skipped_steps - skipped)
        stats["seconds_scoring"] = self._score_seconds
        stats["seconds_generate_and_update"] = time.perf_counter() - start - self._score_seconds
        return Rollout(records=self._records, stats=stats)

    @torch.inference_mode()
    def sample(self, conditions: Sequence[Condition], *, seed: int = 0) -> list[str]:
        """One candidate per condition from the current policy, without updating it."""
        from transformers import set_seed

        set_seed(seed)
        prompts = [self.prompt(c) for c in conditions]
        if self.chat:
            prompts = [
                self.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts
            ]
        s = self.cfg.sampling
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.model.device)
        out = self.model.generate(
            **enc,
            do_sample=True,
            max_new_tokens=s.max_new_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k or None,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        texts = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        return [candidate_text(t, self.cfg.first_line_only) for t in texts]

    @torch.no_grad()
    def checksum(self) -> float:
        """A cheap fingerprint of the policy's full weights (gathered under ZeRO-3: every rank calls
        it): data-parallel ranks must agree exactly."""
        with gathered(self.model, self._sharded):
            return float(sum(p.detach().double().sum().item() for p in self.model.parameters()))

    # ------------------------------------------------------------------ persistence
    def load(self, path: str | os.PathLike) -> None:
        """Back to a checkpoint written by `save` (weights and optimizer state), in place. Under
        DeepSpeed the next train() restores both from the checkpoint's DeepSpeed folder."""
        from transformers import AutoModelForCausalLM

        self._optimizer_state = Path(path) / OPTIMIZER_FILE
        self._deepspeed_state = Path(path) / DEEPSPEED_DIR
        if not self._sharded:
            saved = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
            self.model.load_state_dict(saved.state_dict())
        if self._trainer is not None:
            self._restore_optimizer()

    def save(self, path: str | os.PathLike) -> None:
        """Weights (full, gathered under ZeRO-3), tokenizer and optimizer state; under DeepSpeed also
        its own checkpoint, which every rank writes its shard of. Every rank calls it; rank 0 writes
        the rest."""
        path = Path(path)
        state = full_state_dict(self.model, sharded=True) if self._sharded else None
        if self.is_main_process:
            self.model.save_pretrained(path, state_dict=state)
            self.tokenizer.save_pretrained(path)
            if self._deepspeed:
                if (self._deepspeed_state / "latest").is_file():  # the engine's state after the last round
                    shutil.copytree(self._deepspeed_state, path / DEEPSPEED_DIR, copy_function=link_or_copy)
            elif self._trainer is not None and self._trainer.optimizer is not None:
                torch.save(self._trainer.optimizer.state_dict(), path / OPTIMIZER_FILE)
        barrier()  # the checkpoint is whole for every rank once save() returns

    def _save_engine(self) -> None:
        """DeepSpeed's checkpoint of this round (every rank writes its shard) into the work folder, where the
        next round's engine and `save` find it. The old folder is removed first, never written over: round
        checkpoints hold hard links to its files."""
        folder = self.work_dir / DEEPSPEED_DIR
        if self.is_main_process:
            shutil.rmtree(folder, ignore_errors=True)
        barrier()
        self._trainer.model_wrapped.save_checkpoint(str(folder), tag=DEEPSPEED_TAG)
        barrier()
        self._deepspeed_state = folder


class _ResumeEngine(TrainerCallback):
    """Under DeepSpeed the Trainer builds a new engine at every train(): before the round's first step it
    loads the generator's last DeepSpeed checkpoint (the previous round's, or a round checkpoint it was
    restored from), so weights and optimizer state carry over as they do without DeepSpeed."""

    def __init__(self, generator: Generator):
        self.generator = generator

    def on_train_begin(self, args, state, control, **kwargs):
        folder = self.generator._deepspeed_state
        if (folder / "latest").is_file():
            engine = self.generator._trainer.model_wrapped
            loaded, _ = engine.load_checkpoint(str(folder), load_optimizer_states=True, load_lr_scheduler_states=False)
            if loaded is None:
                raise RuntimeError(f"generator: DeepSpeed could not load its checkpoint from {folder}")


def _round_stats(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """Means over the round's steps of TRL's logged metrics (kl, reward, entropy, ...)."""
    keys = {
        "kl": "kl",
        "reward_std": "reward_std",
        "entropy": "entropy",
        "loss": "policy_loss",
        "grad_norm": "grad_norm",
        "completions/mean_length": "completion_tokens",
        "clip_ratio/region_mean": "clip_ratio",
        "frac_reward_zero_std": "frac_reward_zero_std",
    }
    steps = [h for h in log_history if "loss" in h and "train_runtime" not in h]
    out: dict[str, float] = {"grpo_steps": float(len(steps))}
    for key, name in keys.items():
        values = [float(h[key]) for h in steps if h.get(key) is not None]
        if values:
            out[name] = sum(values) / len(values)
    return out
