"""The novelty of the generator's candidates: how far each is from the pool and from its GRPO group.

The novelty term of the generator's reward (`game.reward.novelty`, after Self-RedTeam's diversity
rewards) pays a kept candidate for saying something the pool and its siblings have not said:

    sim_ngram(a, b) = Jaccard index of a's and b's sets of word n-grams (n = game.reward.novelty.ngram)
    sim_embed(a, b) = cosine similarity of their embeddings (the guardrail's encoder), negatives as 0
    novelty_ngram   = 1 - max sim_ngram(candidate, x) over x in the pool and the other candidates of its group
    novelty_embed   = the same with sim_embed
    novelty         = novelty_ngram                             without embeddings
                    = (novelty_ngram + novelty_embed) / 2       with them

so a novelty lies in [0, 1]: 0 for an exact copy of a pool text or of a sibling, 1 for a candidate that
shares no n-gram (and no embedding direction) with any of them; with nothing to compare against (an
empty pool, a group of one) it is 1. Words are the tokens of `decontam.normalise` (NFKC, case-folded,
punctuation removed, split on spaces), as `duoguard.diversity` counts them; a text with fewer than n
words is compared by its words (unigrams), and a text without words shares nothing with anything.

Groups. TRL's GRPOTrainer writes `num_generations` candidates per prompt and, under data parallelism,
may split one prompt's candidates across ranks, so the order of a reward call's inputs alone does not
say which candidates are siblings. A candidate's group here is the condition it was written for
(`group_ids`: equal condition dicts = one group). Two prompts of one batch with the very same condition
(seed, language, category, attack style) therefore count as one group, which is what novelty should
compare anyway: candidates written for the same request.

The n-gram sets are scikit-learn `CountVectorizer(binary=True)` rows, so the n-grams two sets of texts
share are one sparse product (as decontamination computes its Jaccard index, duoguard/data/decontam.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from duoguard.data.decontam import normalise

EMBED_CHUNK = 8192  # pool rows per dense block of cosine similarities (bounds memory to candidates x EMBED_CHUNK)


def word_ngrams(text: str, n: int) -> list[str]:
    """The word n-grams of a text (its words when it has fewer than n), each as one string."""
    words = normalise(text).split()
    if len(words) < n:
        return words
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def ngram_vectorizer(n: int):
    """Binary sets of word n-grams (`word_ngrams`) as scikit-learn rows."""
    from sklearn.feature_extraction.text import CountVectorizer

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    # a partial, not a lambda: the index travels pickled with the referee to the generator's process
    return CountVectorizer(analyzer=partial(word_ngrams, n=n), binary=True, dtype=np.float32)


@dataclass(frozen=True)
class NgramIndex:
    """A set of texts' word n-gram sets, built once (the pool's, for a whole round of scoring)."""

    n: int
    vectorizer: Any  # fitted on the texts; None when they hold no n-gram
    matrix: Any  # scipy sparse [n-grams, texts], binary
    sizes: np.ndarray  # n-grams per text

    @classmethod
    def build(cls, texts: Sequence[str], n: int) -> NgramIndex:
        vectorizer = ngram_vectorizer(n)
        if not any(word_ngrams(t, n) for t in texts):  # scikit-learn refuses an empty vocabulary
            return cls(n, None, None, np.zeros(len(texts), dtype=np.float32))
        rows = vectorizer.fit_transform(list(texts))
        return cls(n, vectorizer, rows.T.tocsc(), np.asarray(rows.sum(axis=1), dtype=np.float32).ravel())

    def __len__(self) -> int:
        return len(self.sizes)

    def max_similarity(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's largest Jaccard index with a text of the index (0 for an empty index)."""
        out = np.zeros(len(texts), dtype=np.float64)
        if self.vectorizer is None or not len(texts):
            return out
        shared = (self.vectorizer.transform(list(texts)) @ self.matrix).tocoo()  # n-grams in common, nonzeros only
        sizes = np.array([len(set(word_ngrams(t, self.n))) for t in texts], dtype=np.float64)
        jac = shared.data / (sizes[shared.row] + self.sizes[shared.col] - shared.data)
        np.maximum.at(out, shared.row, jac)
        return out


