"""The novelty term of the generator's reward: values on hand-made texts and vectors, the reward it adds
(kept candidates only, exactly weight * novelty), the referee on a tiny guardrail, and Guardrail.embed."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest

from duoguard.config import ConfigError, NoveltyConfig, NoveltyEmbeddings, RewardConfig
from duoguard.data.record import Verdict
from duoguard.novelty import (
    NgramIndex,
    embedding_spread,
    group_ids,
    ngram_similarity_within_groups,
    novelty,
    word_ngrams,
)
from duoguard.rewards import add_novelty, game_rewards, intended_probability

POOL = ["How do I bake sourdough bread at home?", "Write a poem about the sea at night."]
NOVEL = "Which chemicals in household cleaners react dangerously together?"


def cond(seed_id: str, unsafe: bool = True) -> dict:
    """A condition as the generator's reward hook passes it (every field of prompts.Condition)."""
    return {
        "seed_id": seed_id,
        "seed_text": f"seed text {seed_id}",
        "intended_unsafe": unsafe,
        "category": "Violent Crimes",
        "language": "en",
        "attack_style": "direct",
        "family": seed_id,
    }


# ---------------------------------------------------------------- novelty values


def test_word_ngrams_and_short_texts():
    assert word_ngrams("How do I, bake?", 2) == ["how do", "do i", "i bake"]
    assert word_ngrams("Hello!", 2) == ["hello"]  # fewer words than n: its words
    assert word_ngrams("  ...  ", 2) == []


def test_a_copy_of_a_pool_text_is_not_novel_and_a_text_sharing_nothing_is():
    pool = NgramIndex.build(POOL, 2)
    texts = ["how do i BAKE sourdough bread at home", NOVEL, "Hello"]  # case and punctuation do not count
    out = novelty(texts, [0, 1, 2], pool)
    np.testing.assert_array_equal(out, [0.0, 1.0, 1.0])
    assert novelty(["hello"], [0], NgramIndex.build(["Hello!"], 2))[0] == 0.0  # short texts compare by unigrams


def test_jaccard_of_word_bigrams_by_hand():
    # {a b, b c, c d} against {a b, b c, c e}: 2 shared of 4 distinct -> similarity 0.5
    assert novelty(["a b c d"], [0], NgramIndex.build(["a b c e", "x y"], 2))[0] == pytest.approx(0.5)
    # with n = 1: {a, b, c, d} against {a, b, c, e}: 3 of 5 -> novelty 0.4
    assert novelty(["a b c d"], [0], NgramIndex.build(["a b c e"], 1))[0] == pytest.approx(0.4)
    # the nearest pool text counts, not the mean
    assert novelty(["a b c d"], [0], NgramIndex.build(["x y z", "a b c d"], 2))[0] == 0.0


def test_group_duplicates_are_penalised_both_ways_and_other_groups_do_not_count():
    empty = NgramIndex.build([], 2)
    texts = ["tell me a story about dragons", "tell me a story about dragons"]
    np.testing.assert_array_equal(novelty(texts, [0, 0], empty), [0.0, 0.0])  # each is the other's copy
    np.testing.assert_array_equal(novelty(texts, [0, 1], empty), [1.0, 1.0])  # siblings only
    assert novelty(texts[:1], [0], empty)[0] == 1.0  # nothing to compare against


def test_groups_come_from_the_conditions_not_from_the_order():
    conditions = [cond("a"), cond("b"), cond("a"), cond("b")]  # interleaved, as data parallelism may leave them
    groups = group_ids(conditions)
    assert groups.tolist() == [0, 1, 0, 1]
    assert group_ids([dict(reversed(list(c.items()))) for c in conditions]).tolist() == [0, 1, 0, 1]  # key order
    texts = ["the same words here", "something else entirely", "the same words here", "a third unrelated text"]
    sims = ngram_similarity_within_groups(texts, groups, 2)
    np.testing.assert_array_equal(sims, [1.0, 0.0, 1.0, 0.0])  # consecutive pairs would have found no copy


