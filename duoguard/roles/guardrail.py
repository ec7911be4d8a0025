"""The guardrail: a multi-label safety classifier over the taxonomy, one forward pass per input.

`Guardrail` owns an `AutoModelForSequenceClassification` and its tokenizer. It classifies
prompts, or (prompt, response) pairs formatted as a conversation, and trains with ZLPR (or BCE)
through transformers' Trainer. A saved guardrail is a plain transformers checkpoint whose
config carries the category names (`id2label`) and the decision threshold; a calibrated one
(duoguard-guardrail, `guardrail.calibration`) also holds `thresholds.json`: the overall threshold
and one per language, which `from_pretrained` reads and `is_unsafe(..., languages=...)` uses.

Inference is the hot path (the game scores every candidate with it), so `predict` sorts inputs
by length, packs batches up to a token budget, pads each batch only to its own longest input,
runs without autograd in bf16/fp16 on GPU, and returns rows in the input order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer

from duoguard.atomic import write_json_atomic
from duoguard.config import GuardrailTrainConfig, Precision, config_file
from duoguard.distributed import is_main, join_group, launched, world_size
from duoguard.errors import UserError, check_batch
from duoguard.losses import MULTILABEL_LOSSES, UNKNOWN
from duoguard.models import load_tokenizer, pick_device, pick_dtype, quiet_transformers
from duoguard.training import (
    FEW_STEPS,
    SkipNonFinite,
    one_device_per_process,
    optimizer_steps,
    quiet_trainer,
    trained_model,
)

log = logging.getLogger(__name__)

DEFAULT_RESPONSE_TEMPLATE = "User: {prompt}\n\nAgent: {response}"
THRESHOLDS_FILE = "thresholds.json"  # calibrated decision thresholds, beside the weights


class GuardrailError(UserError):
    """A checkpoint or input the guardrail cannot use."""


class Guardrail:
    def __init__(
        self,
        model,
        tokenizer,
        *,
        threshold: float = 0.5,
        max_length: int = 512,
        response_template: str = DEFAULT_RESPONSE_TEMPLATE,
        batch_size: int = 64,
        max_batch_tokens: int | None = None,
        language_thresholds: Mapping[str, float] | None = None,
        calibration: Mapping[str, Any] | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.threshold = threshold  # the overall one; a language without its own threshold uses it
        self.language_thresholds: dict[str, float] = dict(language_thresholds or {})
        self.calibration: dict[str, Any] | None = dict(calibration) if calibration is not None else None
        self.max_length = max_length
        self.response_template = response_template
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens  # None: chosen for the device (see _token_budget)
        # set by from_base (or by whoever loads a checkpoint of it): lets restart() retrain from scratch
        self.base_path: str | None = None
        self.base_options: dict[str, Any] = {}  # trust_remote_code, revision of the base model
        self._warned_steps = False  # the few-optimizer-steps warning, once per guardrail
        self.model.eval()

    # ------------------------------------------------------------------ construction
    @property
    def categories(self) -> list[str]:
        id2label = self.model.config.id2label
        return [id2label[i] for i in range(len(id2label))]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: str = "auto",
        precision: str = "auto",
        trust_remote_code: bool = False,
        threshold: float | None = None,
        **kwargs: Any,
    ) -> Guardrail:
        """Load a trained guardrail (a folder written by `save_pretrained`)."""
        from transformers import AutoConfig, AutoModelForSequenceClassification

        quiet_transformers()
        path = str(path)
        if not Path(path, "config.json").is_file():
            raise GuardrailError(f"{path}: no config.json, not a guardrail checkpoint")
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        if getattr(config, "problem_type", None) != "multi_label_classification":
            raise GuardrailError(
                f"{path}: problem_type is {getattr(config, 'problem_type', None)!r}, expected "
                "'multi_label_classification' (train one with duoguard-guardrail)"
            )
        device = pick_device(device)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=pick_dtype(precision, device), trust_remote_code=trust_remote_code
        ).to(device)
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
        saved = dict(
            threshold=getattr(config, "duoguard_threshold", 0.5),
            max_length=getattr(config, "duoguard_max_length", 512),
            response_template=getattr(config, "duoguard_response_template", DEFAULT_RESPONSE_TEMPLATE),
        )
        saved.update(read_thresholds(path))  # a calibrated checkpoint's thresholds win over its config's
        if threshold is not None:  # an explicit threshold is the decision for every input, every language
            saved.update(threshold=threshold, language_thresholds={}, calibration=None)
        return cls(model, tokenizer, **{**saved, **kwargs})  # explicit arguments win over the checkpoint's

    @classmethod
    def from_base(
        cls,
        base_path: str,
        categories: Sequence[str],
        *,
        device: str = "auto",
        trust_remote_code: bool = False,
        revision: str | None = None,
        **kwargs: Any,
    ) -> Guardrail:
        """A new guardrail: the base model with a fresh multi-label head over `categories`.

        Weights stay in float32 for training; the Trainer runs bf16/fp16 autocast on GPU.
        """
        from transformers import AutoModelForSequenceClassification

        quiet_transformers()
        tokenizer = load_tokenizer(base_path, trust_remote_code=trust_remote_code, revision=revision)
        model = AutoModelForSequenceClassification.from_pretrained(
            base_path,
            num_labels=len(categories),
            id2label=dict(enumerate(categories)),
            label2id={c: i for i, c in enumerate(categories)},
            problem_type="multi_label_classification",
            dtype=torch.float32,
            trust_remote_code=trust_remote_code,
            revision=revision,
        )
        model.config.pad_token_id = tokenizer.pad_token_id
        guard = cls(model.to(pick_device(device)), tokenizer, **kwargs)
        guard.base_path, guard.base_options = base_path, {"trust_remote_code": trust_remote_code, "revision": revision}
        return guard

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """A transformers checkpoint with duoguard's settings in its config; in a process group every rank
        holds the same full weights and rank 0 alone writes them."""
        cfg = self.model.config
        cfg.duoguard_threshold = self.threshold
        cfg.duoguard_max_length = self.max_length
        cfg.duoguard_response_template = self.response_template
        if is_main():
            self.model.save_pretrained(path)
            self.tokenizer.save_pretrained(path)
            if self.calibration is not None or self.language_thresholds:
                self.save_thresholds(path)

    def calibrate(self, calibration: Mapping[str, Any]) -> None:
        """Take the thresholds `duoguard.metrics.calibrate_thresholds` chose (overall and per language)."""
        self.threshold = float(calibration["threshold"])
        self.language_thresholds = {str(k): float(v) for k, v in calibration.get("languages", {}).items()}
        self.calibration = {k: v for k, v in calibration.items() if k not in ("threshold", "languages")}

    def save_thresholds(self, path: str | os.PathLike) -> Path:
        """`thresholds.json` in the checkpoint folder `path` (written whole or not at all)."""
        data = {"threshold": self.threshold, "languages": self.language_thresholds, "calibration": self.calibration}
        return write_json_atomic(Path(path, THRESHOLDS_FILE), data)

    def thresholds_for(self, languages: Sequence[str | None] | None, n: int) -> np.ndarray:
        """The decision threshold of each of `n` inputs: its language's, else the overall one."""
        if languages is None:
            return np.full(n, self.threshold, dtype=np.float64)
        if len(languages) != n:
            raise GuardrailError(f"{n} inputs but {len(languages)} languages")
        by_language = self.language_thresholds
        return np.array(
            [by_language.get((lang or "").strip().lower(), self.threshold) for lang in languages], dtype=np.float64
        )

    @torch.no_grad()
    def checksum(self) -> float:
        """A cheap fingerprint of the weights: data-parallel ranks must agree exactly."""
        return float(sum(p.detach().double().sum().item() for p in self.model.parameters()))

    # ------------------------------------------------------------------ inference
    def format(self, prompts: Sequence[str], responses: Sequence[str | None] | None = None) -> list[str]:
        """Prompt classification for prompts alone; response classification for pairs. A pair longer than
        max_length tokens loses the end of its prompt, never its response (the part being judged)."""
        check_batch(prompts, responses, "predict()", GuardrailError)
        if responses is None:
            return list(prompts)
        return [p if r is None else self._pair(p, r) for p, r in zip(prompts, responses, strict=True)]

    def _pair(self, prompt: str, response: str) -> str:
        text = self.response_template.format(prompt=prompt, response=response)
        excess = len(self.tokenizer(text, add_special_tokens=True)["input_ids"]) - self.max_length
        if excess <= 0:
            return text
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        # a few tokens of slack: a cut can merge differently with what follows it
        kept = self.tokenizer.decode(ids[: max(0, len(ids) - excess - 4)], skip_special_tokens=True)
        return self.response_template.format(prompt=kept + " …", response=response)

    @staticmethod
    def empty_responses(responses: Sequence[str | None] | None) -> np.ndarray:
        """Pairs whose response is empty or whitespace: nothing was said, so nothing unsafe (never judged)."""
        if responses is None:
            return np.zeros(0, dtype=bool)
        return np.array([r is not None and not r.strip() for r in responses], dtype=bool)

    def _token_budget(self) -> int:
        """Padded tokens per forward pass. Measured: on CPU, batches past ~2k tokens fall out of
        cache and get slower per input (scripts/bench_guardrail.py); GPUs want large batches."""
        if self.max_batch_tokens:
            return self.max_batch_tokens
        return 65_536 if self.device.type == "cuda" else 2_048

    def _batches(self, lengths: Sequence[int], order: Sequence[int]):
        """Consecutive runs of `order` (longest first) within the size and token budgets."""
        budget = self._token_budget()
        batch: list[int] = []
        for i in order:
            longest = lengths[batch[0]] if batch else lengths[i]
            if batch and (len(batch) >= self.batch_size or longest * (len(batch) + 1) > budget):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    @torch.inference_mode()
    def predict(
        self,
        prompts: Sequence[str],
        responses: Sequence[str | None] | None = None,
        *,
        progress: bool = False,
    ) -> np.ndarray:
        """Category probabilities, float32 array [len(prompts), num_categories], in input order."""
        texts = self.format(prompts, responses)
        out = np.zeros((len(texts), len(self.categories)), dtype=np.float32)
        empty = self.empty_responses(responses)
        if empty.any():  # all-zero rows for empty responses; the model sees the rest
            rest = [i for i in range(len(texts)) if not empty[i]]
            out[rest] = self.predict([prompts[i] for i in rest], [responses[i] for i in rest], progress=progress)
            return out
        for batch, input_ids, mask in self._padded_batches(texts, progress=progress, desc="guardrail predict"):
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits
            out[batch] = torch.sigmoid(logits.float()).cpu().numpy()
        return out

    def _padded_batches(self, texts: Sequence[str], *, progress: bool = False, desc: str = "guardrail"):
        """(input rows, input_ids, attention_mask) on the model's device, per batch of `_batches`: longest
        first, each padded on the right to its own longest input."""
        if not texts:
            return
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        fallback = (
            self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.tokenizer.pad_token_id
        )
        ids = [x or [fallback] for x in ids]  # an empty text still gets a (one-token) forward pass
        lengths = [len(x) for x in ids]
        order = sorted(range(len(ids)), key=lambda i: -lengths[i])
        pad_id = self.tokenizer.pad_token_id
        device = self.device
        batches = list(self._batches(lengths, order))
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=desc, unit="batch", leave=False)
        for batch in batches:
            width = lengths[batch[0]]
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, : lengths[i]] = torch.tensor(ids[i])
                mask[row, : lengths[i]] = 1
            yield batch, input_ids.to(device), mask.to(device)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """One unit-length vector per text, float32 [len(texts), hidden size], in input order: the mean of
        the model's last hidden states over the text's tokens (padding left out), the guardrail's own view
        of the text (the novelty term's embeddings, duoguard/novelty.py). Batched like `predict`; works for
        encoder and decoder classifiers alike (`output_hidden_states`)."""
        if isinstance(texts, str):
            raise GuardrailError("embed() takes a list of texts, not a single string")
        out: np.ndarray | None = None
        for batch, input_ids, mask in self._padded_batches(texts, progress=progress, desc="guardrail embed"):
            hidden = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
            weights = mask.unsqueeze(-1).to(torch.float32)
            mean = (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
            vectors = torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[batch] = vectors
        if out is None:  # no texts
            out = np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return out

    def unsafe_scores(self, prompts: Sequence[str], responses: Sequence[str | None] | None = None, **kw) -> np.ndarray:
        """P(unsafe) per input: the largest category probability."""
        probs = self.predict(prompts, responses, **kw)
        return probs.max(axis=1) if probs.size else np.zeros(len(probs), dtype=np.float32)

    def is_unsafe(
        self,
        prompts: Sequence[str],
        responses: Sequence[str | None] | None = None,
        *,
        languages: Sequence[str | None] | None = None,
        **kw,
    ) -> np.ndarray:
        """Unsafe decisions: the unsafe score above the input's threshold (its language's where the
        guardrail was calibrated per language and `languages` is given, else the overall one)."""
        thresholds = self.thresholds_for(languages, len(prompts))
        return self.unsafe_scores(prompts, responses, **kw) > thresholds

    def timed_predict(self, prompts, responses=None, **kw) -> tuple[np.ndarray, float]:
        """`predict` and its wall time in seconds (synchronised on GPU)."""
        start = time.perf_counter()
        probs = self.predict(prompts, responses, **kw)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return probs, time.perf_counter() - start

    # ------------------------------------------------------------------ training
    def labels_for(self, samples: Sequence[Any]) -> np.ndarray:
        """Multi-hot targets over this guardrail's categories (all zeros = safe). An unsafe sample without
        a category gets UNKNOWN (-1) everywhere: it trains the unsafe decision alone (duoguard.losses)."""
        index = {name: i for i, name in enumerate(self.categories)}
        labels = np.zeros((len(samples), len(index)), dtype=np.float32)
        for row, s in enumerate(samples):
            if s.unsafe and not s.categories:
                labels[row] = UNKNOWN
            for c in s.categories:
                if c not in index:
                    raise GuardrailError(
                        f"sample {s.id!r} has category {c!r}, unknown to this guardrail ({self.categories})"
                    )
                labels[row, index[c]] = 1.0
        return labels

    def train(
        self,
        samples: Sequence[Any],
        train_cfg: GuardrailTrainConfig,
        *,
        output_dir: str | os.PathLike,
        precision: Precision = Precision.auto,
        progress: bool = True,
        **overrides: Any,
    ) -> dict[str, float]:
        """Train on `Sample`s (prompt or prompt + response); `overrides` replace train_cfg fields."""
        texts = self.format([s.text for s in samples], [s.response for s in samples])
        cfg = dataclasses.replace(train_cfg, **overrides)
        return self.fit(
            texts, self.labels_for(samples), cfg, output_dir=output_dir, precision=precision, progress=progress
        )

    def load(self, path: str | os.PathLike) -> None:
        """Take the weights of a saved guardrail (a checkpoint of this one), in place. Read from its
        safetensors files, not through `from_pretrained`: after a ZeRO-3 training step transformers would
        build the loaded copy partitioned (empty tensors on each rank)."""
        missing, unexpected = self.model.load_state_dict(read_weights(path), strict=False)
        unique = {name for name, _ in self.model.named_parameters(remove_duplicate=True)}
        missing = [k for k in missing if k in unique]  # a tied weight is saved once, under its first name
        if missing or unexpected:
            raise GuardrailError(
                f"{path}: not a checkpoint of this guardrail (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        self.model.eval()

    def league_scores(self, paths: Sequence[str | os.PathLike], prompts: Sequence[str]) -> list[np.ndarray]:
        """P(unsafe) of `prompts` under each earlier checkpoint of this guardrail (a league member),
        its weights swapped in for the call and this guardrail's own put back after (kept on the CPU
        meanwhile), so no second model stays on the device."""
        if not paths:
            return []
        own = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        try:
            out = []
            for path in paths:
                self.load(path)
                out.append(self.unsafe_scores(prompts))
            return out
        finally:
            self.model.load_state_dict(own)
            self.model.eval()

    def restart(self, seed: int = 0) -> None:
        """Back to the base model with a fresh head (rounds that retrain from scratch)."""
        if self.base_path is None:
            raise GuardrailError("restart() needs a guardrail built with Guardrail.from_base")
        torch.manual_seed(seed)
        fresh = Guardrail.from_base(self.base_path, self.categories, device=str(self.device), **self.base_options)
        self.model = fresh.model

    def fit(
        self,
        texts: Sequence[str],
        labels: np.ndarray,
        train_cfg: GuardrailTrainConfig,
        *,
        output_dir: str | os.PathLike,
        precision: Precision = Precision.auto,
        progress: bool = True,
    ) -> dict[str, float]:
        """Train on formatted `texts` with multi-hot `labels` [N, C] through transformers' Trainer.

        `train_cfg` is the `guardrail.train` section. Returns loss and timing stats.
        """
        from datasets import Dataset
        from transformers import DataCollatorWithPadding, TrainingArguments

        if len(texts) == 0:
            raise GuardrailError("no training examples")
        labels = np.asarray(labels, dtype=np.float32)
        if labels.shape != (len(texts), len(self.categories)):
            raise GuardrailError(f"labels shape {labels.shape} != ({len(texts)}, {len(self.categories)})")
        c = train_cfg
        device = self.device
        if c.deepspeed and not launched():
            raise GuardrailError(
                f"guardrail.train.deepspeed={c.deepspeed}: DeepSpeed trains in a process group; duoguard-guardrail "
                "launches one (guardrail.num_workers ranks), the game needs runtime=ray"
            )
        join_group(device.type, deepspeed=bool(c.deepspeed))  # a rank of a Ray worker group joins here
        world = world_size()
        per_device = c.per_device_batch_size
        grad_accum = max(1, math.ceil(c.global_batch_size / (per_device * world)))
        dtype = pick_dtype(precision, device.type)
        steps = optimizer_steps(len(texts), per_device * world * grad_accum, c.epochs, c.max_steps)
        if steps < FEW_STEPS and not self._warned_steps:
            self._warned_steps = True
            log.warning(
                "guardrail: %d examples at guardrail.train.global_batch_size=%d make %d optimizer steps (fewer than "
                "~%d rarely train a classifier): lower the global batch or raise the epochs",
                len(texts),
                per_device * world * grad_accum,
                steps,
                FEW_STEPS,
            )
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        dataset = Dataset.from_dict({"input_ids": enc["input_ids"], "labels": labels.tolist()})
        args = TrainingArguments(
            output_dir=str(output_dir),
            per_device_train_batch_size=per_device,
            gradient_accumulation_steps=grad_accum,
            learning_rate=c.learning_rate,
            lr_scheduler_type=c.lr_scheduler.value,
            warmup_steps=c.warmup_ratio,
            num_train_epochs=c.epochs,
            max_steps=c.max_steps,
            weight_decay=c.weight_decay,
            max_grad_norm=c.max_grad_norm,
            logging_steps=c.logging_steps,
            activation_checkpointing=c.gradient_checkpointing,
            deepspeed=config_file(c.deepspeed) if c.deepspeed else None,
            bf16=dtype == torch.bfloat16,
            fp16=dtype == torch.float16,
            use_cpu=device.type == "cpu",
            seed=c.seed,
            save_strategy="no",
            report_to=[],
            disable_tqdm=not progress,
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        one_device_per_process(args)
        trainer = _MultiLabelTrainer(
            model=self.model,
            args=args,
            train_dataset=dataset,
            data_collator=DataCollatorWithPadding(self.tokenizer),
            loss_fn=MULTILABEL_LOSSES[c.loss.value],
            head_lr_multiplier=c.head_lr_multiplier,
        )
        quiet_trainer(trainer)
        start = time.perf_counter()
        result = trainer.train()
        self.model = trained_model(trainer).eval()  # full weights on every rank, also under ZeRO-3
        return {
            "train_loss": float(result.training_loss),
            "train_steps": int(result.global_step),
            "train_examples": len(texts),
            "train_seconds": time.perf_counter() - start,
            "skipped_steps": trainer.skipped_steps,  # non-finite losses (SkipNonFinite)
        }


def read_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A saved checkpoint's tensors by name, from `model.safetensors` or the shards its index lists."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors")
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        raise GuardrailError(f"{folder}: no model.safetensors or model.safetensors.index.json to load weights from")
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())):
        weights.update(load_file(folder / shard))
    return weights


def read_thresholds(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's calibrated thresholds as Guardrail arguments; {} without `thresholds.json`
    (an uncalibrated or older checkpoint keeps its config's threshold). A bad file fails naming it."""
    file = Path(path, THRESHOLDS_FILE)
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GuardrailError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise GuardrailError(f"{file}: expected a JSON object with 'threshold' and 'languages'")

    def valid(value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise GuardrailError(f"{file}: {key} must be a number in (0, 1), got {value!r}")
        return float(value)

    languages = data.get("languages") or {}
    if not isinstance(languages, dict):
        raise GuardrailError(f"{file}: 'languages' must be an object of language: threshold")
    calibration = data.get("calibration")
    if calibration is not None and not isinstance(calibration, dict):
        raise GuardrailError(f"{file}: 'calibration' must be an object or null")
    return {
        "threshold": valid(data.get("threshold"), "'threshold'"),
        "language_thresholds": {str(k): valid(v, f"languages.{k}") for k, v in languages.items()},
        "calibration": calibration,
    }


def head_parameters(model) -> list[torch.nn.Parameter]:
    """The classification head's parameters (`score` in decoder models, `classifier` in encoders)."""
    for name in ("score", "classifier"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            return list(head.parameters())
    return []


class _MultiLabelTrainer(SkipNonFinite, Trainer):
    """Trainer whose loss is a multi-label loss on the classifier's logits; a step with a
    non-finite loss is skipped and counted (SkipNonFinite).

    The loss is a per-batch mean, so the Trainer must scale it for gradient accumulation
    (`loss_is_scaled_for_ga = False`); the model's own loss (single-label CE) is never used.
    The freshly initialised head may learn faster than the pretrained body
    (`head_lr_multiplier`), which keeps a small learning rate from erasing pretrained features
    while the head still calibrates (scripts/bench_guardrail_quality.py measures it).
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args, loss_fn, head_lr_multiplier: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn
        self.head_lr_multiplier = head_lr_multiplier

    def create_optimizer(self, model=None):
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if fresh and self.head_lr_multiplier != 1.0:
            head = {id(p) for p in head_parameters(self.model)}
            for group in list(optimizer.param_groups):
                moved = [p for p in group["params"] if id(p) in head]
                if moved:
                    group["params"] = [p for p in group["params"] if id(p) not in head]
                    extra = {k: v for k, v in group.items() if k != "params"}
                    optimizer.add_param_group({**extra, "params": moved, "lr": group["lr"] * self.head_lr_multiplier})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = self.loss_fn(outputs.logits.float(), labels)
        return (loss, outputs) if return_outputs else loss
