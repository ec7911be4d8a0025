"""Helpfulness scorers: which of two answers to a prompt is preferred (SafeDPO's y_w, REFERENCE §3).

- `RewardModel`: a sequence classifier with one logit (a reward model, e.g. trained on
  preference data); the score is that logit for the (prompt, answer) conversation.
- `LLMHelpfulnessRater`: a causal LM rating 1-5, the expectation over the digits' next-token
  probabilities (as the game's LLM judge rates).

Both expose `scores(prompts, responses) -> np.ndarray` (higher = more helpful).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from duoguard.errors import UserError
from duoguard.roles.judge import AnswerRater

PLAIN_CONVERSATION = "User: {prompt}\n\nAssistant: {response}"


class RewardModel:
    def __init__(self, model, tokenizer, *, batch_size: int = 8, max_length: int = 2048):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size, self.max_length = batch_size, max_length
        if self.model.config.pad_token_id is None:  # the classifier finds each row's last token by the pad id
            self.model.config.pad_token_id = tokenizer.pad_token_id

    @classmethod
    def from_pretrained(cls, path: str, model_cfg, *, device: str, batch_size: int = 8, key: str) -> RewardModel:
        """Load a reward model; a checkpoint that is not a one-logit sequence classifier is a UserError."""
        from transformers import AutoConfig, AutoModelForSequenceClassification

        from duoguard.models import load_tokenizer, pick_dtype, quiet_transformers

        quiet_transformers()
        trust, revision = model_cfg.trust_remote_code, model_cfg.revision
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust, revision=revision)
        arch = [a for a in (config.architectures or []) if a.endswith("ForSequenceClassification")]
        if not arch or config.num_labels != 1:
            raise UserError(
                f"{key}: {path} is not a reward model (a sequence classifier with one logit): architectures "
                f"{config.architectures}, {config.num_labels} labels"
            )
        model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=pick_dtype(model_cfg.precision, device), trust_remote_code=trust, revision=revision
        ).to(device)
        return cls(model, load_tokenizer(path, trust_remote_code=trust, revision=revision), batch_size=batch_size)

    def text(self, prompt: str, response: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False
            )
        return PLAIN_CONVERSATION.format(prompt=prompt, response=response)

    @torch.inference_mode()
    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        texts = [self.text(p, r) for p, r in zip(prompts, responses, strict=True)]
        out = np.zeros(len(texts), dtype=np.float32)
        device = next(self.model.parameters()).device
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[i : i + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            ).to(device)
            out[i : i + len(enc["input_ids"])] = self.model(**enc).logits[:, 0].float().cpu().numpy()
        return out


class LLMHelpfulnessRater(AnswerRater):
    """A causal LM rates 1-5 how helpful each answer is; `template` has {prompt} and {response}."""

    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return np.array(self.rate(list(zip(prompts, responses, strict=True))), dtype=np.float32)