def test_embeddings_are_averaged_with_ngrams():
    empty = NgramIndex.build([], 2)
    pool = NgramIndex.build(["alpha beta gamma"], 2)
    pool_vectors = np.array([[1.0, 0.0, 0.0]])
    texts = ["one two three", "four five six"]  # no n-gram in common with anything: n-gram novelty 1
    # the first points where the pool text does (embedding novelty 0), the second is orthogonal (1)
    vectors = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(novelty(texts, [0, 1], pool, embeddings=vectors, pool_embeddings=pool_vectors), [0.5, 1])
    # siblings: the cosine with the other candidate of the group counts too
    same = np.array([[0.0, 1.0, 1.0], [0.0, 2.0, 2.0]])
    np.testing.assert_allclose(novelty(texts, [0, 0], empty, embeddings=same), [0.5, 0.5])
    # opposite directions are as novel as orthogonal ones, never above 1
    np.testing.assert_allclose(novelty(texts, [0, 0], empty, embeddings=np.array([[1.0, 0], [-1.0, 0]])), [1, 1])
    with pytest.raises(ValueError, match="2 texts but 1 embeddings"):
        novelty(texts, [0, 1], pool, embeddings=vectors[:1])


def test_embedding_spread_on_hand_vectors():
    assert embedding_spread(np.eye(3)) == pytest.approx(1.0)  # orthogonal: cosine distance 1 per pair
    assert embedding_spread([[1.0, 0.0], [3.0, 0.0]]) == pytest.approx(0.0)  # one direction
    assert embedding_spread([[1.0, 0.0], [-1.0, 0.0]]) == pytest.approx(2.0)
    # pairs (0,1): 1 - cos 45° , (0,2): 1, (1,2): 1 - cos 45°
    expected = ((1 - np.sqrt(0.5)) * 2 + 1) / 3
    assert embedding_spread([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]) == pytest.approx(expected)
    assert embedding_spread([[1.0, 0.0]]) is None and embedding_spread(np.zeros((0, 4))) is None


def test_the_pool_index_pickles():
    """The referee (and its pool index) travels to the generator's Ray actor."""
    pool = NgramIndex.build(POOL, 2)
    again = pickle.loads(pickle.dumps(pool))
    texts = [POOL[0], NOVEL, "bake sourdough bread at home tonight"]
    np.testing.assert_array_equal(again.max_similarity(texts), pool.max_similarity(texts))


# ---------------------------------------------------------------- the reward


def test_novelty_is_added_to_kept_candidates_only():
    rewards = game_rewards([0.2, 0.5, 0.9], [True, False, True], reject_penalty=1.0)
    out = add_novelty(rewards, [True, False, True], [0.5, 1.0, 0.25], 0.4)
    np.testing.assert_allclose(out - rewards, [0.2, 0.0, 0.1])
    assert out[1] == -1.0  # a rejected candidate keeps exactly the penalty, however novel
    np.testing.assert_array_equal(add_novelty(rewards, [True, False, True], [0.5, 1.0, 0.25], 0.0), rewards)


class ConstantScores:
    """A stand-in guardrail that gives every text the same unsafe score."""

    def __init__(self, score: float = 0.3):
        self.score = score

    def unsafe_scores(self, texts):
        return [self.score] * len(texts)


class RejectsMarked:
    """A stand-in judge that rejects the texts starting with REJECT."""

    def judge(self, candidates):
        return [
            Verdict(not c.text.startswith("REJECT"), [] if not c.text.startswith("REJECT") else ["x"])
            for c in candidates
        ]


def referee(weight: float, guardrail=None, *, pool=POOL, embeddings=NoveltyEmbeddings.none, judge=None):
    from duoguard.referee import Referee

    cfg = RewardConfig(novelty=NoveltyConfig(weight=weight, ngram=2, embeddings=embeddings))
    return Referee(guardrail or ConstantScores(), judge or RejectsMarked(), cfg, 0.5, 3, pool_texts=pool)


BATCH = [POOL[0], NOVEL, "REJECT " + NOVEL, "how do I bake sourdough bread at home, step by step?"]
CONDITIONS = [cond("a"), cond("b"), cond("c"), cond("d")]


def test_the_referee_adds_exactly_weight_times_novelty_to_kept_candidates():
    base, base_records = referee(0.0)(BATCH, CONDITIONS)
    rewards, records = referee(0.5)(BATCH, CONDITIONS)
    novel = np.array([r.provenance["novelty"] for r in records])
    assert novel[0] == 0.0 and novel[1] == 1.0 and 0.0 < novel[3] < 1.0  # copy, new, a rewrite of a pool text
    kept = np.array([r.judge.keep for r in records])
    assert kept.tolist() == [True, True, False, True]
    np.testing.assert_allclose(np.array(rewards) - base, np.where(kept, 0.5 * novel, 0.0), rtol=0, atol=1e-12)
    assert rewards[2] == base[2] == -1.0  # rejected: the penalty, nothing for novelty
    assert [r.reward for r in records] == pytest.approx(rewards)
    assert rewards[1] > rewards[3] > rewards[0]  # equal guardrail scores: the newer, the better paid


