"""The target: an LLM being made safer. It answers prompts (for pair building and evaluation).

A prompt is shown to the target the same way when it answers and when SafeDPO trains it: with
the tokenizer's chat template when there is one, else through `target.prompt_template`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from duoguard.config import TargetConfig
from duoguard.models import load_causal_lm, pick_device


class Target:
    def __init__(self, model_path: str, cfg: TargetConfig, *, device: str = "auto"):
        self.cfg = cfg
        self.device = pick_device(device)
        self.model, self.tokenizer = load_causal_lm(model_path, self.cfg.model, self.device)
        self.model.eval()
        self.path = model_path

    @property
    def chat(self) -> bool:
        return self.cfg.use_chat_template and bool(getattr(self.tokenizer, "chat_template", None))

    def messages(self, prompt: str, system: str | None = None) -> list[dict[str, str]]:
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]

    def render(self, prompt: str, system: str | None = None) -> str:
        """The exact text the model continues from."""
        if self.chat:
            return self.tokenizer.apply_chat_template(
                self.messages(prompt, system), tokenize=False, add_generation_prompt=True
            )
        return self.cfg.prompt_template.format(system=f"{system}\n\n" if system else "", prompt=prompt)

    @torch.inference_mode()
    def answer(
        self,
        prompts: Sequence[str],
        *,
        n: int = 1,
        system: str | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> list[list[str]]:
        """`n` sampled answers per prompt (greedy when temperature is 0), in input order."""
        from transformers import set_seed

        set_seed(seed)
        s = self.cfg.sampling
        texts = [self.render(p, system) for p in prompts]
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: list[list[str]] = [[] for _ in texts]
        batch_size = self.cfg.batch_size
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="target answers", unit="batch", leave=False)
        greedy = s.temperature == 0.0
        for batch in batches:
            enc = self.tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(self.model.device)
            gen = self.model.generate(
                **enc,
                max_new_tokens=s.max_new_tokens,
                do_sample=not greedy,
                num_return_sequences=n,
                pad_token_id=self.tokenizer.pad_token_id,
                **({} if greedy else {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k or None}),
            )
            decoded = self.tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for j, i in enumerate(batch):
                out[i] = [d.strip() for d in decoded[j * n : (j + 1) * n]]
        return out

    def save(self, path: str | os.PathLike) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
