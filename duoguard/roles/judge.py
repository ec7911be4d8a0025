"""The judge: does a candidate keep its intended label and is it usable?

Rule checks always run (cheap, deterministic, each verdict says which rule failed):

- `not_empty`       at least `min_chars` characters after trimming
- `length`          at most `max_chars`, and length / seed length within [min_length_ratio, max_length_ratio]
- `not_copy`        difflib similarity to the seed at most `max_seed_similarity`
- `not_degenerate`  mostly letters, no replacement characters, not looping (one word or repeated
                    word trigrams making up more than `max_repeat_fraction`)
- `language`        langdetect's top language is the requested one with confidence >= min_language_confidence;
                    on a text with fewer than `min_language_letters` letters the check is unsure and does not
                    reject (langdetect guesses wildly on a few words: "Tell me a joke" -> Finnish). It reads
                    the same text the guardrail scores and the pool keeps. langdetect knows 55 languages
                    (all of data.languages' defaults: en, fr, es, de, it)
- `label_pattern`   unsafe candidates match `label_pattern`, safe ones do not (toy worlds, marker tests)
- `held_out`        no candidate matches `held_out_pattern`: what is held out from the game (an evaluation
                    exploit's words) never reaches the pool, so the guardrail never trains on it

An optional LLM judge then rates each surviving candidate 1-5 for "is a <label> request in
<language> about <category>", as DuoGuard filtered with Llama-3.1-8B-Instruct. The rating is the
expectation over the next-token distribution of the digits 1-5 (one forward pass, no sampling).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from duoguard.config import JudgeConfig, JudgeRule, LabelCheck
from duoguard.data.record import Verdict
from duoguard.errors import UserError
from duoguard.prompts import LANGUAGE_NAMES


@dataclass
class Candidate:
    text: str
    seed_text: str
    intended_unsafe: bool
    language: str
    category: str


def _letters_fraction(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / max(len(chars), 1)


def _repeat_fraction(text: str) -> float:
    """How repetitive: the larger of the top word's share and the share of repeated word trigrams."""
    words = text.casefold().split()
    if len(words) < 4:
        return 0.0
    top_word = Counter(words).most_common(1)[0][1] / len(words)
    trigrams = list(zip(words, words[1:], words[2:]))
    repeated_trigrams = 1.0 - len(set(trigrams)) / len(trigrams)
    return max(top_word, repeated_trigrams)


class Judge:
    def __init__(self, cfg: JudgeConfig, llm: LLMJudge | None = None):
        cfg.check("judge")  # a judge built outside an app (tests, notebooks) is checked too
        self.cfg = cfg
        self.rules = [JudgeRule(r) for r in cfg.rules]
        if cfg.label_check == LabelCheck.pattern and JudgeRule.label_pattern not in self.rules:
            self.rules.append(JudgeRule.label_pattern)  # the label check runs whatever the rules list
        if cfg.label_check == LabelCheck.llm and llm is None:
            raise UserError("judge.label_check=llm but no LLM judge was built (judge.llm.model)")
        self.pattern = re.compile(cfg.label_pattern) if cfg.label_pattern else None
        self.held_out = re.compile(cfg.held_out_pattern) if cfg.held_out_pattern else None
        self.llm = llm

    def _failures(self, c: Candidate) -> list[str]:
        cfg, text, fails = self.cfg, c.text.strip(), []
        for rule in self.rules:
            if rule == "not_empty" and len(text) < cfg.min_chars:
                fails.append("not_empty")
            elif rule == "length":
                ratio = len(text) / max(len(c.seed_text), 1)
                if len(text) > cfg.max_chars or not cfg.min_length_ratio <= ratio <= cfg.max_length_ratio:
                    fails.append("length")
            elif rule == "not_copy":
                sim = difflib.SequenceMatcher(None, text.casefold(), c.seed_text.casefold()).ratio()
                if sim > cfg.max_seed_similarity:
                    fails.append("not_copy")
            elif rule == "not_degenerate":
                if (
                    "\ufffd" in text
                    or _letters_fraction(text) < cfg.min_letter_fraction
                    or _repeat_fraction(text) > cfg.max_repeat_fraction
                ):
                    fails.append("not_degenerate")
            elif rule == "language" and not language_matches(text, c.language, cfg):
                fails.append("language")
            elif rule == "label_pattern" and bool(self.pattern.search(text)) != c.intended_unsafe:
                fails.append("label_pattern")
            elif rule == "held_out" and self.held_out.search(text):
                fails.append("held_out")
        return fails

    def judge(self, candidates: Sequence[Candidate]) -> list[Verdict]:
        verdicts = [
            Verdict(keep=False, reasons=f) if f else Verdict(keep=True) for f in map(self._failures, candidates)
        ]
        if self.llm is not None:
            todo = [i for i, v in enumerate(verdicts) if v.keep]
            ratings = self.llm.rate([candidates[i] for i in todo])
            for i, rating in zip(todo, ratings, strict=True):
                verdicts[i].rating = rating
                if rating < self.llm.min_rating:
                    verdicts[i].keep = False
                    verdicts[i].reasons.append("llm_rating")
        return verdicts


