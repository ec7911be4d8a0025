"""Sections that name a model and how it is loaded and trained (shared by every role)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from duoguard.config.base import Choice, Section, check, setting


class Precision(Choice):
    auto = "auto"  # bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class LRScheduler(Choice):
    """Learning-rate schedules (transformers' `SchedulerType` names)."""

    linear = "linear"
    cosine = "cosine"
    cosine_with_restarts = "cosine_with_restarts"
    polynomial = "polynomial"
    constant = "constant"
    constant_with_warmup = "constant_with_warmup"
    inverse_sqrt = "inverse_sqrt"
    cosine_with_min_lr = "cosine_with_min_lr"
    warmup_stable_decay = "warmup_stable_decay"


@dataclass
class TinyModelConfig(Section):
    """Shape of the offline random-initialised Qwen2 built when `name_or_path: tiny`."""

    hidden_size: int = setting(64, "width of the tiny model")
    intermediate_size: int = setting(128, "MLP width")
    num_layers: int = setting(2, "transformer layers")
    num_heads: int = setting(4, "attention heads")
    num_kv_heads: int = setting(2, "key/value heads (grouped-query attention as in Qwen2)")
    vocab_size: int = setting(1024, "size the byte-level BPE tokenizer is trained to on the seed texts")
    max_position_embeddings: int = setting(2048, "longest sequence, in tokens")
    seed: int = setting(0, "seed of the random weights (same seed, same model)")


ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flex_attention")


@dataclass
class ModelConfig(Section):
    name_or_path: str = setting(
        MISSING, "a hub id (Qwen/Qwen2.5-0.5B), a local checkpoint folder, or 'tiny' for the offline tiny model"
    )
    revision: str | None = setting(None, "hub revision (branch, tag or commit) to pin; null = the default branch")
    trust_remote_code: bool = setting(False, "allow the model's own code from the hub (only for models you trust)")
    precision: Precision = setting(
        Precision.auto, "compute precision: auto = bf16 on GPUs that have it, fp16 on other GPUs, fp32 on CPU"
    )
    tiny: TinyModelConfig = setting(factory=TinyModelConfig, help="the tiny model's shape (name_or_path: tiny)")
    attn_implementation: str | None = setting(
        None,
        "transformers' attention kernel for a causal LM (generator, target, LLM judges): sdpa, eager, "
        "flash_attention_2 or flex_attention; null = transformers' default (sdpa). Measured on an H200: the "
        "tiny generator's bf16 GRPO steps got NaN gradients with sdpa over left-padded batches, none with eager",
    )

    def check(self, key: str) -> None:
        check(bool(self.name_or_path), f"{key}.name_or_path", "is empty")
        check(
            self.attn_implementation in (None, *ATTN_IMPLEMENTATIONS),
            f"{key}.attn_implementation",
            f"must be one of {', '.join(ATTN_IMPLEMENTATIONS)} or null",
        )


@dataclass
class SamplingConfig(Section):
    """How a causal LM samples (transformers' `generate` arguments)."""

    max_new_tokens: int = setting(128, "longest completion, in tokens")
    temperature: float = setting(1.0, "sampling temperature (> 0)")
    top_p: float = setting(1.0, "nucleus sampling mass, in (0, 1]; 1 = off")
    top_k: int = setting(0, "sample from the k most likely tokens; 0 = off")
    repetition_penalty: float = setting(1.0, "CTRL's repetition penalty; 1 = off")

    def check(self, key: str) -> None:
        check(self.max_new_tokens >= 1, f"{key}.max_new_tokens", "must be >= 1")
        check(self.temperature > 0, f"{key}.temperature", "must be > 0")
        check(0 < self.top_p <= 1, f"{key}.top_p", "must be in (0, 1]")
        check(self.top_k >= 0, f"{key}.top_k", "must be >= 0")


@dataclass
class LoraSettings(Section):
    """LoRA adapters (Hu et al., arXiv 2106.09685) through PEFT, merged into the model on save."""

    r: int = setting(16, "rank of the adapters")
    lora_alpha: int = setting(32, "scale numerator: updates are scaled by lora_alpha / r")
    lora_dropout: float = setting(0.05, "dropout on the adapters' input")
    target_modules: list[str] = setting(
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], help="names of the linear layers to adapt"
    )

    def check(self, key: str) -> None:
        check(self.r >= 1, f"{key}.r", "must be >= 1")
        check(len(self.target_modules) > 0, f"{key}.target_modules", "needs at least one module name")
