"""Preference pairs from a tiny pool: recipes, labels, the held-out split and the saved dataset."""

from __future__ import annotations

import numpy as np
import pytest

from duoguard.align import build_pairs, save_pairs
from duoguard.data.readers import DataError
from tests.test_pool import rows as pool_rows

PAIRS_CFG = {"recipe": "egida", "samples_per_prompt": 2, "max_pairs": 100, "responder": "refusal",
             "safety_system_prompt": "Be safe.", "refusals": {"en": "I can't help.", "fr": "Je ne peux pas."}}  # fmt: skip
PROMPTS = [
    {
        "id": "r1-0",
        "text": "p0",
        "language": "en",
        "category": "Hate",
        "attack_style": "direct",
        "source": "game",
        "round": 1,
    },
    {
        "id": "r1-1",
        "text": "p1",
        "language": "fr",
        "category": "Hate",
        "attack_style": "story",
        "source": "game",
        "round": 1,
    },
    {
        "id": "r1-2",
        "text": "p2",
        "language": "en",
        "category": "Privacy",
        "attack_style": "direct",
        "source": "game",
        "round": 2,
    },
]
SCRIPT = {"p0": ["HARM a", "fine b"], "p1": ["fine c", "fine d"], "p2": ["", "HARM e"]}


class ScriptedTarget:
    def answer(self, prompts, *, n=1, seed=0, progress=False, system=None):
        return [SCRIPT[p][:n] for p in prompts]


class MarkerJudge:
    def is_unsafe(self, prompts, responses, progress=False):
        return np.array(["HARM" in r or "can't" in r for r in responses])  # even calls the refusal unsafe


def test_egida_recipe_keeps_prompts_the_target_answered_unsafely():
    pairs, stats = build_pairs(PROMPTS, ScriptedTarget(), MarkerJudge(), PAIRS_CFG)
    assert [p["prompt"] for p in pairs] == ["p0", "p2"]
    assert pairs[0]["rejected"] == "HARM a" and pairs[0]["chosen"] == "I can't help."
    assert pairs[1]["rejected"] == "HARM e"  # the empty answer is skipped
    assert all(p["chosen_unsafe"] is False and p["rejected_unsafe"] is True for p in pairs)  # canned refusal: safe
    assert pairs[0]["prompt_id"] == "r1-0" and pairs[0]["attack_style"] == "direct" and pairs[1]["round"] == 2
    assert stats == {
        "prompts": 3,
        "target_answers": 6,
        "target_unsafe_answers": 2,
        "skipped_target_safe": 1,
        "pairs": 2,
    }


def test_all_recipe_keeps_every_prompt_with_judged_labels():
    pairs, stats = build_pairs(PROMPTS, ScriptedTarget(), MarkerJudge(), {**PAIRS_CFG, "recipe": "all"})
    assert [p["prompt"] for p in pairs] == ["p0", "p1"]  # p2's first answer is empty
    assert [p["rejected_unsafe"] for p in pairs] == [True, False]
    assert stats["skipped_empty_answer"] == 1
    capped, _ = build_pairs(PROMPTS, ScriptedTarget(), MarkerJudge(), {**PAIRS_CFG, "recipe": "all", "max_pairs": 1})
    assert len(capped) == 1


def test_refusal_responder_speaks_the_prompt_language():
    pairs, _ = build_pairs(PROMPTS[1:2], ScriptedTarget(), MarkerJudge(), {**PAIRS_CFG, "recipe": "all"})
    assert pairs[0]["chosen"] == "Je ne peux pas."


def test_saved_pairs_load_with_datasets_and_bad_rows_fail(tmp_path):
    from datasets import load_from_disk

    pairs, _ = build_pairs(PROMPTS, ScriptedTarget(), MarkerJudge(), PAIRS_CFG)
    save_pairs(pairs, tmp_path / "pairs")
    ds = load_from_disk(str(tmp_path / "pairs"))
    assert ds.num_rows == 2 and {"prompt_id", "language", "attack_style", "source", "round"} <= set(ds.column_names)
    with pytest.raises(DataError, match="'chosen' is empty"):
        save_pairs([{**pairs[0], "chosen": " "}], tmp_path / "bad")
    with pytest.raises(DataError, match="must be a boolean"):
        save_pairs([{**pairs[0], "rejected_unsafe": "yes"}], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_pool_split_is_stable_and_disjoint(tmp_path):
    from duoguard.data.pool import Pool
    from duoguard.pipeline import split_pool_prompts

    pool = Pool(tmp_path / "pool")
    pool.write_round(1, pool_rows(1, 40))
    train, held = split_pool_prompts(pool.root, 0.25)
    again, held_again = split_pool_prompts(pool.root, 0.25)
    assert [p["id"] for p in held] == [p["id"] for p in held_again] and len(train) == len(again)
    assert not {p["id"] for p in train} & {p["id"] for p in held}
    assert 4 <= len(held) <= 18 and len(train) + len(held) == 40
