"""The guardrail's section: its model, training recipe and inference settings."""

from __future__ import annotations

from dataclasses import dataclass

from duoguard.config.base import Choice, Section, check, check_choice, setting
from duoguard.config.models import LRScheduler, ModelConfig


class LossType(Choice):
    zlpr = "zlpr"  # Su's multi-label categorical cross-entropy (DuoGuard's loss)
    bce = "bce"  # one sigmoid cross-entropy per category


@dataclass
class GuardrailTrainConfig(Section):
    """Training recipe; defaults are DuoGuard's released classifier code (REFERENCE §1)."""

    loss: LossType = setting(LossType.zlpr, "zlpr (DuoGuard: decision boundary at logit 0) or bce")
    learning_rate: float = setting(5e-5, "peak learning rate (AdamW); DuoGuard: 5e-5")
    lr_scheduler: LRScheduler = setting(LRScheduler.cosine, "learning-rate schedule; DuoGuard: cosine")
    warmup_ratio: float = setting(0.1, "share of the steps spent warming the learning rate up; DuoGuard: 0.1")
    epochs: float = setting(2.0, "passes over the training data; DuoGuard: 2")
    global_batch_size: int = setting(
        640, "examples per optimizer step over all devices (gradient accumulation makes up the rest); DuoGuard: 640"
    )
    per_device_batch_size: int = setting(8, "examples per forward pass on one device")
    weight_decay: float = setting(0.0, "AdamW weight decay; DuoGuard: 0")
    max_grad_norm: float = setting(1.0, "gradient-norm clip; DuoGuard: 1.0")
    head_lr_multiplier: float = setting(1.0, "the new classification head's lr = learning_rate x this")
    max_steps: int = setting(-1, "optimizer steps; > 0 overrides epochs")
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass (less memory)")
    logging_steps: int = setting(10, "log the loss every this many optimizer steps")
    deepspeed: str | None = setting(None, "path of a DeepSpeed JSON config (e.g. conf/deepspeed/zero2.json)")
    seed: int = setting(42, "seed of data order and head initialisation")

    def check(self, key: str) -> None:
        check(self.learning_rate > 0, f"{key}.learning_rate", "must be > 0")
        check(0.0 <= self.warmup_ratio < 1.0, f"{key}.warmup_ratio", "must be in [0, 1)")
        check(self.per_device_batch_size > 0, f"{key}.per_device_batch_size", "must be > 0")
        check(
            self.global_batch_size >= self.per_device_batch_size,
            f"{key}.global_batch_size",
            f"must be >= {key}.per_device_batch_size ({self.per_device_batch_size})",
        )
        check(self.epochs > 0 or self.max_steps > 0, f"{key}.epochs", "must be > 0 (or set max_steps)")
        check(self.head_lr_multiplier > 0, f"{key}.head_lr_multiplier", "must be > 0")


class CalibrationRule(Choice):
    best_f1 = "best_f1"  # the threshold of highest F1 on the calibration rows
    target_fpr = "target_fpr"  # the most unsafe rows caught at a false-positive rate <= target_fpr
    none = "none"  # keep guardrail.threshold


@dataclass
class CalibrationConfig(Section):
    """How duoguard-guardrail picks its decision thresholds on part of the held-out split, stored in the checkpoint."""

    rule: CalibrationRule = setting(
        CalibrationRule.best_f1,
        "best_f1, target_fpr or none (none keeps guardrail.threshold); one threshold overall, one per language",
    )
    target_fpr: float = setting(0.05, "the false-positive rate rule target_fpr allows on the calibration rows")
    split: float = setting(
        0.5,
        "share of the held-out split's families the thresholds are chosen on; the report's held-out metrics "
        "are measured on the other families (never on the rows the thresholds were chosen on)",
    )
    min_rows: int = setting(
        100,
        "calibration rows (safe and unsafe both present) a language needs for its own threshold; fewer: the "
        "overall one (and the overall one needs as many, else guardrail.threshold)",
    )

    def check(self, key: str) -> None:
        check_choice(self.rule, CalibrationRule, f"{key}.rule")
        check(0.0 < self.target_fpr < 1.0, f"{key}.target_fpr", f"must be in (0, 1), got {self.target_fpr}")
        check(0.0 < self.split < 1.0, f"{key}.split", f"must be in (0, 1), got {self.split}")
        check(self.min_rows >= 1, f"{key}.min_rows", f"must be >= 1, got {self.min_rows}")


@dataclass
class GuardrailConfig(Section):
    model: ModelConfig = setting(
        factory=lambda: ModelConfig(name_or_path="tiny"),
        help="the base model, loaded as a sequence classifier with one output per category",
    )
    train: GuardrailTrainConfig = setting(factory=GuardrailTrainConfig, help="training recipe")
    threshold: float = setting(
        0.5,
        "unsafe = the largest category probability > threshold (DuoGuard: 0.5); the game decides with it, "
        "duoguard-guardrail replaces it in its checkpoint by the calibrated ones (guardrail.calibration)",
    )
    calibration: CalibrationConfig = setting(
        factory=CalibrationConfig, help="decision thresholds chosen on part of the held-out split"
    )
    max_length: int = setting(512, "inputs are cut to this many tokens (DuoGuard: 512)")
    response_template: str = setting(
        "User: {prompt}\n\nAgent: {response}",
        "how a (prompt, response) pair is shown to the classifier for response classification",
    )
    predict_batch_size: int = setting(64, "most texts in one inference batch")
    predict_max_tokens: int | None = setting(
        None, "token budget of one inference batch (longest x count); null = 2,048 on CPU, 65,536 on GPU"
    )
    init_checkpoint: str | None = setting(None, "a trained guardrail checkpoint to start from instead of `model`")
    num_workers: int = setting(
        1,
        "ranks that train the guardrail, one device each, joined by torch.distributed (gloo on CPUs): "
        "duoguard-guardrail launches them on this node; the game needs runtime=ray (one actor per rank, each "
        "with runtime.roles.guardrail)",
    )

    def check(self, key: str) -> None:
        self.model.check(f"{key}.model")
        check(
            self.model.attn_implementation is None,
            f"{key}.model.attn_implementation",
            "is not applied to the guardrail yet (only to causal LMs: generator, target, LLM judges); leave it null",
        )
        check(0.0 < self.threshold < 1.0, f"{key}.threshold", f"must be in (0, 1), got {self.threshold}")
        check(self.max_length > 0, f"{key}.max_length", "must be > 0")
        check(
            "{prompt}" in self.response_template and "{response}" in self.response_template,
            f"{key}.response_template",
            "must contain {prompt} and {response}",
        )
        check(self.predict_batch_size > 0, f"{key}.predict_batch_size", "must be > 0")
        check(self.num_workers >= 1, f"{key}.num_workers", "must be >= 1")
        self.train.check(f"{key}.train")
        self.calibration.check(f"{key}.calibration")
