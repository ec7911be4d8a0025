"""How diverse a round's accepted candidates are, and an alarm for the generator's collapse.

RL red-teaming's known failure is collapse: the generator finds one phrasing that pays and repeats
it, and the pool fills with near-duplicates. These functions measure a list of texts; each returns
a number in a fixed direction, so a round can be logged and compared with the last:

distinct_n            distinct word n-grams / all word n-grams (Li et al. 2016); 1 = no n-gram repeats,
                      near 0 = the same words over and over. Higher = more diverse.
self_bleu             mean sentence BLEU (sacrebleu, 0-100) of each text against the others (Zhu et al.
                      2018, Texygen); 100 = every text is in the others. Higher = LESS diverse.
near_duplicate_share  share of texts with a near-duplicate among the others, by the character n-gram
                      Jaccard index decontamination uses (duoguard/data/decontam.py). Higher = LESS diverse.
cells                 distinct (language, category, attack style) conditions the texts came from.

Words are the tokens of `decontam.normalise` (NFKC, case-folded, punctuation removed, split on
spaces): a language written without spaces (Chinese, Japanese) counts a whole run as one word.

These metrics watch for collapse; the novelty term of the generator's reward (duoguard/novelty.py,
`game.reward.novelty`) is what works against it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from duoguard.config import CollapseConfig
from duoguard.data.decontam import char_ngram_vectorizer, jaccard, normalise
from duoguard.data.record import PromptRecord

MIN_TEXTS = 2  # fewer texts and the text metrics are None: one text cannot repeat another
SELF_BLEU_REFS = 32  # references per text in self-BLEU (subsampled deterministically above it)
NEAR_DUPLICATE = 0.5  # Jaccard of character 5-grams: decontamination's threshold for a near-copy
NGRAM = 5  # character n-gram length of the Jaccard index (decontamination's default)
TOP_CELLS = 3  # cells the alarm names


def words(text: str) -> list[str]:
    return normalise(text).split()


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Distinct word n-grams / all word n-grams, pooled over the texts (an n-gram never spans two
    texts); None when the texts hold no n-gram. Linear in the total length."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams: list[tuple[str, ...]] = []
    for text in texts:
        tokens = words(text)
        grams += [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def self_bleu(texts: Sequence[str], max_refs: int = SELF_BLEU_REFS, seed: int = 0) -> float | None:
    """Mean sentence BLEU (0-100, sacrebleu, effective order for short texts) of each text against the
    others as references; None for fewer than MIN_TEXTS texts.

    Cost: one multi-reference sentence BLEU per text, so about len(texts) x min(max_refs, len(texts) - 1)
    text pairs (rather than all len(texts)^2 pairs): a text's references are a sample of max_refs of the
    others, drawn with random.Random(seed + index), so the same texts give the same value. More
    references can only match more n-grams, so compare rounds at the same max_refs.
    """
    if len(texts) < MIN_TEXTS:
        return None
    if max_refs < 1:
        raise ValueError(f"max_refs must be >= 1, got {max_refs}")
    from sacrebleu.metrics import BLEU

    bleu = BLEU(tokenize="none", effective_order=True)  # texts are tokenised by `words` already
    tokenised = [" ".join(words(t)) for t in texts]
    scores = []
    for i, hypothesis in enumerate(tokenised):
        others = tokenised[:i] + tokenised[i + 1 :]
        if len(others) > max_refs:
            others = random.Random(seed + i).sample(others, max_refs)
        scores.append(bleu.sentence_score(hypothesis, others).score)
    return float(np.mean(scores))


def near_duplicate_share(texts: Sequence[str], threshold: float = NEAR_DUPLICATE) -> float | None:
    """Share of texts whose most similar other text reaches `threshold` (Jaccard index of their sets of
    character 5-grams after `decontam.normalise`, as decontamination measures a near-copy); None for
    fewer than MIN_TEXTS texts. Cost: a sparse product of all pairs, len(texts)^2 floats of memory."""
    if len(texts) < MIN_TEXTS:
        return None
    vectorizer = char_ngram_vectorizer(NGRAM)
    analyse = vectorizer.build_analyzer()
    if not any(analyse(t) for t in texts):
        return 0.0  # no text is long enough to hold an n-gram: nothing to compare
    grams = vectorizer.fit_transform(texts)
    sizes = np.asarray(grams.sum(axis=1)).ravel()
    sims = jaccard((grams @ grams.T).toarray(), sizes, sizes)
    np.fill_diagonal(sims, 0.0)  # a text is not its own duplicate
    return float((sims.max(axis=1) >= threshold).mean())


def cell(record: PromptRecord) -> str:
    """A record's condition, "language/category/attack_style" ("-" for a missing part)."""
    return "/".join(part or "-" for part in (record.language, record.category, record.attack_style))


def round_diversity(records: Sequence[PromptRecord]) -> dict[str, float | None]:
    """The diversity of a round's (accepted) records, under stable metric names; the text metrics are
    None for fewer than MIN_TEXTS records."""
    texts = [r.text for r in records]
    enough = len(texts) >= MIN_TEXTS
    return {
        "diversity/distinct_1": distinct_n(texts, 1) if enough else None,
        "diversity/distinct_2": distinct_n(texts, 2) if enough else None,
        "diversity/self_bleu": self_bleu(texts),
        "diversity/near_duplicates": near_duplicate_share(texts),
        "diversity/cells": float(len({cell(r) for r in records})),
    }


def top_cells(records: Sequence[PromptRecord], k: int = TOP_CELLS) -> str:
    """The k cells most records fell in, with their shares: "en/Violent Crimes/roleplay 80%, ..."."""
    counts = Counter(cell(r) for r in records).most_common(k)
    return ", ".join(f"{name} {count / len(records):.0%}" for name, count in counts)


def collapse_alarm(
    history: Sequence[Mapping[str, float | None]], cfg: CollapseConfig, records: Sequence[PromptRecord]
) -> str | None:
    """A message when `cfg.metric` was below `cfg.floor` in each of the last `cfg.rounds` rounds, else
    None (also when the floor is 0, the alarm off).

    history: each round's metrics, oldest first, the last round included (a round without the metric,
    or with None, too few texts to tell, breaks the streak); records: the last round's accepted
    candidates, whose top cells the message names. The caller logs the message, or raises
    `duoguard.errors.GameStopped` with it when cfg.action is stop.
    """
    if cfg.floor <= 0 or len(history) < cfg.rounds:
        return None
    values = [round_metrics.get(cfg.metric) for round_metrics in history[-cfg.rounds :]]
    if any(v is None or v >= cfg.floor for v in values):
        return None
    shown = ", ".join(f"{v:.3g}" for v in values)
    where = f"; the last round's {len(records)} accepted candidates fell in {top_cells(records)}" if records else ""
    return (
        f"diversity collapse: {cfg.metric} below its floor {cfg.floor:g} (game.collapse.floor) for the last "
        f"{cfg.rounds} round(s): {shown}{where}"
    )
