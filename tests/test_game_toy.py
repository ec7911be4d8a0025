"""The game's dynamics in a toy world (see tests/toy/world.py): GRPO learns to fool a frozen
guardrail, and the guardrail's update on the pool recovers its accuracy on those samples; the league of
earlier guardrails fills the fool-rate matrix."""

from __future__ import annotations

import pytest

from duoguard.league import matrix
from tests.conftest import compose
from tests.toy.world import build_toy_world, toy_overrides


@pytest.mark.slow
def test_generator_learns_to_fool_a_frozen_guardrail_then_guardrail_recovers(tmp_path):
    from duoguard.game import play_game

    world = build_toy_world(tmp_path / "world")
    out = tmp_path / "run"
    frozen = play_game(compose([*toy_overrides(world, out), "game.rounds=4", "game.guardrail_update=frozen"], "game"))
    rounds = frozen["history"]
    assert [h["round"] for h in rounds] == [1, 2, 3, 4]
    first, last = rounds[0], rounds[-1]
    # with the guardrail frozen, GRPO raises the fool rate (kept and misclassified / generated) clearly
    assert first["fool_rate"] < 0.1
    assert last["fool_rate"] > first["fool_rate"] + 0.3
    assert last["keep_rate"] > first["keep_rate"] + 0.3  # it also learned to keep the label
    assert all(h["guardrail_acc_after"] == h["guardrail_acc_before"] for h in rounds if h["accepted"])
    # the world's pattern is a label check: counted as one, and it rejected some mislabelled candidates
    assert all(h["label_check"] == "pattern" for h in rounds)
    assert sum(h.get("judge/rejected_label_pattern", 0) for h in rounds) > 0

    # one more round in which the guardrail trains on the pool (resuming the same game)
    played = play_game(compose([*toy_overrides(world, out), "game.rounds=5", "game.guardrail_update=finetune"], "game"))
    fifth = played["history"][-1]
    assert len(played["history"]) == 5 and fifth["round"] == 5
    assert fifth["guardrail_acc_before"] < 0.6  # the fresh adversarial samples fool it ...
    assert fifth["guardrail_acc_after"] >= 0.9  # ... until it learns from them
    assert fifth["guardrail_acc_after"] > fifth["guardrail_acc_before"] + 0.3
    # the league: round 5's candidates against the guardrails of rounds 1-3 (all frozen = the guardrail of
    # round 4 it played) equal its play-time fool rate; against the updated guardrail of round 5 they differ
    m = matrix(played["history"])
    assert {(5, j) for j in (1, 2, 3, 4, 5)} <= set(m)
    assert all(m[(5, j)] == pytest.approx(m[(5, 4)]) for j in (1, 2, 3))
    assert m[(5, 5)] < m[(5, 4)] - 0.3
    # the newest guardrail resists every earlier generator round's samples at least as well as the guardrail
    # they were played against, and clearly better on round 4's (GRPO had learned to fool the frozen one)
    assert all(m[(k, 5)] <= m[(k, k - 1)] for k in (1, 2, 3, 4)), m
    assert m[(4, 5)] < m[(4, 3)] - 0.3, m
    assert fifth["exploitability"] == m[(5, 5)] and fifth["old_rounds_accuracy"] > 0.9
    assert sorted(p.name for p in (out / "league").iterdir()) == [
        "round_0002",
        "round_0003",
        "round_0004",
        "round_0005",
    ]
    report = (out / "report.md").read_text()
    assert "## Exploitability and forgetting" in report and (out / "report" / "league.png").is_file()

    from duoguard.manifest import read_manifest

    assert read_manifest(out, "game").facts["label_check"] == "pattern"
