"""A Llama-Guard-style causal LM as a judge of answers (REFERENCE §6).

The taxonomy's categories are listed in the prompt; the guard's verdict is its first generated
token, "safe" or "unsafe". P(unsafe) is read from that token's distribution in one forward pass (no
sampling): p(unsafe) / (p(unsafe) + p(safe)), i.e. sigmoid(logit_unsafe - logit_safe), so mass the
guard puts on other tokens does not count either way. Same surface as the `Guardrail`
(`unsafe_scores`, `is_unsafe`, `threshold`), so callers do not care which judge they get; an empty
or blank answer is never unsafe and never shown to the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from duoguard.config import LLAMA_GUARD_TEMPLATE
from duoguard.errors import UserError, check_batch


class LLMGuard:
    def __init__(
        self,
        model,
        tokenizer,
        *,
        categories: Sequence[tuple[str, str]],
        template: str = LLAMA_GUARD_TEMPLATE,
        use_chat_template: bool = False,
        threshold: float = 0.5,
        batch_size: int = 8,
        unsafe_token: str = "unsafe",
        safe_token: str = "safe",
        key: str = "judge",
    ):
        self.model, self.tokenizer = model.eval(), tokenizer
        tokenizer.padding_side = "left"  # the last position of every row is then the next token's
        self.template, self.use_chat_template = template, use_chat_template
        self.threshold, self.batch_size = threshold, batch_size
        self.categories = "\n".join(f"{code}: {name}." for code, name in categories)
        self.unsafe_id = self._first_token(unsafe_token, f"{key}.unsafe_token")
        self.safe_id = self._first_token(safe_token, f"{key}.safe_token")
        if self.unsafe_id == self.safe_id:
            raise UserError(
                f"{key}: '{unsafe_token}' and '{safe_token}' start with the same token: the guard's first token "
                "cannot tell them apart (set unsafe_token / safe_token)"
            )

    def _first_token(self, text: str, key: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise UserError(f"{key}: '{text}' encodes to no token")
        return ids[0]

    def prompt(self, prompt: str, response: str | None) -> str:
        """The text the guard continues: response classification (Agent) or, without a response, the prompt's."""
        if response is None:
            role, conversation = "User", f"User: {prompt}"
        else:
            role, conversation = "Agent", f"User: {prompt}\n\nAgent: {response}"
        body = self.template.format(role=role, categories=self.categories, conversation=conversation)
        if self.use_chat_template and getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
            )
        return body

    @torch.inference_mode()
    def unsafe_scores(
        self, prompts: Sequence[str], responses: Sequence[str | None] | None = None, *, progress: bool = False
    ) -> np.ndarray:
        """P(unsafe) per (prompt, response), 0 for an empty response; prompt classification without responses."""
        check_batch(prompts, responses, "unsafe_scores()")
        pairs = list(zip(prompts, responses if responses is not None else [None] * len(prompts), strict=True))
        out = np.zeros(len(pairs), dtype=np.float32)
        todo = [i for i, (_, r) in enumerate(pairs) if r is None or r.strip()]
        device = next(self.model.parameters()).device
        batches = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="llm guard", unit="batch", leave=False)
        for batch in batches:
            texts = [self.prompt(*pairs[i]) for i in batch]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            logits = self.model(**enc).logits[:, -1, :].float()  # left padding: the last position is the next token
            out[batch] = torch.sigmoid(logits[:, self.unsafe_id] - logits[:, self.safe_id]).cpu().numpy()
        return out

    def is_unsafe(self, prompts: Sequence[str], responses: Sequence[str | None] | None = None, **kw) -> np.ndarray:
        return self.unsafe_scores(prompts, responses, **kw) > self.threshold
