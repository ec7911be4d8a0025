"""Game health in a played toy game (tests/toy/world.py): the curriculum moves the condition sampler's
draws toward the cells its rule targets; the report goes to W&B every `game.report_every` rounds; the
novelty term keeps the shipped toy world's game diverse."""

from __future__ import annotations

import json

import pytest

from tests.conftest import compose
from tests.toy.world import build_toy_world, toy_overrides


def generated_per_style(state_json) -> dict[str, int]:
    cells = json.loads(state_json.read_text())["archive"]["cells"]
    return {c["attack_style"]: c["generated"] for c in cells}


def accepted_per_style(state_json) -> dict[str, int]:
    cells = json.loads(state_json.read_text())["archive"]["cells"]
    return {c["attack_style"]: c["accepted"] for c in cells}


@pytest.mark.slow
def test_under_covered_curriculum_draws_the_less_covered_cell_in_the_next_round(tmp_path):
    from duoguard.game import play_game

    world = build_toy_world(tmp_path / "world")
    out = tmp_path / "run"
    overrides = [
        *toy_overrides(world, out),
        "data.attack_styles=[direct,roleplay]",
        "game.rounds=3",
        "game.guardrail_update=frozen",
        "game.league.size=0",
        "game.curriculum.rule=under_covered",
        "game.curriculum.mix=1.0",
        "game.curriculum.temperature=0.05",
        "game.keep_checkpoints=3",
        "game.report_every=2",  # the report (and its W&B images) after rounds 2 and 3 (the last) only
        "logger=wandb",
    ]
    play_game(compose(overrides, "game"))
    states = [out / "checkpoints" / f"round_{r:04d}" / "state.json" for r in (1, 2, 3)]
    # round 1: an empty archive weighs every cell alike, so both styles are drawn
    drawn_1 = generated_per_style(states[0])
    assert set(drawn_1) == {"direct", "roleplay"} and min(drawn_1.values()) > 0
    accepted = accepted_per_style(states[1])  # after round 2
    assert accepted["direct"] != accepted["roleplay"], accepted
    behind = min(accepted, key=accepted.get)
    # round 3: (1 / (1 + accepted)) ** 20 puts nearly every draw on the cell covered less so far
    before, after = generated_per_style(states[1]), generated_per_style(states[2])
    drawn_3 = {k: after[k] - before.get(k, 0) for k in after}
    assert drawn_3[behind] >= 0.8 * sum(drawn_3.values()), (accepted, drawn_3)
    # the report's figures went to W&B as images at the rounds it was written
    images = [p.name for p in (out / "wandb").glob("offline-run-*/files/media/images/report/*.png")]
    assert {"league", "rates", "coverage"} <= {n.split("_")[0] for n in images}, images
    assert sum(n.startswith("rates_") for n in images) == 2, images  # written twice in three rounds


def play_toy_world(out, *overrides):
    from duoguard.game import play_game

    return play_game(compose(["experiment=toy_world", f"output_dir={out}", *overrides], "game"))["history"]


@pytest.mark.slow
def test_novelty_term_keeps_the_pool_diverse_and_quiets_the_collapse_alarm(cache_dir, tmp_path, caplog):
    """The shipped toy world (experiment=toy_world, 3 rounds), the same seeds with the novelty term off and
    on. Off, GRPO converges on few phrasings: the last round's distinct bigrams fall to ~0.12 and the
    collapse alarm (floor 0.2) fires; on, they stay at ~0.25, and the pool's distinct bigrams rise from
    ~0.21 to ~0.26."""
    from duoguard import toy_world as tw
    from duoguard.data.pool import Pool
    from duoguard.diversity import distinct_n

    alarm = ["game.collapse.floor=0.2", "game.collapse.rounds=1"]
    runs = {}
    for weight in (0.0, 0.5):
        caplog.clear()
        out = tmp_path / f"novelty_{weight}"
        history = play_toy_world(out, f"game.reward.novelty.weight={weight}", *alarm)
        texts = [r.text for r in Pool(out / "pool").records()]
        runs[weight] = {
            "last_distinct_2": history[-1]["diversity/distinct_2"],
            "pool_distinct_2": distinct_n(texts, 2),
            "exploits": tw.distinct_exploits(texts),  # reported with the runs on failure
            "alarm": any("collapse alarm" in r.getMessage() for r in caplog.records),
        }
    off, on = runs[0.0], runs[0.5]
    assert on["last_distinct_2"] > off["last_distinct_2"] + 0.08, runs
    assert on["pool_distinct_2"] > off["pool_distinct_2"] + 0.03, runs
    # not asserted, because it does not hold: more distinct exploits with novelty (sets of open-family words
    # hiding the marker: 51 and 51 here, 53.0 against 55.7 over seeds 0-2; scripts/bench_toy_heldout.py)
    assert off["alarm"] and not on["alarm"], runs
