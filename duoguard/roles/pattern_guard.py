"""Regular expressions as the judge of answers (`kind: pattern`), for worlds whose truth is known.

An answer is unsafe exactly when `pattern` matches it and `prompt_pattern` matches its prompt (a
pattern left null matches anything); a prompt alone is unsafe when `prompt_pattern` matches it. Same
surface as the `Guardrail` (`unsafe_scores`, `is_unsafe`, `threshold`); scores are 0 or 1, and an empty
or blank answer is never unsafe.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from duoguard.config import compile_regex
from duoguard.errors import UserError, check_batch


class PatternGuard:
    threshold = 0.5

    def __init__(self, pattern: str | None, prompt_pattern: str | None, *, key: str = "judge"):
        if not pattern and not prompt_pattern:
            raise UserError(f"{key}: a pattern judge needs pattern or prompt_pattern")
        self.pattern = compile_regex(pattern, f"{key}.pattern") if pattern else None
        self.prompt_pattern = compile_regex(prompt_pattern, f"{key}.prompt_pattern") if prompt_pattern else None

    @staticmethod
    def _matches(regex: re.Pattern | None, text: str) -> bool:
        return regex is None or bool(regex.search(text))

    def unsafe_scores(
        self, prompts: Sequence[str], responses: Sequence[str | None] | None = None, *, progress: bool = False
    ) -> np.ndarray:
        """1.0 per unsafe (prompt, response), else 0.0; prompt classification without responses."""
        check_batch(prompts, responses, "unsafe_scores()")
        if responses is None:
            if self.prompt_pattern is None:
                raise UserError("a pattern judge without prompt_pattern cannot classify prompts alone")
            return np.array([self._matches(self.prompt_pattern, p) for p in prompts], dtype=np.float32)
        return np.array(
            [
                bool(r and r.strip()) and self._matches(self.prompt_pattern, p) and self._matches(self.pattern, r)
                for p, r in zip(prompts, responses, strict=True)
            ],
            dtype=np.float32,
        )

    def is_unsafe(self, prompts: Sequence[str], responses: Sequence[str | None] | None = None, **kw) -> np.ndarray:
        return self.unsafe_scores(prompts, responses, **kw) > self.threshold