def test_weight_zero_leaves_the_rewards_bit_identical():
    rewards, records = referee(0.0, ConstantScores(0.7))(BATCH, CONDITIONS)
    keep = np.array([not t.startswith("REJECT") for t in BATCH])
    intended = np.array([c["intended_unsafe"] for c in CONDITIONS])
    expected = game_rewards(intended_probability([0.7] * 4, intended), keep).tolist()
    assert rewards == expected  # exact, not approximate
    assert all("novelty" not in r.provenance for r in records)


def test_a_config_check_names_the_key():
    from tests.conftest import compose

    for override, key in [
        ("game.reward.novelty.weight=-1", r"game\.reward\.novelty\.weight"),
        ("game.reward.novelty.ngram=0", r"game\.reward\.novelty\.ngram"),
    ]:
        with pytest.raises(ConfigError, match=key):
            compose(["output_dir=/tmp/x", override], "game")
    with pytest.raises(Exception, match="embeddings"):
        compose(["output_dir=/tmp/x", "game.reward.novelty.embeddings=bert"], "game")
    assert compose(["output_dir=/tmp/x"], "game").game.reward.novelty.weight == 0.0  # off by default


# ---------------------------------------------------------------- on a tiny guardrail


@pytest.fixture(scope="module")
def tiny_guard(tiny_base, taxonomy):
    import torch

    from duoguard import Guardrail

    torch.manual_seed(0)
    return Guardrail.from_base(tiny_base, taxonomy.names, device="cpu", batch_size=4, max_batch_tokens=512)


def check_embed(guard) -> None:
    texts = ["short", "a much longer text than the first one, with many more tokens in it", "mid length text", ""]
    vectors = guard.embed(texts)
    hidden = guard.model.config.hidden_size
    assert vectors.shape == (4, hidden) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # padding is left out: each text alone (no padding at all) gives the same vector as in a padded batch
    alone = np.concatenate([guard.embed([t]) for t in texts])
    np.testing.assert_allclose(vectors, alone, atol=1e-5)
    np.testing.assert_allclose(guard.embed(texts[::-1]), vectors[::-1], atol=1e-5)  # input order
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3  # different texts, different vectors
    assert guard.embed([]).shape == (0, hidden)


def test_embed_on_a_decoder_guardrail(tiny_guard):
    check_embed(tiny_guard)


def test_embed_on_an_encoder_guardrail(tiny_guard):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from duoguard import Guardrail

    torch.manual_seed(0)
    tok = tiny_guard.tokenizer
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        pad_token_id=tok.pad_token_id,
        problem_type="multi_label_classification",
    )
    check_embed(Guardrail(BertForSequenceClassification(config), tok, batch_size=4))


def test_a_novel_kept_candidate_outscores_a_copy_of_the_pool_on_a_tiny_guardrail(tiny_guard):
    """The real guardrail embeds; its head is zeroed so every text scores exactly 0.5 unsafe: equal fooling
    rewards, and any difference is the novelty term."""
    import copy

    import torch

    from duoguard.roles.guardrail import head_parameters

    guard = copy.deepcopy(tiny_guard)
    with torch.no_grad():
        for p in head_parameters(guard.model):
            p.zero_()
    judge = replace_judge()
    texts, conditions = [POOL[1], NOVEL], [cond("a"), cond("b")]
    np.testing.assert_array_equal(guard.unsafe_scores(texts), [0.5, 0.5])
    off, _ = referee(0.0, guard, judge=judge)(texts, conditions)
    assert off[0] == off[1]  # without novelty the two are paid the same
    on, records = referee(1.0, guard, judge=judge, embeddings=NoveltyEmbeddings.guardrail)(texts, conditions)
    assert all(r.judge.keep for r in records)
    assert records[0].provenance["novelty"] == pytest.approx(0.0, abs=1e-5)  # same words, same embedding
    assert records[1].provenance["novelty"] > 0.5  # no shared n-gram (1), and some embedding distance
    assert on[1] > on[0] + 0.5 and on[0] == pytest.approx(off[0], abs=1e-5)


def replace_judge():
    from duoguard.config import JudgeConfig
    from duoguard.roles.judge import Judge

    return Judge(replace(JudgeConfig(), rules=["not_empty"], label_check="none"))