def language_matches(text: str, language: str, cfg: JudgeConfig) -> bool:
    """The language rule: True when `text` is in `language`, or too short for anyone to tell (unsure)."""
    if sum(ch.isalpha() for ch in text) < cfg.min_language_letters:
        return True
    return detect_language(text, cfg.min_language_confidence) == language


def detect_language(text: str, min_confidence: float = 0.5) -> str | None:
    """ISO 639-1 code of `text`, or None when unsure. langdetect, seeded for repeatable answers."""
    from langdetect import DetectorFactory, LangDetectException, detect_langs

    DetectorFactory.seed = 0
    try:
        best = detect_langs(text)[0]
    except LangDetectException:
        return None
    return best.lang.split("-")[0] if best.prob >= min_confidence else None


class LLMJudge:
    """A causal LM asked for a 1-5 rating; the rating is read off the next-token distribution."""

    def __init__(self, model, tokenizer, *, template: str, min_rating: float = 3.0, batch_size: int = 16):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.template, self.min_rating, self.batch_size = template, min_rating, batch_size
        self.digit_ids = [self._digit_id(str(d)) for d in range(1, 6)]

    def _digit_id(self, digit: str) -> int:
        for text in (digit, " " + digit):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                return ids[0]
        raise UserError(f"judge.llm: the tokenizer has no single token for the digit {digit}")

    def body(self, c: Candidate) -> str:
        """The question for one item: the template with its fields filled."""
        return self.template.format(
            label="unsafe" if c.intended_unsafe else "safe",
            language=LANGUAGE_NAMES.get(c.language, c.language),
            category=c.category,
            text=c.text,
        )

    def prompt(self, c) -> str:
        """The question as the model reads it: a user turn under its chat template, when it has one."""
        body = self.body(c)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
            )
        return body

    def rate(self, candidates: Sequence[Candidate]) -> list[float]:
        import torch

        out: list[float] = []
        device = next(self.model.parameters()).device
        digits = torch.tensor(self.digit_ids, device=device)
        scale = torch.arange(1, 6, dtype=torch.float32, device=device)
        with torch.inference_mode():
            for i in range(0, len(candidates), self.batch_size):
                texts = [self.prompt(c) for c in candidates[i : i + self.batch_size]]
                enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                logits = self.model(**enc).logits[:, -1, :]  # left padding: the last position is the next token
                probs = torch.softmax(logits.float()[:, digits], dim=-1)
                out.extend((probs * scale).sum(-1).tolist())
        return out


class AnswerRater(LLMJudge):
    """An LLM rating (prompt, answer) pairs 1-5; `template` has {prompt} and {response}."""

    def body(self, c: tuple[str, str]) -> str:
        return self.template.format(prompt=c[0], response=c[1])
