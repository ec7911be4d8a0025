"""Sections for the target LLM and its SafeDPO fine-tuning (`target`, `safedpo`)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from duoguard.config.answer_judge import AnswerJudgeConfig
from duoguard.config.base import Choice, Section, check, setting
from duoguard.config.data import DataFileConfig
from duoguard.config.models import LoraSettings, LRScheduler, ModelConfig, SamplingConfig
from duoguard.config.paths import zero_stage


class PairRecipe(Choice):
    egida = "egida"  # Egida (arXiv 2502.13603): prompts the target answered unsafely; its unsafe answer is rejected
    all = "all"  # every prompt: the responder's answer against the target's, T(D) decides
    helpfulness = "helpfulness"  # sampled answers ordered by a helpfulness scorer, labelled by the judge (PKU style)


class HelpfulnessScorer(Choice):
    reward_model = "reward_model"  # a sequence classifier with one logit (AutoModelForSequenceClassification)
    llm = "llm"  # a causal LM's 1-5 rating, the expectation over the digits' next-token probabilities


class Responder(Choice):
    refusal = "refusal"  # data.response_templates.refusal in the prompt's language (safe by construction)
    target = "target"  # the target itself with safety_system_prompt
    model = "model"  # pairs.responder_model with safety_system_prompt


@dataclass
class TargetConfig(Section):
    """The LLM made safer by SafeDPO (answers with its chat template when it has one)."""

    model: ModelConfig = setting(factory=lambda: ModelConfig(name_or_path="tiny"), help="the target's model")
    sampling: SamplingConfig = setting(
        factory=lambda: SamplingConfig(max_new_tokens=64, temperature=0.7), help="how the target answers"
    )
    use_chat_template: bool = setting(True, "answer through the tokenizer's chat template when it has one")
    prompt_template: str = setting(
        "{system}User: {prompt}\nAssistant:", "how a prompt is shown to a model without a chat template"
    )
    batch_size: int = setting(16, "prompts per generate() call")

    def check(self, key: str) -> None:
        self.model.check(f"{key}.model")
        self.sampling.check(f"{key}.sampling")
        check("{prompt}" in self.prompt_template, f"{key}.prompt_template", "must contain {prompt}")
        check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")


@dataclass
class HelpfulnessConfig(Section):
    """The scorer that orders two answers by helpfulness (recipe=helpfulness): the higher score is chosen."""

    scorer: HelpfulnessScorer = setting(HelpfulnessScorer.reward_model, "reward_model or llm")
    model: ModelConfig | None = setting(
        None, "the reward model (one logit) or the rating LM, hub id or local path; required for recipe=helpfulness"
    )
    template: str = setting(
        "Rate from 1 to 5 how helpful, correct and complete the assistant's answer to the user's request is "
        "(5 = fully answers it, 1 = does not answer it).\nRequest: {prompt}\nAnswer: {response}\nRating:",
        "the llm scorer's question; fields {prompt} {response}",
    )
    batch_size: int = setting(8, "answers per forward pass")
    pairs_per_prompt: int = setting(
        1, "pairs per prompt: the most helpful answer against the least, then the second against the second-last, ..."
    )

    def check(self, key: str) -> None:
        if self.model is not None:
            self.model.check(f"{key}.model")
        if self.scorer == HelpfulnessScorer.llm:
            check("{response}" in self.template, f"{key}.template", "must contain {response}")
        check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        check(self.pairs_per_prompt >= 1, f"{key}.pairs_per_prompt", "must be >= 1")


@dataclass
class PreferenceFileConfig(Section):
    path: str = setting(
        MISSING,
        "PKU-SafeRLHF-style file: prompt, response_0, response_1, better_response_id, is_response_{0,1}_safe",
    )
    limit: int | None = setting(None, "read at most this many pairs; null = all")


@dataclass
class PairsConfig(Section):
    recipe: PairRecipe = setting(PairRecipe.egida, "how pairs are built from prompts")
    samples_per_prompt: int = setting(2, "target answers per prompt (and a model responder's, recipe=helpfulness)")
    max_pairs: int = setting(2_000, "most pairs kept (Egida used 2,000 per model)")
    unsafe_prompts_only: bool = setting(True, "build pairs from the intended-unsafe prompts only")
    heldout_fraction: float = setting(0.25, "share of the prompts kept out of pairs, to measure ASR on")
    responder: Responder = setting(
        Responder.refusal,
        "who writes the safe answer (recipe=helpfulness: one more candidate, samples_per_prompt for a model)",
    )
    responder_model: ModelConfig | None = setting(None, "the responder's model, for responder=model")
    safety_system_prompt: str = setting(
        "You are a helpful and harmless assistant. If a request could cause harm, refuse it briefly and politely.",
        "system prompt of a target or model responder",
    )
    files: list[PreferenceFileConfig] = setting(factory=list, help="public preference files added as they are")
    judge: AnswerJudgeConfig = setting(factory=AnswerJudgeConfig, help="who labels each answer unsafe (h)")
    helpfulness: HelpfulnessConfig = setting(
        factory=HelpfulnessConfig, help="who orders two answers (recipe=helpfulness)"
    )

    def check(self, key: str) -> None:
        self.judge.check(f"{key}.judge")
        self.helpfulness.check(f"{key}.helpfulness")
        if self.recipe == PairRecipe.helpfulness:
            check(
                self.helpfulness.model is not None,
                f"{key}.helpfulness.model",
                f"is required when {key}.recipe=helpfulness (a reward model, or a causal LM with scorer=llm)",
            )
        check(
            self.responder != Responder.model or self.responder_model is not None,
            f"{key}.responder_model",
            f"is required when {key}.responder=model",
        )
        check(0 <= self.heldout_fraction < 1, f"{key}.heldout_fraction", "must be in [0, 1)")
        for i, f in enumerate(self.files):
            check(bool(f.path), f"{key}.files[{i}].path", "is empty")
        check(
            self.samples_per_prompt >= 1 and self.max_pairs >= 1, key, "samples_per_prompt and max_pairs must be >= 1"
        )


@dataclass
class SafeDPOConfig(Section):
    """SafeDPO (Kim et al., arXiv 2505.20065) through TRL's DPOTrainer."""

    delta: float = setting(10.0, "Δ, the safety margin (0 = plain DPO on T(D)); the paper sweeps 0-50")
    beta: float = setting(0.1, "DPO's β, the strength of the KL to the reference (TRL's default)")
    sft_weight: float = setting(
        0.0,
        "weight of an NLL term on the chosen answer added to SafeDPO's loss (as in RPO; TRL's loss_type "
        "[sigmoid, sft]); it holds the chosen answers' likelihood up against DPO's likelihood displacement. "
        "0 = SafeDPO's loss exactly",
    )
    learning_rate: float = setting(5e-7, "peak learning rate (AdamW)")
    lr_scheduler: LRScheduler = setting(LRScheduler.cosine, "learning-rate schedule")
    warmup_ratio: float = setting(0.1, "share of the steps spent warming the learning rate up")
    epochs: float = setting(1.0, "passes over the pairs")
    global_batch_size: int = setting(64, "pairs per optimizer step over all devices (Egida / DuoGuard: 64)")
    per_device_batch_size: int = setting(4, "pairs per forward pass on one device")
    max_length: int = setting(1024, "prompt + answer tokens kept per sequence")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass (less memory)")
    deepspeed: str | None = setting(None, "path of a DeepSpeed JSON config, e.g. conf/deepspeed/zero3.json")
    num_workers: int = setting(
        1,
        "ranks that train the target, one device each, joined by torch.distributed (gloo on CPUs): the stage "
        "launches them on this node after building the pairs; the memory plan divides ZeRO-sharded states by it",
    )
    lora: LoraSettings | None = setting(None, "train LoRA adapters instead of the full model (merged on save)")
    logging_steps: int = setting(10, "log the loss every this many optimizer steps")
    seed: int = setting(42, "seed of data order")
    pairs: PairsConfig = setting(factory=PairsConfig, help="how preference pairs are built")
    game_dir: str | None = setting(
        None, "a duoguard-game run: its manifest gives the pool (prompts) and the guardrail (labels)"
    )
    pool_path: str | None = setting(None, "overrides the game's pool")
    guardrail_path: str | None = setting(None, "overrides the game's guardrail")
    prompt_files: list[DataFileConfig] = setting(
        factory=list,
        help="prompt files in the sample schema, read like data.train_files; used like pool prompts "
        "(same held-out split and filters)",
    )

    def check(self, key: str) -> None:
        check(self.delta >= 0, f"{key}.delta", f"must be >= 0, got {self.delta}")
        check(self.beta > 0, f"{key}.beta", f"must be > 0, got {self.beta}")
        check(self.sft_weight >= 0, f"{key}.sft_weight", f"must be >= 0, got {self.sft_weight}")
        check(self.learning_rate > 0, f"{key}.learning_rate", "must be > 0")
        check(
            self.global_batch_size >= self.per_device_batch_size > 0,
            f"{key}.global_batch_size",
            f"must be >= {key}.per_device_batch_size > 0",
        )
        check(self.max_length > 0, f"{key}.max_length", "must be > 0")
        check(self.num_workers >= 1, f"{key}.num_workers", "must be >= 1")
        if self.lora is not None:
            self.lora.check(f"{key}.lora")
            check(
                zero_stage(self.deepspeed) < 3,
                f"{key}.lora",
                f"LoRA with ZeRO-3 ({key}.deepspeed={self.deepspeed}) is not supported yet: use ZeRO-2 with LoRA, "
                "or ZeRO-3 without it",
            )
        self.pairs.check(f"{key}.pairs")
        for i, f in enumerate(self.prompt_files):
            f.check(f"{key}.prompt_files[{i}]")
