"""Sections for the taxonomy and the training data (`taxonomy`, `data`)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from duoguard.config.base import Choice, Section, check, setting


class OnBadRow(Choice):
    fail = "fail"  # stop with the file and line of the first bad row
    skip = "skip"  # skip bad rows, count them and report the count


class FileFormat(Choice):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    parquet = "parquet"


@dataclass
class CategoryConfig(Section):
    code: str = setting(MISSING, "short code of the category, e.g. C1 or S1")
    name: str = setting(MISSING, "canonical name; labels in data and in the guardrail's head use it")
    description: str = setting("", "one line on what the category covers (shown to LLM judges)")


@dataclass
class TaxonomyConfig(Section):
    """The safety categories (Llama Guard's point: the taxonomy is configuration, adapted per deployment)."""

    name: str = setting(MISSING, "name of the taxonomy, e.g. duoguard12")
    categories: list[CategoryConfig] = setting(MISSING, "the categories, in the order of the guardrail's outputs")
    aliases: dict[str, str] = setting(
        factory=dict, help="foreign label -> own category name, for public data sets ('' drops the label)"
    )

    def check(self, key: str) -> None:
        check(len(self.categories) > 0, f"{key}.categories", "needs at least one category")


@dataclass
class DataFileConfig(Section):
    """A training or prompt file in the sample schema, with per-file defaults for what it lacks."""

    path: str = setting(MISSING, "path of the file (jsonl, json, csv or parquet)")
    format: FileFormat | None = setting(None, "file format; null = inferred from the suffix")
    columns: dict[str, str] = setting(
        factory=dict, help="schema field -> column name in the file, e.g. {text: prompt, unsafe: is_harmful}"
    )
    language: str | None = setting(None, "language of every row, for files without a language column")
    unsafe: bool | None = setting(None, "label of rows without an `unsafe` column (e.g. harmful-only files)")
    categories: list[str] = setting(factory=list, help="categories of unsafe rows that give none")
    source: str | None = setting(None, "provenance name of the rows; null = the file name")
    limit: int | None = setting(None, "read at most this many valid rows; null = all")

    def check(self, key: str) -> None:
        check(bool(self.path), f"{key}.path", "is empty")
        check(self.limit is None or self.limit >= 1, f"{key}.limit", "must be >= 1 or null")


def _refusals() -> dict[str, str]:
    return {
        "en": "I'm sorry, but I can't help with that request.",
        "fr": "Je suis désolé, mais je ne peux pas vous aider avec cette demande.",
        "es": "Lo siento, pero no puedo ayudar con esa solicitud.",
        "de": "Es tut mir leid, aber dabei kann ich nicht helfen.",
        "it": "Mi dispiace, ma non posso aiutarti con questa richiesta.",
    }


def _compliances() -> dict[str, str]:
    return {
        "en": "Sure! Here is exactly how you can do that, step by step:",
        "fr": "Bien sûr ! Voici exactement comment faire, étape par étape :",
        "es": "¡Claro! Aquí tienes exactamente cómo hacerlo, paso a paso:",
        "de": "Klar! So machst du das genau, Schritt für Schritt:",
        "it": "Certo! Ecco esattamente come fare, passo dopo passo:",
    }


@dataclass
class ResponseTemplates(Section):
    """Content-free answers in each language (see duoguard/data/responses.py); `en` is the fallback."""

    refusal: dict[str, str] = setting(factory=_refusals, help="language -> a refusal (safe whatever the prompt)")
    comply: dict[str, str] = setting(
        factory=_compliances, help="language -> the opening of a compliant answer (unsafe after an unsafe prompt)"
    )

    def check(self, key: str) -> None:
        for kind in ("refusal", "comply"):
            check("en" in getattr(self, kind), f"{key}.{kind}", "needs an 'en' entry (the fallback)")


ATTACK_STYLES = [
    "direct",
    "roleplay",
    "hypothetical",
    "persuasion",
    "refusal_suppression",
    "prefix_injection",
    "story",
    "academic",
]


class Contaminated(Choice):
    drop = "drop"  # leave training rows that nearly copy an evaluation prompt (and their families) out
    report = "report"  # keep them, but list them in the run's decontamination report
    fail = "fail"  # stop before training, naming the first overlaps


@dataclass
class DecontaminationConfig(Section):
    """Training texts checked against every configured evaluation set (eval.benchmarks, eval.target's attacks
    and over-refusal set) before training: seeds, data.train_files, the game's pool, SafeDPO's prompts."""

    action: Contaminated = setting(Contaminated.drop, "what happens to a training text that nearly copies one")
    threshold: float = setting(
        0.5, "Jaccard similarity of character n-gram sets at which a text counts as a near-copy (see BENCHMARKS.md)"
    )
    ngram: int = setting(5, "n of the character n-grams")

    def check(self, key: str) -> None:
        check(0.0 < self.threshold <= 1.0, f"{key}.threshold", f"must be in (0, 1], got {self.threshold}")
        check(self.ngram >= 2, f"{key}.ngram", f"must be >= 2, got {self.ngram}")


@dataclass
class DataConfig(Section):
    seeds: str | None = setting(
        "builtin", "seed prompts: 'builtin' (the package's seed set), a path to a seed file, or null for none"
    )
    train_files: list[DataFileConfig] = setting(factory=list, help="more training files in the sample schema")
    languages: list[str] = setting(
        factory=lambda: ["en", "fr", "es", "de", "it"],
        help="ISO 639-1 codes the game writes in; rows in other languages are rejected",
    )
    attack_styles: list[str] = setting(
        factory=lambda: list(ATTACK_STYLES),
        help="attack styles the generator is conditioned on (Egida's jailbreak styles, a subset)",
    )
    response_examples: bool = setting(
        True, "pair every seed with refusal / compliance answers, so the guardrail learns response classification"
    )
    response_templates: ResponseTemplates = setting(factory=ResponseTemplates, help="the answers those pairs use")
    heldout_fraction: float = setting(0.15, "share of the seeds held out to measure the guardrail each round")
    split_seed: int = setting(0, "seed of the train / held-out split")
    on_bad_row: OnBadRow = setting(OnBadRow.fail, "fail: stop at the first bad row (file and line); skip: count it")
    max_text_chars: int = setting(20_000, "longest text accepted in a row, in characters")
    decontamination: DecontaminationConfig = setting(
        factory=DecontaminationConfig, help="near-copies of evaluation prompts in training data"
    )

    def check(self, key: str) -> None:
        check(
            0.0 <= self.heldout_fraction < 1.0,
            f"{key}.heldout_fraction",
            f"must be in [0, 1), got {self.heldout_fraction}",
        )
        check(len(self.languages) > 0, f"{key}.languages", "needs at least one language")
        check(len(self.attack_styles) > 0, f"{key}.attack_styles", "needs at least one attack style")
        check(self.max_text_chars > 0, f"{key}.max_text_chars", "must be > 0")
        for i, f in enumerate(self.train_files):
            f.check(f"{key}.train_files[{i}]")
        self.response_templates.check(f"{key}.response_templates")
        self.decontamination.check(f"{key}.decontamination")