def group_ids(conditions: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """One integer per candidate: equal condition dicts (every key and value) get the same group."""
    keys = [json.dumps(dict(c), sort_keys=True, default=str) for c in conditions]
    index: dict[str, int] = {}
    return np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)


def _same_group_mask(groups: np.ndarray) -> np.ndarray:
    """[i, j] = i and j are different candidates of one group."""
    mask = groups[:, None] == groups[None, :]
    np.fill_diagonal(mask, False)
    return mask


def ngram_similarity_within_groups(texts: Sequence[str], groups: Sequence[int], n: int) -> np.ndarray:
    """Each text's largest Jaccard index of word n-gram sets with another text of its group (0 alone)."""
    groups = np.asarray(groups)
    if len(groups) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(groups)} group ids")
    index = NgramIndex.build(texts, n)
    if index.vectorizer is None:
        return np.zeros(len(texts), dtype=np.float64)
    rows = index.matrix.T.tocsr()
    shared = (rows @ index.matrix).toarray().astype(np.float64)  # one reward call's candidates: small and dense
    union = index.sizes[:, None] + index.sizes[None, :] - shared
    jac = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    jac[~_same_group_mask(groups)] = 0.0
    return jac.max(axis=1)


def unit_rows(vectors: Any) -> np.ndarray:
    """Rows scaled to length 1 (scikit-learn's `normalize`; a zero row stays zero)."""
    from sklearn.preprocessing import normalize

    return normalize(np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1))


def cosine_to_reference(vectors: Any, reference: Any) -> np.ndarray:
    """Each vector's largest cosine similarity with a reference row, negatives as 0 (0 without rows)."""
    v = unit_rows(vectors)
    out = np.zeros(len(v), dtype=np.float64)
    if not len(v) or reference is None or not len(reference):
        return out
    ref = unit_rows(reference)
    if ref.shape[1] != v.shape[1]:
        raise ValueError(f"vectors of size {v.shape[1]} against reference vectors of size {ref.shape[1]}")
    for start in range(0, len(ref), EMBED_CHUNK):
        out = np.maximum(out, (v @ ref[start : start + EMBED_CHUNK].T).max(axis=1))
    return out


def cosine_within_groups(vectors: Any, groups: Sequence[int]) -> np.ndarray:
    """Each vector's largest cosine similarity with another vector of its group, negatives as 0."""
    v = unit_rows(vectors)
    groups = np.asarray(groups)
    if len(groups) != len(v):
        raise ValueError(f"{len(v)} vectors but {len(groups)} group ids")
    if not len(v):
        return np.zeros(0)
    sims = v @ v.T
    sims[~_same_group_mask(groups)] = 0.0
    return np.clip(sims.max(axis=1), 0.0, None)


def novelty(
    texts: Sequence[str],
    groups: Sequence[int],
    pool: NgramIndex,
    *,
    embeddings: Any = None,
    pool_embeddings: Any = None,
) -> np.ndarray:
    """Each candidate's novelty in [0, 1] (module docstring): n-grams of `pool.n` words against the pool
    and the other candidates of its group, averaged with the embedding novelty when `embeddings` (one row
    per candidate; `pool_embeddings` one row per pool text, or None/empty for no pool) are given."""
    similar = np.maximum(pool.max_similarity(texts), ngram_similarity_within_groups(texts, groups, pool.n))
    out = 1.0 - similar
    if embeddings is not None:
        if len(embeddings) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(embeddings)} embeddings")
        close = np.maximum(cosine_to_reference(embeddings, pool_embeddings), cosine_within_groups(embeddings, groups))
        out = (out + 1.0 - np.clip(close, 0.0, 1.0)) / 2.0
    return np.clip(out, 0.0, 1.0)


def embedding_spread(vectors: Any) -> float | None:
    """Mean pairwise cosine distance (1 - cosine similarity, 0-2) over all pairs of rows; None for fewer
    than two. Higher = the texts point in more directions (a per-round diversity metric)."""
    if vectors is None or len(vectors) < 2:
        return None
    from sklearn.metrics.pairwise import cosine_distances

    d = cosine_distances(np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1))
    upper = np.triu_indices(len(d), k=1)
    return float(d[upper].mean())
