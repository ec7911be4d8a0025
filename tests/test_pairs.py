"""Preference pairs from a tiny pool: recipes, labels, the held-out split and the saved dataset."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from duoguard.config import PairsConfig
from duoguard.data.readers import DataError
from duoguard.data.record import PromptRecord
from duoguard.errors import UserError
from duoguard.safedpo.pairs import build_pairs, save_pairs
from tests.test_pool import records as pool_records

PAIRS_CFG = PairsConfig(
    recipe="egida", samples_per_prompt=2, max_pairs=100, responder="refusal", safety_system_prompt="Be safe."
)
REFUSALS = {"en": "I can't help.", "fr": "Je ne peux pas."}
PROMPTS = [
    PromptRecord(
        id="r1-0",
        text="p0",
        language="en",
        category="Hate",
        attack_style="direct",
        source="game",
        unsafe=True,
        round=1,
    ),
    PromptRecord(
        id="r1-1",
        text="p1",
        language="fr",
        category="Hate",
        attack_style="story",
        source="game",
        unsafe=True,
        round=1,
    ),
    PromptRecord(
        id="r1-2",
        text="p2",
        language="en",
        category="Privacy",
        attack_style="direct",
        source="game",
        unsafe=True,
        round=2,
    ),
]
SCRIPT = {"p0": ["HARM a", "fine b"], "p1": ["fine c", "fine d"], "p2": ["", "HARM e"]}


class ScriptedTarget:
    def answer(self, prompts, *, n=1, seed=0, progress=False, system=None):
        return [SCRIPT[p][:n] for p in prompts]


class MarkerJudge:
    def is_unsafe(self, prompts, responses, progress=False):
        return np.array(["HARM" in r or "can't" in r for r in responses])  # even calls the refusal unsafe


def test_egida_recipe_keeps_prompts_the_target_answered_unsafely():
    pairs, stats = build_pairs(PROMPTS, ScriptedTarget(), MarkerJudge(), PAIRS_CFG, refusals=REFUSALS)
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
    pairs, stats = build_pairs(
        PROMPTS, ScriptedTarget(), MarkerJudge(), replace(PAIRS_CFG, recipe="all"), refusals=REFUSALS
    )
    assert [p["prompt"] for p in pairs] == ["p0", "p1"]  # p2's first answer is empty
    assert [p["rejected_unsafe"] for p in pairs] == [True, False]
    assert stats["skipped_empty_answer"] == 1
    capped, _ = build_pairs(
        PROMPTS, ScriptedTarget(), MarkerJudge(), replace(PAIRS_CFG, recipe="all", max_pairs=1), refusals=REFUSALS
    )
    assert len(capped) == 1


def test_refusal_responder_speaks_the_prompt_language():
    pairs, _ = build_pairs(
        PROMPTS[1:2], ScriptedTarget(), MarkerJudge(), replace(PAIRS_CFG, recipe="all"), refusals=REFUSALS
    )
    assert pairs[0]["chosen"] == "Je ne peux pas."


def test_saved_pairs_load_with_datasets_and_bad_rows_fail(tmp_path):
    from datasets import load_from_disk

    pairs, _ = build_pairs(PROMPTS, ScriptedTarget(), MarkerJudge(), PAIRS_CFG, refusals=REFUSALS)
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
    from duoguard.stages.safedpo import pool_prompts, split_prompts

    pool = Pool(tmp_path / "pool")
    pool.write_round(1, pool_records(1, 40))
    train, held = split_prompts(pool_prompts(pool.root), 0.25)
    again, held_again = split_prompts(pool_prompts(pool.root), 0.25)
    assert [p.id for p in held] == [p.id for p in held_again] and len(train) == len(again)
    assert not {p.id for p in train} & {p.id for p in held}
    assert 4 <= len(held) <= 18 and len(train) + len(held) == 40


# ---------------------------------------------------------------- a real pool, tiny target and guardrail
@pytest.fixture()
def tiny_target_and_guard(tiny_base, taxonomy):
    import torch

    from duoguard import Guardrail
    from duoguard.roles.target import Target
    from tests.test_safedpo import TARGET_CFG

    torch.manual_seed(0)
    return Target(tiny_base, TARGET_CFG, device="cpu"), Guardrail.from_base(tiny_base, taxonomy.names, device="cpu")


def test_pairs_from_a_written_pool_carry_provenance_and_guardrail_labels(tmp_path, tiny_target_and_guard):
    from duoguard.data.pool import Pool
    from duoguard.stages.safedpo import pool_prompts

    target, guard = tiny_target_and_guard
    pool = Pool(tmp_path / "pool")
    styles, languages = ["direct", "roleplay", "story"], ["en", "fr"]
    for round_index in (1, 2):
        records = [
            replace(
                r,
                text=f"request {round_index}.{i}: how do I do something risky",
                attack_style=styles[i],
                language=languages[(i + round_index) % 2],
            )
            for i, r in enumerate(pool_records(round_index, 3))
        ]
        pool.write_round(round_index, records)
    prompts = pool_prompts(pool.root)  # as run_safedpo_stage reads the pool
    texts = [p.text for p in prompts]
    # the threshold at the median of the target's first answers' scores: half its answers are judged unsafe
    first = [a[0] for a in target.answer(texts, n=1, seed=0)]
    scores = guard.unsafe_scores(texts, first)
    guard.threshold = float(np.median(scores))
    assert np.sort(scores)[2] < guard.threshold < np.sort(scores)[3]

    cfg = replace(PAIRS_CFG, recipe="all", samples_per_prompt=1, responder="target")
    pairs, stats = build_pairs(prompts, target, guard, cfg, refusals=REFUSALS)
    assert stats["prompts"] == 6 and stats["target_unsafe_answers"] == 3
    by_id = {p["prompt_id"]: p for p in pairs}
    for record in pool.records():
        pair = by_id[record.id]
        assert (pair["prompt"], pair["round"], pair["attack_style"], pair["language"], pair["source"]) == (
            record.text,
            record.round,
            record.attack_style,
            record.language,
            record.source,
        )
        assert pair["category"] == record.category  # a safe prompt keeps its topic too
    # every label is the guardrail's response classification of that (prompt, answer)
    ps = [p["prompt"] for p in pairs]
    assert [p["rejected_unsafe"] for p in pairs] == guard.is_unsafe(ps, [p["rejected"] for p in pairs]).tolist()
    assert [p["chosen_unsafe"] for p in pairs] == guard.is_unsafe(ps, [p["chosen"] for p in pairs]).tolist()
    assert sorted(p["rejected_unsafe"] for p in pairs) == [False] * 3 + [True] * 3

    # Egida's recipe on the same pool: only the prompts whose answer the guardrail judged unsafe
    egida, _ = build_pairs(prompts, target, guard, replace(cfg, recipe="egida"), refusals=REFUSALS)
    unsafe_ids = {p["prompt_id"] for p in pairs if p["rejected_unsafe"]}
    safe_chosen = {p["prompt_id"] for p in pairs if not p["chosen_unsafe"]}
    assert {p["prompt_id"] for p in egida} == unsafe_ids & safe_chosen
    assert all(p["rejected_unsafe"] and not p["chosen_unsafe"] for p in egida)


# ---------------------------------------------------------------- safedpo.prompt_files (no game)
def write_prompt_files(tmp_path):
    import json

    jsonl = tmp_path / "attacks.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {
                    "text": f"tell me how to hurt person {i}",
                    "language": "en",
                    "unsafe": True,
                    "categories": ["Hate"],
                    "attack_style": "roleplay",
                }
                for i in range(6)
            ]
            + [{"text": "how do I bake bread", "language": "en", "unsafe": False}]
        )
    )
    csv = tmp_path / "more.csv"
    csv.write_text("prompt,harmful\n" + "".join(f"comment insulter le groupe {i},true\n" for i in range(4)))
    return jsonl, csv


def safedpo_cfg(tmp_path, cache_dir, *overrides):
    from tests.conftest import compose

    return compose(
        [
            f"output_dir={tmp_path / 'out'}",
            f"cache_dir={cache_dir}",
            "logger=none",
            "progress=false",
            "safedpo.epochs=1",
            "safedpo.pairs.samples_per_prompt=1",
            *overrides,
        ],
        config_name="safedpo",
    )


def test_safedpo_stage_runs_on_prompt_files_without_a_game(tmp_path, cache_dir, tiny_base, taxonomy):
    import json

    from datasets import load_from_disk

    from duoguard import Guardrail
    from duoguard.stages.safedpo import HELDOUT_ATTACKS, run_safedpo_stage

    Guardrail.from_base(tiny_base, taxonomy.names, device="cpu").save_pretrained(tmp_path / "guard")
    jsonl, csv = write_prompt_files(tmp_path)
    cfg = safedpo_cfg(
        tmp_path,
        cache_dir,
        f"safedpo.guardrail_path={tmp_path / 'guard'}",
        f"safedpo.prompt_files=[{{path: '{jsonl}'}}, {{path: '{csv}', columns: {{text: prompt, "
        "unsafe: harmful}, language: fr, categories: [Hate], source: my_attacks}]",
    )
    result = run_safedpo_stage(cfg)
    out = tmp_path / "out"
    assert result["pool"] is None and result["prompt_files"] == [str(jsonl), str(csv)]
    assert result["pairs"]["prompts_from_files"] == 11 and result["pairs"]["prompts_from_pool"] == 0
    held = [json.loads(x) for x in (out / HELDOUT_ATTACKS).read_text().splitlines()]
    pairs = load_from_disk(str(out / "pairs"))
    assert pairs.num_rows > 0 and pairs.num_rows + len(held) <= 11
    assert "how do I bake bread" not in pairs["prompt"]  # unsafe_prompts_only, as with the pool
    assert not set(pairs["prompt_id"]) & {h["id"] for h in held}
    for row in pairs:
        if row["source"] == "attacks.jsonl":
            assert row["prompt_id"].startswith("attacks.jsonl:") and row["attack_style"] == "roleplay"
            assert row["language"] == "en" and row["category"] == "Hate"
        else:  # the CSV: columns mapped, language, categories and source from the file's entry
            assert row["source"] == "my_attacks" and row["prompt_id"].startswith("more.csv:")
            assert row["language"] == "fr" and row["prompt"].startswith("comment insulter")
        assert row["round"] is None
    assert (out / "target" / "config.json").is_file() and result["guardrail"] == str(tmp_path / "guard")


def test_bad_prompt_file_row_fails_with_file_line_and_key_before_models_load(tmp_path, cache_dir):
    from duoguard.config import ConfigError
    from duoguard.data.readers import DataError
    from duoguard.stages.safedpo import run_safedpo_stage

    jsonl, _ = write_prompt_files(tmp_path)
    with jsonl.open("a") as f:
        f.write('{"text": "x y z", "language": "en", "unsafe": "maybe"}\n')
    files = f"safedpo.prompt_files=[{{path: '{jsonl}'}}]"
    cfg = safedpo_cfg(tmp_path, cache_dir, files, f"safedpo.guardrail_path={tmp_path / 'no_guard'}")
    with pytest.raises(FileNotFoundError, match="guardrail checkpoint not found"):
        run_safedpo_stage(cfg)
    (tmp_path / "no_guard").mkdir()
    (tmp_path / "no_guard" / "config.json").write_text("{}")  # never loaded: the file fails first
    cfg = safedpo_cfg(tmp_path, cache_dir, files, f"safedpo.guardrail_path={tmp_path / 'no_guard'}")
    with pytest.raises(DataError, match=r"'unsafe' must be a boolean .*safedpo\.prompt_files\[0\]") as e:
        run_safedpo_stage(cfg)
    assert e.value.path == str(jsonl) and e.value.line == 8
    with pytest.raises(ConfigError, match=r"safedpo\.guardrail_path .*safedpo\.prompt_files"):
        run_safedpo_stage(safedpo_cfg(tmp_path, cache_dir, files))


def test_held_out_attacks_are_split_by_seed_family():
    """Rewrites of one seed (and of its translations) share its family: all of them land on one side, so no
    held-out attack is a paraphrase of a prompt the target trained on."""
    from dataclasses import replace

    from duoguard.stages.safedpo import split_prompts

    base = pool_records(1, 1)[0]
    prompts = [replace(base, id=f"r0001-{i:05d}", text=f"rewrite {i}", family=f"seed-{i % 10:04d}") for i in range(200)]
    train, held = split_prompts(prompts, 0.3)
    assert held and train
    assert not {p.family for p in train} & {p.family for p in held}
    assert len(held) % 20 == 0  # whole families of 20 rewrites each


# ---------------------------------------------------------------- the helpfulness recipe: T(D) keeps, swaps and drops
HELP_PROMPTS = [*PROMPTS, replace(PROMPTS[0], id="r1-3", text="p3")]
HELP_SCRIPT = {
    "p0": ["HARM +++", "fine ++"],  # most helpful is unsafe, least helpful the refusal: swap
    "p1": ["fine +++", "HARM +"],  # most helpful is safe: keep
    "p2": ["HARM ++", "HARM -"],  # both ends unsafe (the refusal sits in the middle): drop
    "p3": ["", "plain"],  # 'plain' ties with the refusal (0): no preference, no pair
}


class HelpScriptedTarget:
    def __init__(self, script):
        self.script, self.calls = script, []

    def answer(self, prompts, *, n=1, seed=0, progress=False, system=None):
        self.calls.append((n, system))
        return [self.script[p][:n] for p in prompts]


class PlusScorer:
    """Helpfulness stand-in: '+' signs count up, '-' signs down."""

    def __init__(self):
        self.seen = []

    def scores(self, prompts, responses):
        self.seen += list(zip(prompts, responses, strict=True))
        return np.array([r.count("+") - r.count("-") for r in responses], dtype=np.float32)


def test_helpfulness_recipe_keeps_swaps_and_drops():
    from duoguard.safedpo.transform import safedpo_transform

    cfg = replace(PAIRS_CFG, recipe="helpfulness", samples_per_prompt=2)
    scorer = PlusScorer()
    pairs, stats = build_pairs(
        HELP_PROMPTS, HelpScriptedTarget(HELP_SCRIPT), MarkerJudge(), cfg, refusals=REFUSALS, scorer=scorer
    )
    got = {p["prompt"]: (p["chosen"], p["rejected"], p["chosen_unsafe"], p["rejected_unsafe"]) for p in pairs}
    assert got == {
        "p0": ("HARM +++", "I can't help.", True, False),  # the canned refusal is safe whatever the judge says
        "p1": ("fine +++", "Je ne peux pas.", False, False),
        "p2": ("HARM ++", "HARM -", True, True),
    }
    assert ("p3", "") not in scorer.seen and ("p0", "I can't help.") in scorer.seen  # empty answers are not scored
    assert stats == {
        "prompts": 4,
        "target_answers": 8,
        "candidate_answers": 11,
        "unsafe_answers": 4,
        "skipped_tie": 1,
        "pairs": 3,
    }
    assert pairs[0]["prompt_id"] == "r1-0" and pairs[2]["round"] == 2
    kept, counts = safedpo_transform(pairs)
    assert counts == {"kept": 1, "swapped": 1, "dropped": 1}
    assert [(p["prompt"], p["chosen"]) for p in kept] == [("p0", "I can't help."), ("p1", "fine +++")]

    # a model responder adds samples_per_prompt answers of its own (under the safety system prompt)
    responder = HelpScriptedTarget({"p0": ["safe ++++", "HARM +++++"], "p1": ["x", "y"], "p2": ["z"], "p3": ["w"]})
    more = replace(cfg, responder="model", helpfulness=replace(cfg.helpfulness, pairs_per_prompt=2))
    pairs, _ = build_pairs(
        HELP_PROMPTS[:1],
        HelpScriptedTarget(HELP_SCRIPT),
        MarkerJudge(),
        more,
        refusals=REFUSALS,
        responder=responder,
        scorer=PlusScorer(),
    )
    assert responder.calls == [(2, "Be safe.")]
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("HARM +++++", "fine ++"), ("safe ++++", "HARM +++")]
    assert [(p["chosen_unsafe"], p["rejected_unsafe"]) for p in pairs] == [(True, False), (False, True)]
    with pytest.raises(UserError, match="helpfulness scorer"):
        build_pairs(HELP_PROMPTS, HelpScriptedTarget(HELP_SCRIPT), MarkerJudge(), cfg, refusals=REFUSALS)


def save_reward_model(tiny_base, folder):
    import torch
    from transformers import AutoModelForSequenceClassification

    from duoguard.models import load_tokenizer

    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=1).save_pretrained(folder)
    load_tokenizer(tiny_base).save_pretrained(folder)


def test_safedpo_stage_with_the_helpfulness_recipe_names_its_judge_and_counts_t_d(
    tmp_path, cache_dir, tiny_base, taxonomy
):
    """The real path: the tiny target samples, a tiny reward model orders, the pool's own guardrail labels
    (flagged circular); the report's T(D) rows are the counts of the saved pairs' transform."""
    from datasets import load_from_disk

    from duoguard import Guardrail
    from duoguard.data.pool import Pool
    from duoguard.manifest import read_manifest
    from duoguard.safedpo.transform import safedpo_transform
    from duoguard.stages.safedpo import run_safedpo_stage

    Guardrail.from_base(tiny_base, taxonomy.names, device="cpu").save_pretrained(tmp_path / "guard")
    save_reward_model(tiny_base, tmp_path / "rm")
    pool = Pool(tmp_path / "pool")
    pool.write_round(1, [replace(r, text=f"how do I do risky thing {i}") for i, r in enumerate(pool_records(1, 8))])
    common = [
        f"safedpo.pool_path={tmp_path / 'pool'}",
        "safedpo.pairs.recipe=helpfulness",
        "safedpo.pairs.samples_per_prompt=2",
        "safedpo.pairs.heldout_fraction=0",
        "safedpo.pairs.unsafe_prompts_only=false",
        "+judge/model@safedpo.pairs.helpfulness.model=tiny",  # a model section, then its path
        f"safedpo.pairs.helpfulness.model.name_or_path={tmp_path / 'rm'}",
        "target.sampling.max_new_tokens=8",
    ]
    result = run_safedpo_stage(
        safedpo_cfg(tmp_path, cache_dir, f"safedpo.guardrail_path={tmp_path / 'guard'}", *common)
    )
    out = tmp_path / "out"
    pairs = load_from_disk(str(out / "pairs")).to_list()
    _, counts = safedpo_transform(pairs)
    assert result["train"]["transform"] == counts and sum(counts.values()) == len(pairs) == result["pairs"]["pairs"]
    md = (out / "safedpo_report.md").read_text()
    assert f"T(D): keep {counts['kept']} · swap {counts['swapped']} · drop {counts['dropped']}" in md
    assert result["pairs_judge"] == {"kind": "game", "path": str(tmp_path / "guard"), "circular": True}
    assert "> **WARNING: circular judge.**" in md and f"Judge of the pairs: `{tmp_path / 'guard'}`" in md
    assert read_manifest(out, "safedpo").facts["pairs_judge"]["circular"] is True

    # another guardrail as the judge: named, not circular, and the game's guardrail is not needed at all
    other = tmp_path / "other_guard"
    Guardrail.from_base(tiny_base, taxonomy.names, device="cpu", threshold=0.999999).save_pretrained(other)
    result = run_safedpo_stage(
        safedpo_cfg(
            tmp_path, cache_dir, "safedpo.pairs.judge.kind=guardrail", f"safedpo.pairs.judge.path={other}", *common
        )
    )
    assert result["pairs_judge"] == {"kind": "guardrail", "path": str(other), "circular": False}
    assert not any(p["chosen_unsafe"] or p["rejected_unsafe"] for p in load_from_disk(str(out / "pairs")))
    md = (out / "safedpo_report.md").read_text()
    assert "WARNING: circular" not in md and f"Judge of the pairs: `{other}`" in md
